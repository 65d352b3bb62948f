#include "eval/model_fingerprint.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <vector>

#include "convert/fingerprint.h"
#include "io/checkpoint_index.h"

namespace fp4kit::eval {

namespace {
constexpr uint64_t kDataBytesPerShard = 64 * 1024;
}

std::string model_fingerprint(const std::string& dir) {
  Fingerprint f;
  {
    std::ifstream in(dir + "/config.json", std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    f.add(s.str());
  }
  const io::Checkpoint ckpt = io::Checkpoint::open(dir);
  for (const std::string& name : ckpt.shard_files()) {
    const io::SafetensorsFile& shard = ckpt.shard(name);
    f.add(name);
    uint64_t budget = kDataBytesPerShard;
    for (const io::TensorInfo& t : shard.tensors()) {  // sorted by offset: the data section's start
      f.add(t.name);
      f.add(static_cast<uint64_t>(t.dtype));
      f.add_shape(t.shape);
      const uint64_t n = std::min<uint64_t>(budget, t.nbytes());
      if (n == 0) continue;
      std::vector<std::byte> bytes(n);
      shard.read_range(t, 0, bytes);
      f.add_bytes(bytes);
      budget -= n;
    }
  }
  return f.hex();
}

}  // namespace fp4kit::eval
