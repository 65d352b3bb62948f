#pragma once
// The XᵀX statistics `convert --scales hessian --hessian FILE` weights its block scales with
// (calib/xtx_table.h has the file's layout): opened and checked once when planning, each module's
// blocks read when its weight is quantized (a V4 Pro file is tens of GB; only one module's blocks
// are in memory at a time).
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "calib/xtx_full_file.h"
#include "formats/nvfp4_hessian_sweep.h"
#include "io/safetensors_file.h"

namespace fp4kit {

// InputError naming the file when it is not an XᵀX statistics file, when its "model" fingerprint is
// not that of the checkpoint in `src_dir` (statistics of another model), or when the calibration
// file `calib_path` (if given and fingerprinted) comes from another calibration run.
std::unique_ptr<io::SafetensorsFile> open_hessian_statistics(const std::string& path, const std::string& src_dir,
                                                             const std::optional<std::string>& calib_path);

// The same checks for a full XᵀX directory (calib/xtx_full_file.h).
XtxFullStatistics open_full_hessian_statistics(const std::string& dir, const std::string& src_dir,
                                               const std::optional<std::string>& calib_path);

// The diagonal 16×16 blocks of full XᵀX matrices ([groups][k][k]), damped and normalised for the
// sweep: the weights `--scales hessian` takes from a block file, in the same order.
std::vector<HessianBlockWeight> hessian_weights_from_full(const std::vector<double>& xtx, int64_t groups, int64_t k,
                                                          double damping);

bool has_hessian_blocks(const io::SafetensorsFile& file, const std::string& module);

// The `<module>.xtx_blocks` tensor for a weight [rows, cols]: F32 [G·cols/16, 16, 16] with G
// dividing rows (G > 1: a grouped linear whose row groups see G slices of one input). InputError
// naming the file, the tensor and the weight when it is missing or of another shape or dtype.
const io::TensorInfo& hessian_blocks_for(const io::SafetensorsFile& file, const std::string& module,
                                         const std::string& weight, int64_t rows, int64_t cols);

// The module's blocks, damped and normalised for the sweep (one per 16 input channels).
std::vector<HessianBlockWeight> read_hessian_weights(const io::SafetensorsFile& file, const io::TensorInfo& blocks,
                                                     double damping);

}  // namespace fp4kit
