#include "calib/model_fingerprint.h"

#include <fstream>
#include <iterator>

#include "base/error.h"
#include "io/checkpoint_index.h"
#include "io/safetensors_file.h"

namespace fp4kit {

void add_checkpoint_identity(Fingerprint& f, const std::string& model_dir) {
  const std::string config_path = model_dir + "/config.json";
  std::ifstream in(config_path, std::ios::binary);
  if (!in) throw InputError(config_path + ": cannot read");
  f.add(std::string(std::istreambuf_iterator<char>(in), {}));
  const io::Checkpoint ckpt = io::Checkpoint::open(model_dir);
  for (const std::string& shard : ckpt.shard_files()) {
    f.add(shard);
    f.add(ckpt.shard(shard).file_size());
  }
}

std::string calibration_model_fingerprint(const std::string& model_dir) {
  Fingerprint f;
  f.add("fp4kit-calibration-model-1");
  add_checkpoint_identity(f, model_dir);
  return f.hex();
}

}  // namespace fp4kit
