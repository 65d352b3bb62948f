// fp4kit convert SRC DST: parsing and printing only; the job is convert/convert.
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "base/byte_size.h"
#include "base/error.h"
#include "base/parallel.h"
#include "cli/commands.h"
#include "cli/json_report.h"
#include "cli/progress.h"
#include "convert/convert.h"
#include "convert/modelopt_v4_layout.h"
#include "io/checkpoint_index.h"
#include "io/shard_plan.h"

namespace fp4kit::cli {

// Named, not anonymous: the command files compile as one unit (unity build).
namespace convert_command {

struct ConvertArgs {
  std::string src, dst, numerics = "auto", scales = "max", recipe = "moe", format = "modelopt", include, exclude, calib,
      shard_size, json_path, hessian;
  double hessian_damping = kDefaultHessianDamping;
  std::string hessian_missing = "error";
  bool gptq = false, gptq_act_order = false;
  double gptq_damping = kDefaultGptqDamping;
  size_t gptq_block = kDefaultGptqBlock;
  std::string gptq_missing = "error";
  std::string device = "cpu";
  unsigned threads = 0;
  bool weight_only = false, no_direct_io = false, include_mtp = false, allow_nonfinite = false, resume = false, force = false,
       dry_run = false, progress = false, quiet = false, strict = false;
};

double gb(uint64_t bytes) { return static_cast<double>(bytes) / 1e9; }
double gb_per_s(uint64_t bytes, double seconds) { return seconds > 0 ? gb(bytes) / seconds : 0.0; }

nlohmann::json count_json(const ConvertActionCount& c) {
  return {{"tensors", c.tensors}, {"input_bytes", c.input_bytes}, {"output_tensors", c.outputs},
          {"output_bytes", c.output_bytes}};
}

nlohmann::json plan_json(const ConvertArgs& a, const ConvertPlan& plan) {
  nlohmann::json j = {{"source", a.src},
                      {"output", a.dst},
                      {"family", plan.family},
                      {"recipe", a.recipe},
                      {"format", convert_format_name(plan.format)},
                      {"warnings", plan.warnings},
                      {"numerics", convert_numerics_name(plan.numerics)},
                      {"scales", scale_method_name(plan.scales)},
                      {"weight_only", a.weight_only},
                      {"input_fallbacks", plan.input_fallbacks.size()},
                      {"output_tensors", plan.tensors.size()},
                      {"output_bytes", plan.output_bytes()},
                      {"input_bytes", plan.input_bytes()}};
  for (ConvertAction k : kConvertActions) j["actions"][std::string(convert_action_name(k))] = count_json(plan.count(k));
  nlohmann::json files = nlohmann::json::array();
  for (const io::PlannedShard& s : plan.shards)
    files.push_back({{"file", s.file}, {"tensors", s.tensors.size()}, {"bytes", s.bytes}});
  j["shards"] = files;
  j["layout_files"] = plan.layout_files;
  j["files_copied"] = plan.extra_files.size();
  return j;
}

nlohmann::json stats_json(const ConvertActionStats& s) {
  return {{"tensors_written", s.tensors_written}, {"input_bytes", s.input_bytes}, {"output_bytes", s.output_bytes},
          {"seconds", s.seconds}, {"output_gb_per_s", gb_per_s(s.output_bytes, s.seconds)}};
}

void print_plan(const ConvertArgs& a, const ConvertPlan& plan) {
  std::printf("convert plan: %s -> %s (%s, recipe %s, format %s, numerics %s, scales %s, %s)\n", a.src.c_str(),
              a.dst.c_str(), plan.family.c_str(), a.recipe.c_str(), std::string(convert_format_name(plan.format)).c_str(),
              std::string(convert_numerics_name(plan.numerics)).c_str(), std::string(scale_method_name(plan.scales)).c_str(),
              a.weight_only ? "weight-only" : ("calibration " + a.calib).c_str());
  for (ConvertAction k : kConvertActions) {
    const ConvertActionCount& c = plan.count(k);
    std::printf("  %-9s %7zu tensors  %12llu bytes in  -> %7zu tensors  %12llu bytes out\n",
                std::string(convert_action_name(k)).c_str(), c.tensors, static_cast<unsigned long long>(c.input_bytes),
                c.outputs, static_cast<unsigned long long>(c.output_bytes));
  }
  std::printf("  output: %zu shards, %zu tensors, %llu bytes (source %llu bytes)\n", plan.shards.size(),
              plan.tensors.size(), static_cast<unsigned long long>(plan.output_bytes()),
              static_cast<unsigned long long>(plan.input_bytes()));
  if (!a.weight_only) std::printf("  input_scale fallbacks: %zu modules\n", plan.input_fallbacks.size());
  std::printf("  would write:\n");
  for (const io::PlannedShard& s : plan.shards)
    std::printf("    %s  %zu tensors  %llu bytes\n", s.file.c_str(), s.tensors.size(),
                static_cast<unsigned long long>(s.bytes));
  for (const std::string& f : plan.layout_files) std::printf("    %s\n", f.c_str());
  std::printf("    %s\n", std::string(kConvertPlanFileName).c_str());
  std::printf("    and %zu other files copied as they are\n", plan.extra_files.size());
}

// --device: where --gptq runs (the rest of convert runs on the CPU). auto: the GPU where this build
// has CUDA and one is present, else the CPU. cuda: one clear error (exit 2) without a GPU.
cuda::Device gptq_device(const ConvertArgs& a) {
  if (a.device == "auto") return a.gptq && cuda::probe() ? cuda::Device::Cuda : cuda::Device::Cpu;
  const cuda::Device d = cuda::parse_device(a.device);
  if (d == cuda::Device::Cuda && a.gptq) cuda::require_device();
  return d;
}

void run(const ConvertArgs& a) {
  ConvertOptions o;
  const auto numerics = convert_numerics_from_name(a.numerics);
  if (!numerics) throw InputError("--numerics " + a.numerics + ": unknown (auto, cast, modelopt, compressed-tensors)");
  o.numerics = *numerics;
  const auto scales = scale_method_from_name(a.scales);
  if (!scales) throw InputError("--scales " + a.scales + ": unknown (" + scale_method_names() + ")");
  o.scales = *scales;
  if (!a.hessian.empty()) o.hessian_path = a.hessian;
  o.hessian_damping = a.hessian_damping;
  if (a.hessian_missing == "mse") o.hessian_missing_mse = true;
  else if (a.hessian_missing != "error")
    throw InputError("--hessian-missing " + a.hessian_missing + ": unknown (error, mse)");
  o.gptq = a.gptq;
  o.gptq_options = GptqOptions{a.gptq_damping, a.gptq_block, a.gptq_act_order};
  if (a.gptq_missing == "rtn") o.gptq_missing_rtn = true;
  else if (a.gptq_missing != "error") throw InputError("--gptq-missing " + a.gptq_missing + ": unknown (error, rtn)");
  o.gptq_device = gptq_device(a);
  const auto format = convert_format_from_name(a.format);
  if (!format) throw InputError("--format " + a.format + ": unknown (modelopt, compressed-tensors)");
  o.format = *format;
  o.recipe = a.recipe;
  if (!a.include.empty()) o.include = a.include;
  if (!a.exclude.empty()) o.exclude = a.exclude;
  o.strict = a.strict;
  if (!a.calib.empty()) o.calib_path = a.calib;
  o.weight_only = a.weight_only;
  o.include_mtp_experts = a.include_mtp;
  if (!a.shard_size.empty()) o.shard_bytes = parse_byte_size(a.shard_size, "--shard-size");
  o.allow_nonfinite = a.allow_nonfinite;
  o.threads = a.threads ? a.threads : default_threads();
  o.direct_io = !a.no_direct_io;
  o.resume = a.resume;
  o.force = a.force;

  const ConvertPlan plan = plan_convert(a.src, a.dst, o);
  if (!a.quiet)
    for (const std::string& w : plan.warnings) std::fprintf(stderr, "convert: warning: %s\n", w.c_str());
  if (a.dry_run) {
    print_plan(a, plan);
    if (!a.json_path.empty()) write_json_report(a.json_path, plan_json(a, plan));
    return;
  }
  if (a.weight_only && !a.quiet && plan.v4_release_layout)
    std::fprintf(stderr,
                 "convert: warning: --weight-only writes no input_scale. vLLM's ModelOpt NVFP4 MoE path loads "
                 "w13_input_scale/w2_input_scale for this layout and no engine is known to run it without them "
                 "(see docs/convert.md); use this output for inspection, not serving.\n");
  Progress progress("convert", !a.quiet && (a.progress || stderr_is_terminal()));
  const ConvertReport r = convert_checkpoint(plan, a.dst, o, [&](uint64_t d, uint64_t t) { progress.update(d, t); });
  progress.finish();
  if (!a.quiet) {
    for (ConvertAction k : {ConvertAction::Quantize, ConvertAction::Transcode, ConvertAction::Dequantize, ConvertAction::Keep}) {
      const ConvertActionStats& s = r.stats(k);
      std::fprintf(stderr, "  %-9s %7zu tensors (%zu written)  %10.3f GB out  %7.2f s  %6.2f GB/s\n",
                   std::string(convert_action_name(k)).c_str(), plan.count(k).tensors, s.tensors_written,
                   gb(s.output_bytes), s.seconds, gb_per_s(s.output_bytes, s.seconds));
    }
    std::fprintf(stderr, "  %-9s %7zu tensors\n", "drop", plan.drop.tensors);
    if (r.cast.groups)
      std::fprintf(stderr, "  lossless MXFP4->NVFP4 blocks: %zu/%zu (%.4f%%), exactly reproduced: %zu/%zu\n",
                   r.cast.reported_lossless, r.cast.groups,
                   100.0 * static_cast<double>(r.cast.reported_lossless) / static_cast<double>(r.cast.groups),
                   r.cast.exact_groups, r.cast.groups);
    if (r.hessian.blocks)
      std::fprintf(stderr, "  hessian scales: %llu blocks searched, %llu of them with the plain squared error (their "
                   "XᵀX block was zero or not finite)\n", static_cast<unsigned long long>(r.hessian.blocks),
                   static_cast<unsigned long long>(r.hessian.fallback_blocks));
    if (r.gptq.tensors) {
      std::fprintf(stderr, "  gptq (%s): %llu weights, %llu rows compensated in %.2f s; %llu of %llu XᵀX matrices "
                   "left to plain rounding, %llu needed more damping, %llu rows with NaN/Inf rounded plainly\n",
                   std::string(cuda::device_name(o.gptq_device)).c_str(),
                   static_cast<unsigned long long>(r.gptq.tensors), static_cast<unsigned long long>(r.gptq.rows),
                   r.gptq.seconds, static_cast<unsigned long long>(r.gptq.rtn_matrices),
                   static_cast<unsigned long long>(r.gptq.matrices), static_cast<unsigned long long>(r.gptq.damped_more),
                   static_cast<unsigned long long>(r.gptq.skipped_rows));
      for (const std::string& f : r.gptq.fallbacks) std::fprintf(stderr, "  gptq: plain rounding for %s\n", f.c_str());
    }
    std::fprintf(stderr,
                 "convert: %zu shards (%zu written, %zu already done), %zu files copied; %.3f GB read, %.3f GB "
                 "written in %.2f s (%.2f GB/s out): %s\n",
                 r.shards, r.shards_written, r.shards_skipped, r.files_copied, gb(r.input_bytes), gb(r.output_bytes),
                 r.seconds, gb_per_s(r.output_bytes, r.seconds), a.dst.c_str());
    if (o.direct_io)
      std::fprintf(stderr, "  O_DIRECT: %zu of %zu source files read, %zu of %zu shards written around the page cache\n",
                   r.source_files_direct, plan.source_files.size(), r.shards_written_direct, r.shards_written);
  }
  if (a.json_path.empty()) return;
  nlohmann::json j = plan_json(a, plan);
  j["resumed"] = a.resume;
  j["shards_written"] = r.shards_written;
  j["shards_skipped"] = r.shards_skipped;
  j["files_copied"] = r.files_copied;
  j["written"] = {{"input_bytes", r.input_bytes}, {"output_bytes", r.output_bytes}, {"seconds", r.seconds},
                  {"input_gb_per_s", gb_per_s(r.input_bytes, r.seconds)},
                  {"output_gb_per_s", gb_per_s(r.output_bytes, r.seconds)}};
  for (ConvertAction k : {ConvertAction::Quantize, ConvertAction::Transcode, ConvertAction::Dequantize, ConvertAction::Keep})
    j["written"]["actions"][std::string(convert_action_name(k))] = stats_json(r.stats(k));
  j["direct_io"] = {{"requested", o.direct_io},
                    {"source_files", plan.source_files.size()},
                    {"source_files_direct", r.source_files_direct},
                    {"shards_written_direct", r.shards_written_direct}};
  j["lossless"] = {{"groups", r.cast.groups}, {"reported_lossless", r.cast.reported_lossless},
                   {"exact_groups", r.cast.exact_groups}, {"zero_scale_groups", r.cast.zero_scale_groups}};
  if (plan.gptq)
    j["gptq"] = {{"device", std::string(cuda::device_name(o.gptq_device))},
                 {"damping", a.gptq_damping}, {"block", a.gptq_block}, {"act_order", a.gptq_act_order},
                 {"tensors", r.gptq.tensors}, {"matrices", r.gptq.matrices}, {"rtn_matrices", r.gptq.rtn_matrices},
                 {"damped_more", r.gptq.damped_more}, {"rows", r.gptq.rows}, {"skipped_rows", r.gptq.skipped_rows},
                 {"fallbacks", r.gptq.fallbacks}, {"seconds", r.gptq.seconds}};
  if (plan.scales == Nvfp4ScaleMethod::Hessian)
    j["hessian"] = {{"file", a.hessian}, {"damping", a.hessian_damping}, {"blocks", r.hessian.blocks},
                    {"fallback_blocks", r.hessian.fallback_blocks}};
  write_json_report(a.json_path, j);
}

void add_command(CLI::App& app) {
  auto args = std::make_shared<ConvertArgs>();
  auto* cmd = app.add_subcommand(
      "convert",
      "Convert a checkpoint to NVFP4. DeepSeek V4: by default the checkpoint ModelOpt's V4 exporter writes (recipe "
      "moe: the routed experts to NVFP4, everything else byte-identical), as vLLM, SGLang and TensorRT-LLM load it; "
      "--recipe all-linear converts every GEMM weight, in ModelOpt's general layout or (--format "
      "compressed-tensors) nvfp4-pack-quantized. DeepSeek V3/V3.2 and Llama-like models (Llama, Qwen, Mixtral...; "
      "the family comes from config.json) get ModelOpt's general layout or compressed-tensors, FP8 blocks that stay "
      "written as BF16. MXFP4 experts are cast losslessly by default (--numerics cast) or requantized. Streams in "
      "bounded memory; shards are published atomically; --resume continues after a kill.");
  cmd->add_option("SRC", args->src, "Source checkpoint directory")->required();
  cmd->add_option("DST", args->dst, "Output directory (new, empty, or an earlier run's with --resume)")->required();
  cmd->add_option("--calib", args->calib,
                  "Calibration: safetensors of F32 0-d '<module>.input_amax' tensors (required unless --weight-only)");
  cmd->add_flag("--weight-only", args->weight_only, "Write no input_scale (no calibration; see the warning)");
  cmd->add_option("--numerics", args->numerics,
                  "auto (default: cast for MXFP4 experts, the layout's quantizer for the rest), cast (lossless "
                  "MXFP4->NVFP4), modelopt (dequantize to BF16 and requantize), compressed-tensors (llm-compressor's "
                  "arithmetic; with --format compressed-tensors)");
  cmd->add_option("--scales", args->scales,
                  "Block scales of requantized weights: max (default: the block's amax, ModelOpt's default), mse "
                  "(per block the E4M3 scale with the least squared error, ModelOpt's FP8 scale sweep), "
                  "four-over-six (per block amax/6 or amax/4, ModelOpt's four-over-six), hessian (the mse sweep with "
                  "each block's error weighted by the XᵀX block of its input channels, from --hessian); ModelOpt "
                  "layout only; MXFP4 experts that are cast keep their scales");
  cmd->add_option("--hessian", args->hessian,
                  "For --scales hessian: the XᵀX statistics 'calibrate --hessian' wrote for this checkpoint; for --gptq "
                  "(and then also for --scales hessian): the directory 'calibrate --hessian DIR --hessian-mode full' "
                  "wrote");
  cmd->add_flag("--gptq", args->gptq,
                "After the block scales are chosen (any --scales), round the codes with GPTQ's error compensation "
                "over the full X^T X of each linear (--hessian DIR); on the CPU or the GPU (--device)");
  cmd->add_option("--device", args->device,
                  "Where --gptq runs: cpu (default; F64, the reference), cuda (F32 on the GPU: the same decisions, "
                  "codes close to the CPU's but not identical; exit 2 without a GPU) or auto (cuda where this build "
                  "has CUDA and a GPU is present, else cpu). The rest of convert runs on the CPU; a --resume must "
                  "use the device the run started on")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  cmd->add_option("--gptq-damping", args->gptq_damping,
                  "For --gptq: lambda of the damping lambda*mean(diag) added to X^T X (default 0.01; retried 10, 100 "
                  "and 1000 times larger where X^T X is not positive definite, then plain rounding)");
  cmd->add_option("--gptq-block", args->gptq_block,
                  "For --gptq: columns per lazy batch update, a multiple of 16 (default 128)");
  cmd->add_flag("--gptq-act-order", args->gptq_act_order,
                "For --gptq: process the columns by decreasing X^T X diagonal (static activation order)");
  cmd->add_option("--gptq-missing", args->gptq_missing,
                  "For --gptq: a requantized weight without its X^T X is an error (default) or is rounded without "
                  "compensation (rtn)");
  cmd->add_option("--hessian-damping", args->hessian_damping,
                  "For --scales hessian: lambda of the damping lambda*mean(diag) added to each XᵀX block's diagonal "
                  "(default 0.01)");
  cmd->add_option("--hessian-missing", args->hessian_missing,
                  "For --scales hessian: a requantized weight the statistics do not cover (e.g. V4's MTP block) "
                  "is an error (default) or gets mse scales (mse), listed in the plan file's scale_methods");
  cmd->add_option("--recipe", args->recipe,
                  "What to quantize: moe (default, the routed experts; for V4 NVIDIA's release layout) or all-linear "
                  "(every GEMM weight of the model family: attention, MLPs, shared experts; ModelOpt's general layout)");
  cmd->add_option("--format", args->format,
                  "Output layout: modelopt (default) or compressed-tensors (nvfp4-pack-quantized; needs every scaled "
                  "weight converted, e.g. --recipe all-linear)");
  cmd->add_option("--include", args->include, "Also convert the weights whose names match this regex");
  cmd->add_option("--exclude", args->exclude, "Keep the weights whose names match this regex as they are");
  cmd->add_flag("--strict", args->strict,
                "Fail on a selected matrix whose K is not a multiple of 16 (default: keep it and warn)");
  cmd->add_flag("--include-mtp-experts", args->include_mtp, "Quantize the MTP block's experts too");
  cmd->add_option("--shard-size", args->shard_size,
                  "Output shard size limit, e.g. 5GB (default: the source's shards, same names and tensors)");
  cmd->add_flag("--allow-nonfinite", args->allow_nonfinite, "Convert experts holding NaN or Inf instead of failing");
  cmd->add_option("--threads", args->threads, "Worker threads (default: all cores); never changes the output");
  cmd->add_flag("--no-direct-io", args->no_direct_io,
                "Read and write through the page cache (default: around it, O_DIRECT, where the file system "
                "allows); never changes the output");
  cmd->add_flag("--resume", args->resume,
                "Continue an interrupted run into DST: finished shards are kept, the rest written; the result is "
                "identical to an uninterrupted run");
  cmd->add_flag("--force", args->force, "Empty a non-empty DST first");
  cmd->add_flag("--dry-run", args->dry_run, "Print the plan (from headers alone) and write nothing");
  cmd->add_option("--json", args->json_path, "Write a JSON report to this file ('-' for stdout)");
  cmd->add_flag("--progress", args->progress, "Show progress even when stderr is not a terminal");
  cmd->add_flag("--quiet", args->quiet, "Print nothing but errors");
  cmd->callback([args] { run(*args); });
}

const CommandRegistration kRegistration(45, add_command);

}  // namespace convert_command

}  // namespace fp4kit::cli
