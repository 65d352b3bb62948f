#include "convert/hessian_statistics.h"

#include "base/error.h"
#include "calib/model_fingerprint.h"
#include "calib/xtx_table.h"
#include "io/quote_name.h"

namespace fp4kit {

namespace {

std::string metadata_field(const io::SafetensorsFile& f, const std::string& key) {
  const auto it = f.header().metadata.find(key);
  return it == f.header().metadata.end() ? "" : it->second;
}

}  // namespace

std::unique_ptr<io::SafetensorsFile> open_hessian_statistics(const std::string& path, const std::string& src_dir,
                                                             const std::optional<std::string>& calib_path) {
  auto file = std::make_unique<io::SafetensorsFile>(io::SafetensorsFile::open(path));
  if (metadata_field(*file, "format") != kXtxFormat)
    throw InputError(path + ": not an XᵀX statistics file (metadata format is not '" + std::string(kXtxFormat) +
                     "'); make one with calibrate --hessian");
  if (metadata_field(*file, "model") != calibration_model_fingerprint(src_dir))
    throw InputError(path + ": XᵀX statistics of another checkpoint (its config.json or shard files differ from " +
                     src_dir + "'s); calibrate this checkpoint with --hessian");
  if (calib_path) {
    const std::string calib_run = metadata_field(io::SafetensorsFile::open(*calib_path), "fingerprint");
    const std::string xtx_run = metadata_field(*file, "fingerprint");
    if (!calib_run.empty() && calib_run != xtx_run)
      throw InputError(path + ": XᵀX statistics of another calibration run than " + *calib_path +
                       " (fingerprints " + xtx_run + " and " + calib_run + "); use the files of one calibrate run");
  }
  return file;
}

bool has_hessian_blocks(const io::SafetensorsFile& file, const std::string& module) {
  return file.find(module + std::string(kXtxBlocksSuffix)) != nullptr;
}

const io::TensorInfo& hessian_blocks_for(const io::SafetensorsFile& file, const std::string& module,
                                         const std::string& weight, int64_t rows, int64_t cols) {
  const std::string name = module + std::string(kXtxBlocksSuffix);
  const io::TensorInfo* t = file.find(name);
  if (!t)
    throw InputError(file.path() + ": no tensor " + io::quote_name(name) + " for weight " + io::quote_name(weight) +
                     ": --scales hessian needs the XᵀX statistics of every weight it requantizes (calibrate --hessian "
                     "records attention, shared and routed experts; --hessian-missing mse gives such weights mse scales)");
  const std::vector<int64_t> want = {cols / 16, 16, 16};
  const int64_t groups = t->shape.size() == 3 && t->shape[0] % (cols / 16) == 0 ? t->shape[0] / (cols / 16) : 0;
  if (t->dtype != DType::F32 || t->shape.size() != 3 || t->shape[1] != 16 || t->shape[2] != 16 || groups < 1 ||
      rows % groups != 0)
    throw InputError(file.path() + ": tensor " + io::quote_name(name) + " is " + std::string(dtype_name(t->dtype)) +
                     " " + io::shape_string(t->shape) + ", not F32 " + io::shape_string(want) + " (or G times as many blocks, " +
                     "G dividing the " + std::to_string(rows) + " rows) for weight " + io::quote_name(weight));
  return *t;
}

std::vector<HessianBlockWeight> read_hessian_weights(const io::SafetensorsFile& file, const io::TensorInfo& blocks,
                                                     double damping) {
  std::vector<float> values(static_cast<size_t>(blocks.numel()));
  file.read(blocks, std::as_writable_bytes(std::span(values)));
  std::vector<HessianBlockWeight> out(values.size() / 256);
  for (size_t j = 0; j < out.size(); ++j) out[j] = hessian_block_weight(values.data() + 256 * j, damping);
  return out;
}

}  // namespace fp4kit
