#include <cmath>
#include <cstdio>
#include <memory>
#include <regex>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/parallel.h"
#include "cli/commands.h"
#include "cli/json_report.h"
#include "cli/progress.h"
#include "convert/quantize_tensors.h"
#include "cuda/device.h"

namespace fp4kit::cli {

// Named, not anonymous: the command files compile as one unit (unity build).
namespace quantize_tensors_command {
struct QuantizeTensorsArgs {
  std::string input, output, numerics = "modelopt", scales = "max", json_path, device = "cpu";
  unsigned threads = 0;
  bool no_auto_fuse = false, quiet = false, progress = false;
  std::vector<std::string> fuse;
};

void run(const QuantizeTensorsArgs& a) {
  QuantizeTensorsOptions o;
  o.device = cuda::parse_device(a.device);
  o.numerics = *numerics_from_name(a.numerics);
  const auto scales = scale_method_from_name(a.scales);
  if (!scales) throw InputError("--scales " + a.scales + ": unknown (" + scale_method_names() + ")");
  o.scales = *scales;
  check_quantize_tensors_options(o);
  if (o.device == cuda::Device::Cuda) cuda::require_device();  // one clear error (exit 2) before any work
  o.threads = a.threads ? a.threads : default_threads();
  o.auto_fuse = !a.no_auto_fuse;
  for (const auto& pair : a.fuse) {
    const auto comma = pair.find(',');
    if (comma == std::string::npos) throw InputError("--fuse expects A,B, got '" + pair + "'");
    o.fuse.emplace_back(pair.substr(0, comma), pair.substr(comma + 1));
  }
  Progress progress("quantize", !a.quiet && (a.progress || stderr_is_terminal()));
  const auto report = quantize_tensors(a.input, a.output, o, [&](uint64_t d, uint64_t t) { progress.update(d, t); });
  progress.finish();

  size_t quantized = 0;
  for (const auto& t : report.tensors) quantized += t.quantized;
  if (!a.quiet) {
    for (const auto& t : report.tensors) {
      if (t.quantized)
        std::fprintf(stderr, "  nvfp4  %-48s amax %-12.6g global %-12.6g%s%s%s\n", t.name.c_str(), t.amax,
                     t.global_scale, t.fused_with.empty() ? "" : (" fused with " + t.fused_with).c_str(),
                     t.reason.empty() ? "" : "  warning: ", t.reason.c_str());
      else
        std::fprintf(stderr, "  kept   %-48s (%s)\n", t.name.c_str(), t.reason.c_str());
    }
    std::fprintf(stderr, "%zu of %zu tensors quantized (%s numerics, %s scales); %.2f MB -> %.2f MB: %s\n", quantized,
                 report.tensors.size(), a.numerics.c_str(), a.scales.c_str(), static_cast<double>(report.input_bytes) / 1e6,
                 static_cast<double>(report.output_bytes) / 1e6, a.output.c_str());
  }
  if (!a.json_path.empty()) {
    nlohmann::json j;
    j["input"] = a.input;
    j["output"] = a.output;
    j["numerics"] = a.numerics;
    j["scales"] = a.scales;
    j["device"] = std::string(cuda::device_name(o.device));
    j["input_bytes"] = report.input_bytes;
    j["output_bytes"] = report.output_bytes;
    auto& arr = j["tensors"] = nlohmann::json::array();
    for (const auto& t : report.tensors) {
      nlohmann::json e = {{"name", t.name}, {"module", t.module}, {"quantized", t.quantized}};
      if (t.quantized) {
        e["amax"] = std::isfinite(t.amax) ? nlohmann::json(t.amax) : nlohmann::json(nullptr);
        e["group_amax"] = std::isfinite(t.group_amax) ? nlohmann::json(t.group_amax) : nlohmann::json(nullptr);
        e["global_scale"] = std::isfinite(t.global_scale) ? nlohmann::json(t.global_scale) : nlohmann::json(nullptr);
        e["scales"] = a.scales;
        if (!t.fused_with.empty()) e["fused_with"] = t.fused_with;
      }
      if (!t.reason.empty()) e[t.quantized ? "warning" : "kept_because"] = t.reason;
      arr.push_back(e);
    }
    write_json_report(a.json_path, j);
  }
}

void add_command(CLI::App& app) {
  auto args = std::make_shared<QuantizeTensorsArgs>();
  auto* cmd = app.add_subcommand(
      "quantize-tensors",
      "Quantize every BF16/F16/F32 matrix of one safetensors file to NVFP4. A tensor X (or X.weight) becomes "
      "X.weight, X.weight_scale, X.weight_scale_2 (ModelOpt layout) or X.weight_packed, X.weight_scale, "
      "X.weight_global_scale (compressed-tensors layout); other tensors are copied bit for bit.");
  cmd->add_option("IN", args->input, "Input .safetensors file")->required()->check(CLI::ExistingFile);
  cmd->add_option("OUT", args->output, "Output .safetensors file (written atomically)")->required();
  cmd->add_option("--numerics", args->numerics,
                  "modelopt (ModelOpt on CPU, default), modelopt-cuda (ModelOpt's GPU arithmetic), "
                  "compressed-tensors (llm-compressor; also selects that layout)")
      ->check(CLI::IsMember({"modelopt", "modelopt-cuda", "compressed-tensors"}));
  cmd->add_option("--scales", args->scales,
                  "How block scales are chosen: max (default: the block's amax, ModelOpt's default), mse (per "
                  "block the E4M3 scale with the least squared error, ModelOpt's FP8 scale sweep), four-over-six "
                  "(per block amax/6 or amax/4, ModelOpt's four-over-six); searched scales need ModelOpt numerics "
                  "and run on the CPU");
  cmd->add_option("--fuse", args->fuse,
                  "A,B: input tensors that share one global scale (repeatable). gate_proj/up_proj, w1/w3 "
                  "and gate/up siblings are paired automatically");
  cmd->add_flag("--no-auto-fuse", args->no_auto_fuse, "Do not pair gate/up siblings automatically");
  cmd->add_option("--device", args->device,
                  "cpu (default) or cuda: where amax and quantization run; the output bytes are the same");
  cmd->add_option("--threads", args->threads, "Worker threads (default: all cores)");
  cmd->add_option("--json", args->json_path, "Write a JSON report to this file ('-' for stdout)");
  cmd->add_flag("--quiet", args->quiet, "Print nothing but errors");
  cmd->add_flag("--progress", args->progress, "Show progress even when stderr is not a terminal");
  cmd->callback([args] { run(*args); });
}

const CommandRegistration kRegistration(90, add_command);

}  // namespace quantize_tensors_command

}  // namespace fp4kit::cli
