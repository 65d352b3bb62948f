#pragma once
// Tensor-level NVFP4 quantization of one safetensors file: every floating-point matrix X (BF16, F16,
// F32; last dim a multiple of 16) becomes the three tensors of the chosen layout, everything else
// is copied bit for bit. A name ending in ".weight" names its module without that suffix, so
// "m.weight" becomes "m.weight" + "m.weight_scale" + "m.weight_scale_2".
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "cuda/device.h"
#include "formats/nvfp4.h"
#include "formats/nvfp4_scale_search.h"

namespace fp4kit {

struct QuantizeTensorsOptions {
  Nvfp4Numerics numerics = Nvfp4Numerics::ModelOpt;  // also picks the layout's tensor names
  // How block scales are chosen; searched scales (mse, four-over-six) need ModelOpt numerics and
  // run on the CPU.
  Nvfp4ScaleMethod scales = Nvfp4ScaleMethod::Max;
  unsigned threads = 1;
  bool auto_fuse = true;  // share the global scale of gate_proj/up_proj, w1/w3, gate/up siblings
  std::vector<std::pair<std::string, std::string>> fuse;  // explicit pairs of input tensor names
  // Where amax and quantization run; the GPU gives the same bytes (the caller checks the device
  // first with cuda::require_device()).
  cuda::Device device = cuda::Device::Cpu;
};

struct QuantizedTensorReport {
  std::string name;           // input tensor
  std::string module;         // output prefix
  bool quantized = false;     // false: copied as is
  std::string reason;         // why it was kept, or a warning
  float amax = 0.0f;          // max |x| of this tensor
  float group_amax = 0.0f;    // amax the global scale was taken from (fused pairs share it)
  float global_scale = 0.0f;  // weight_scale_2 or weight_global_scale
  std::string fused_with;
};

struct QuantizeTensorsReport {
  std::vector<QuantizedTensorReport> tensors;
  uint64_t input_bytes = 0;
  uint64_t output_bytes = 0;
};

// InputError when `options` ask for something that cannot be done (searched scales with
// compressed-tensors numerics or on the GPU).
void check_quantize_tensors_options(const QuantizeTensorsOptions& options);

// Progress: bytes of input done, bytes in all.
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

QuantizeTensorsReport quantize_tensors(const std::string& input, const std::string& output,
                                       const QuantizeTensorsOptions& options,
                                       const ProgressFn& progress = {});

}  // namespace fp4kit
