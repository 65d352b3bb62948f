#include "convert/quantize_tensors.h"

#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "base/error.h"
#include "convert/nvfp4_quantizer.h"
#include "cuda/nvfp4_from_host.h"
#include "io/safetensors_file.h"
#include "io/safetensors_writer.h"

namespace fp4kit {

namespace {

struct Plan {
  const io::TensorInfo* input = nullptr;
  std::string module;
  bool quantize = false;
  size_t report_index = 0;
};

bool quantizable(const io::TensorInfo& t, std::string* reason) {
  if (!is_quantizable_source(t.dtype)) {
    *reason = "not a BF16/F16/F32 tensor";
    return false;
  }
  if (t.shape.size() < 2) {
    *reason = "fewer than 2 dimensions";
    return false;
  }
  if (t.shape.back() % static_cast<int64_t>(kNvfp4BlockSize) != 0) {
    *reason = "last dimension not a multiple of 16";
    return false;
  }
  if (t.numel() == 0) {
    *reason = "empty";
    return false;
  }
  return true;
}

std::string module_of(const std::string& name) {
  static const std::string suffix = ".weight";
  if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
    return name.substr(0, name.size() - suffix.size());
  return name;
}

// Siblings the serving engines fuse into one GEMM, by the last component of the module name.
std::optional<std::string> fusion_partner(const std::string& module) {
  static const std::pair<const char*, const char*> kPairs[] = {
      {"gate_proj", "up_proj"}, {"w1", "w3"}, {"gate", "up"}};
  const size_t dot = module.rfind('.');
  const std::string head = dot == std::string::npos ? "" : module.substr(0, dot + 1);
  const std::string last = dot == std::string::npos ? module : module.substr(dot + 1);
  for (auto [a, b] : kPairs) {
    if (last == a) return head + b;
    if (last == b) return head + a;
  }
  return std::nullopt;
}

struct OutputNames {
  std::string packed, scale, global;
};

OutputNames output_names(const std::string& module, Nvfp4Numerics numerics) {
  if (numerics == Nvfp4Numerics::CompressedTensors)
    return {module + ".weight_packed", module + ".weight_scale", module + ".weight_global_scale"};
  return {module + ".weight", module + ".weight_scale", module + ".weight_scale_2"};
}

std::span<const std::byte> bytes_of(const std::vector<uint8_t>& v) {
  return std::as_bytes(std::span(v));
}

float tensor_amax(FloatSpan src, const QuantizeTensorsOptions& options) {
  if (options.device == cuda::Device::Cuda) return cuda::nvfp4_amax_from_host(src);
  return parallel_amax(src, options.threads);
}

Nvfp4Tensor quantize_tensor(FloatSpan src, float group_amax, const QuantizeTensorsOptions& options) {
  if (options.scales != Nvfp4ScaleMethod::Max)
    return quantize_nvfp4_searched(src, nvfp4_search_scaling(group_amax, options.scales, options.numerics, src.dtype),
                                   options.threads);
  const Nvfp4Scaling scaling = nvfp4_scaling(group_amax, options.numerics, src.dtype);
  if (options.device == cuda::Device::Cpu) return quantize_nvfp4(src, scaling, options.threads);
  Nvfp4Tensor q;
  q.global = scaling.global;
  q.packed.resize(src.size / 2);
  q.scales.resize(src.size / kNvfp4BlockSize);
  cuda::nvfp4_quantize_from_host(src, scaling, q.packed.data(), q.scales.data());
  return q;
}

}  // namespace

void check_quantize_tensors_options(const QuantizeTensorsOptions& options) {
  // Its statistics are per module of a calibrated checkpoint, which `convert --hessian` reads.
  if (options.scales == Nvfp4ScaleMethod::Hessian)
    throw InputError("--scales hessian needs the XᵀX statistics of each weight's input: use convert --scales hessian "
                     "--hessian FILE (quantize-tensors takes max, mse, four-over-six)");
  if (!scale_method_supports(options.scales, options.numerics))
    throw InputError("--scales " + std::string(scale_method_name(options.scales)) +
                     " writes ModelOpt's static block scales: use --numerics modelopt or modelopt-cuda, not " +
                     std::string(numerics_name(options.numerics)));
  if (options.scales != Nvfp4ScaleMethod::Max && options.device == cuda::Device::Cuda)
    throw InputError("--scales " + std::string(scale_method_name(options.scales)) +
                     " runs on the CPU only: use --device cpu (the bytes are those ModelOpt's GPU calibration gives)");
}

QuantizeTensorsReport quantize_tensors(const std::string& input, const std::string& output,
                                       const QuantizeTensorsOptions& options, const ProgressFn& progress) {
  check_quantize_tensors_options(options);
  const io::SafetensorsFile in = io::SafetensorsFile::open(input);
  QuantizeTensorsReport report;
  std::vector<Plan> plans;
  std::map<std::string, size_t> plan_by_module;
  std::map<std::string, size_t> plan_by_name;
  for (const auto& t : in.tensors()) {
    Plan p;
    p.input = &t;
    p.report_index = report.tensors.size();
    QuantizedTensorReport r;
    r.name = t.name;
    p.quantize = quantizable(t, &r.reason);
    p.module = p.quantize ? module_of(t.name) : t.name;
    r.module = p.module;
    r.quantized = p.quantize;
    report.tensors.push_back(r);
    report.input_bytes += t.nbytes();
    plan_by_name[t.name] = plans.size();
    if (p.quantize) plan_by_module[p.module] = plans.size();
    plans.push_back(p);
  }

  // Pass 1: amax of every quantized tensor (a read-only scan), then the fused groups.
  uint64_t done = 0;
  const uint64_t total = 2 * report.input_bytes;
  for (auto& p : plans) {
    if (!p.quantize) continue;
    auto data = in.view(*p.input);
    auto& r = report.tensors[p.report_index];
    r.amax = tensor_amax(FloatSpan{data.data(), p.input->dtype, static_cast<size_t>(p.input->numel())}, options);
    r.group_amax = r.amax;
    done += p.input->nbytes();
    if (progress) progress(done, total);
  }
  auto fuse = [&](size_t a, size_t b) {
    auto& ra = report.tensors[plans[a].report_index];
    auto& rb = report.tensors[plans[b].report_index];
    if (!plans[a].quantize || !plans[b].quantize)
      throw InputError(input + ": cannot fuse '" + ra.name + "' and '" + rb.name +
                       "': both must be quantizable matrices");
    // torch.maximum semantics: NaN wins.
    const float m = (std::isnan(ra.amax) || std::isnan(rb.amax)) ? ra.amax + rb.amax
                                                                   : std::max(ra.amax, rb.amax);
    ra.group_amax = rb.group_amax = m;
    ra.fused_with = rb.name;
    rb.fused_with = ra.name;
  };
  std::set<size_t> fused;
  for (const auto& [a, b] : options.fuse) {
    auto ia = plan_by_name.find(a), ib = plan_by_name.find(b);
    if (ia == plan_by_name.end() || ib == plan_by_name.end())
      throw InputError(input + ": cannot fuse '" + a + "' and '" + b + "': no such tensor");
    fuse(ia->second, ib->second);
    fused.insert(ia->second);
    fused.insert(ib->second);
  }
  if (options.auto_fuse) {
    for (size_t i = 0; i < plans.size(); ++i) {
      if (!plans[i].quantize || fused.count(i)) continue;
      auto partner = fusion_partner(plans[i].module);
      if (!partner) continue;
      auto it = plan_by_module.find(*partner);
      if (it == plan_by_module.end() || fused.count(it->second)) continue;
      fuse(i, it->second);
      fused.insert(i);
      fused.insert(it->second);
    }
  }

  // Declare the output and check that no two tensors land on one name.
  io::SafetensorsWriter writer(output);
  std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"producer", "fp4kit"}, {"nvfp4_numerics", std::string(numerics_name(options.numerics))}};
  // Max scaling (the default) writes no key, so its files stay as they always were.
  if (options.scales != Nvfp4ScaleMethod::Max) metadata["nvfp4_scales"] = std::string(scale_method_name(options.scales));
  writer.set_metadata(metadata);
  std::map<std::string, size_t> owner;  // output name -> plan
  auto claim = [&](const std::string& name, size_t plan) {
    auto [it, inserted] = owner.emplace(name, plan);
    if (!inserted)
      throw InputError(input + ": tensor '" + plans[plan].input->name + "' would be written as '" + name +
                       "', which tensor '" + plans[it->second].input->name + "' also produces");
  };
  for (size_t i = 0; i < plans.size(); ++i) {
    const auto& p = plans[i];
    if (!p.quantize) {
      claim(p.input->name, i);
      writer.declare(p.input->name, p.input->dtype, p.input->shape);
      continue;
    }
    const OutputNames names = output_names(p.module, options.numerics);
    std::vector<int64_t> packed_shape = p.input->shape, scale_shape = p.input->shape;
    packed_shape.back() /= 2;
    scale_shape.back() /= static_cast<int64_t>(kNvfp4BlockSize);
    const std::vector<int64_t> global_shape =
        options.numerics == Nvfp4Numerics::CompressedTensors ? std::vector<int64_t>{1} : std::vector<int64_t>{};
    for (const auto* n : {&names.packed, &names.scale, &names.global}) claim(*n, i);
    writer.declare(names.packed, DType::U8, packed_shape);
    writer.declare(names.scale, DType::F8_E4M3, scale_shape);
    writer.declare(names.global, DType::F32, global_shape);
  }
  writer.begin();

  // Pass 2: in output order; a quantized tensor is computed when its first output comes up and
  // held only until its last output is written.
  std::map<size_t, std::pair<Nvfp4Tensor, int>> pending;  // plan -> (result, outputs left)
  for (const auto& out : writer.layout()) {
    const size_t i = owner.at(out.name);
    const auto& p = plans[i];
    if (!p.quantize) {
      writer.write(out.name, in.view(*p.input));
      in.drop_cache(*p.input);
      done += 2 * p.input->nbytes();
      if (progress) progress(done, total);
      continue;
    }
    auto it = pending.find(i);
    if (it == pending.end()) {
      auto& r = report.tensors[p.report_index];
      if (r.amax == 0.0f && options.numerics != Nvfp4Numerics::CompressedTensors)
        r.reason = options.scales == Nvfp4ScaleMethod::Max
                       ? "all-zero tensor: ModelOpt numerics give weight_scale_2 = 0 and NaN block scales"
                       : "all-zero tensor: ModelOpt numerics give weight_scale_2 = 0";
      if (std::isnan(r.amax)) r.reason = "tensor holds NaN: its scales are NaN";
      auto data = in.view(*p.input);
      Nvfp4Tensor q = quantize_tensor(FloatSpan{data.data(), p.input->dtype, static_cast<size_t>(p.input->numel())},
                                      r.group_amax, options);
      r.global_scale = q.global;
      in.drop_cache(*p.input);
      it = pending.emplace(i, std::make_pair(std::move(q), 3)).first;
      done += p.input->nbytes();
      if (progress) progress(done, total);
    }
    const OutputNames names = output_names(p.module, options.numerics);
    const Nvfp4Tensor& q = it->second.first;
    if (out.name == names.packed) {
      writer.write(out.name, bytes_of(q.packed));
    } else if (out.name == names.scale) {
      writer.write(out.name, bytes_of(q.scales));
    } else {
      writer.write(out.name, std::as_bytes(std::span(&q.global, 1)));
    }
    if (--it->second.second == 0) pending.erase(it);
  }
  writer.commit();
  for (const auto& out : writer.layout()) report.output_bytes += out.nbytes();
  return report;
}

}  // namespace fp4kit
