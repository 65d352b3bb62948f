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

// Statistics and amax values must come from one calibrate run (an amax file without a fingerprint
// is not checked).
void require_same_calibration_run(const std::string& path, const std::string& xtx_run, const std::string& calib_path) {
  const std::string calib_run = metadata_field(io::SafetensorsFile::open(calib_path), "fingerprint");
  if (!calib_run.empty() && calib_run != xtx_run)
    throw InputError(path + ": XᵀX statistics of another calibration run than " + calib_path + " (fingerprints " +
                     xtx_run + " and " + calib_run + "); use the files of one calibrate run");
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
  if (calib_path) require_same_calibration_run(path, metadata_field(*file, "fingerprint"), *calib_path);
  return file;
}

XtxFullStatistics open_full_hessian_statistics(const std::string& dir, const std::string& src_dir,
                                               const std::optional<std::string>& calib_path) {
  XtxFullStatistics s = XtxFullStatistics::open(dir);
  if (s.model() != calibration_model_fingerprint(src_dir))
    throw InputError(dir + ": XᵀX statistics of another checkpoint (its config.json or shard files differ from " +
                     src_dir + "'s); calibrate this checkpoint with --hessian DIR --hessian-mode full");
  if (calib_path) require_same_calibration_run(dir, s.fingerprint(), *calib_path);
  return s;
}

std::vector<HessianBlockWeight> hessian_weights_from_full(const std::vector<double>& xtx, int64_t groups, int64_t k,
                                                          double damping) {
  const size_t n = static_cast<size_t>(k), per_row = n / 16;
  std::vector<HessianBlockWeight> out(static_cast<size_t>(groups) * per_row);
  float block[256];
  for (size_t g = 0; g < static_cast<size_t>(groups); ++g)
    for (size_t j = 0; j < per_row; ++j) {
      const double* h = xtx.data() + g * n * n + 16 * j * n + 16 * j;
      for (size_t a = 0; a < 16; ++a)
        for (size_t b = 0; b < 16; ++b) block[16 * a + b] = static_cast<float>(h[a * n + b]);
      out[g * per_row + j] = hessian_block_weight(block, damping);
    }
  return out;
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
