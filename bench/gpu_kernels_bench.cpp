// Every GPU kernel against the device's own ceilings, measured in the same run: a device-to-device
// copy (TB/s, bytes read + written) and cuBLAS BF16 (TFLOP/s at 8192^3, and at each weight shape).
//
//   gpu_kernels_bench [--quick] [--only ceilings,codecs,activation,gemm,moe,draw,launch] [--m 1,8,...] [--reps R] [--json FILE]
//
// Method: random operands (never zeros); every operand a kernel streams is rotated among enough
// copies that the set is at least 4x the L2, so no launch finds its weights in the L2; warm-up, then
// CUDA events around replays of a captured CUDA graph of many launches (launch gaps out), the
// median of several repetitions. Exit code 1 when a kernel failed or a sanity check did not hold.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/parallel.h"
#include "formats/bf16.h"
#include "gpu_bench_util.h"
#include "cuda/activation_quantize.h"
#include "cuda/bandwidth_copy.h"
#include "cuda/cublas_gemm.h"
#include "cuda/gemm_weight_bf16.h"
#include "cuda/device.h"
#include "cuda/moe_experts.h"
#include "cuda/token_draw.h"
#include "cuda/v4_hyper_connection.h"
#include "cuda/v4_norm_rope.h"
#include "cuda/weight_codecs.h"
#include "cuda/weight_gemm.h"
#include "serve/sampling.h"

using namespace fp4kit;
using namespace fp4kit::bench;
using cuda::GemmOutput;
using cuda::GemmWeight;
using cuda::WeightFormat;
using nlohmann::json;

namespace {

double dbl(int64_t v) { return static_cast<double>(v); }
double dbl(size_t v) { return static_cast<double>(v); }

struct Options {
  bool quick = false;
  std::set<std::string> only;  // empty: every section
  std::set<int64_t> gemm_ms;   // the GEMM table's M (empty: all of kGemmMs)
  std::string json_path;
  TimingOptions timing;
  bool wants(const std::string& section) const { return only.empty() || only.count(section) > 0; }
};

// What every section shares: the device, its stream, random data, the ceilings, the results.
struct Bench {
  Bench(Options o, cuda::DeviceInfo d) : opt(std::move(o)), dev(std::move(d)) {}
  Options opt;
  cuda::DeviceInfo dev;
  Stream s;
  RandomPools pools{s};
  // The baseline as a framework calling cuBLASLt with default preferences gets it.
  cuda::CublasGemm cublas{cuda::CublasGemm::kDefaultWorkspaceBytes, cuda::CublasGemm::Bf16Partials::AnyScheme};
  double copy_gbps = 0;  // the faster device-to-device copy (memcpy or kernel), GB/s of bytes read + written
  json out = json::object();
  bool ok = true;

  Timing time(int copies, const std::function<void(int)>& enqueue) { return time_ops(s, copies, enqueue, opt.timing); }
  void failed(const std::string& section, const std::string& what, const std::exception& e) {
    std::printf("  %s: FAILED: %s\n", what.c_str(), e.what());
    out["errors"].push_back({{"section", section}, {"what", what}, {"error", e.what()}});
    ok = false;
    (void)cudaGetLastError();
  }
};

// The lossless cast's constants for one tensor (its own largest exponent shared with itself).
Mxfp4CastParams cast_params(const uint8_t* scales, size_t count) {
  return mxfp4_cast_params(scales, count, mxfp4_max_exponent(scales, count, -127));
}

json timing_json(const Timing& t) {
  json j = {{"us", t.us}, {"spread", t.spread}, {"graph", t.graph}, {"ops_per_replay", t.ops_per_replay}};
  if (!t.capture_error.empty()) j["capture_error"] = t.capture_error;
  return j;
}

// ---- device and ceilings -------------------------------------------------------------------

void describe_device(Bench& b) {
  int sm_khz = 0, mem_khz = 0, bus_bits = 0;
  cudaDeviceGetAttribute(&sm_khz, cudaDevAttrClockRate, b.dev.ordinal);
  cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, b.dev.ordinal);
  cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, b.dev.ordinal);
  (void)cudaGetLastError();
  const double peak_mem_tbps = 2.0 * mem_khz * 1e3 * bus_bits / 8 / 1e12;  // double data rate
  std::printf("GPU: %s (sm_%d%d), %d SMs, %.1f GiB (%.1f free), L2 %.1f MiB; peak SM clock %.0f MHz, memory %.0f MHz x "
              "%d bit = %.2f TB/s nominal\n",
              b.dev.name.c_str(), b.dev.sm_major, b.dev.sm_minor, b.dev.multiprocessors, dbl(b.dev.total_memory) / (1 << 30),
              dbl(b.dev.free_memory) / (1 << 30), dbl(b.dev.l2_bytes) / (1 << 20), sm_khz / 1e3, mem_khz / 1e3, bus_bits,
              peak_mem_tbps);
  std::printf("binary: %s; timing: median of %d graph replays, operands rotated over >= 4x L2 (%.0f MiB)\n\n",
              cuda::compiled_archs().c_str(), b.opt.timing.reps, 4 * dbl(b.dev.l2_bytes) / (1 << 20));
  b.out["device"] = {{"name", b.dev.name},
                     {"sm", std::to_string(b.dev.sm_major) + std::to_string(b.dev.sm_minor)},
                     {"multiprocessors", b.dev.multiprocessors},
                     {"memory_bytes", b.dev.total_memory},
                     {"l2_bytes", b.dev.l2_bytes},
                     {"peak_sm_clock_mhz", sm_khz / 1e3},
                     {"memory_clock_mhz", mem_khz / 1e3},
                     {"memory_bus_bits", bus_bits},
                     {"nominal_memory_tbps", peak_mem_tbps},
                     {"compiled_archs", cuda::compiled_archs()}};
  b.out["method"] = {{"reps", b.opt.timing.reps}, {"replay_ms", b.opt.timing.replay_ms}, {"rotation_min_bytes", 4 * b.dev.l2_bytes},
                     {"quick", b.opt.quick}};
}

void measure_ceilings(Bench& b) {
  std::printf("== ceilings\n");
  const size_t bytes = b.opt.quick ? (size_t{512} << 20) : (size_t{2} << 30);
  DeviceBuffer src(bytes, "copy source"), dst(bytes, "copy destination");
  b.pools.fill(src.data(), bytes, Fill::AnyByte);
  // Two copies of the same bytes: cudaMemcpyAsync (device to device) and a plain kernel with 16-byte
  // loads and stores; the faster one is the ceiling every "x copy" ratio divides by.
  const Timing memcpy_copy = b.time(1, [&](int) { cuda::copy_on_device(dst.data(), src.data(), bytes, b.s); });
  const Timing kernel_copy = b.time(1, [&](int) { cuda::copy_with_kernel(dst.data(), src.data(), bytes, b.s.get()); });
  const double memcpy_gbps = gb_per_s(2.0 * dbl(bytes), memcpy_copy.us);
  const double kernel_gbps = gb_per_s(2.0 * dbl(bytes), kernel_copy.us);
  b.copy_gbps = std::max(memcpy_gbps, kernel_gbps);
  std::printf("  copy of %.0f MiB, cudaMemcpyAsync D2D: %.1f us, %.2f TB/s (bytes read + written)\n", dbl(bytes) / (1 << 20),
              memcpy_copy.us, memcpy_gbps / 1e3);
  std::printf("  copy of %.0f MiB, 16-byte vector kernel: %.1f us, %.2f TB/s; ceiling used: %.2f TB/s (%s)\n",
              dbl(bytes) / (1 << 20), kernel_copy.us, kernel_gbps / 1e3, b.copy_gbps / 1e3,
              kernel_gbps >= memcpy_gbps ? "kernel" : "cudaMemcpyAsync");
  b.out["ceilings"]["copy"] = {{"bytes", bytes}, {"tbps", b.copy_gbps / 1e3},
                               {"memcpy_tbps", memcpy_gbps / 1e3}, {"kernel_tbps", kernel_gbps / 1e3},
                               {"timing", timing_json(memcpy_gbps >= kernel_gbps ? memcpy_copy : kernel_copy)},
                               {"memcpy_timing", timing_json(memcpy_copy)}, {"kernel_timing", timing_json(kernel_copy)}};

  const int64_t n = 8192;
  const size_t op = static_cast<size_t>(n * n * 2);
  DeviceBuffer a(op, "A"), w(op, "B"), y(op, "C");
  b.pools.fill(a.data(), op, Fill::Bf16);
  b.pools.fill(w.data(), op, Fill::Bf16);
  const Timing mm = b.time(1, [&](int) {
    b.cublas.bf16_gemm(a.data<uint16_t>(), w.data<uint16_t>(), y.data(), GemmOutput::Bf16, n, n, n, b.s.get());
  });
  const double tf = tflops(2.0 * dbl(n) * dbl(n) * dbl(n), mm.us);
  std::printf("  cuBLAS BF16 8192^3 (F32 accumulation, BF16 out): %.1f us, %.1f TFLOP/s\n\n", mm.us, tf);
  b.out["ceilings"]["cublas_bf16_8192"] = {{"tflops", tf}, {"timing", timing_json(mm)}};
}

// ---- a) weight codecs ----------------------------------------------------------------------

void bench_codecs(Bench& b) {
  std::printf("== weight codecs: GB/s of bytes read + written, ratio to the copy rate (goal >= 0.8)\n");
  std::printf("   (x copy here: against the vector copy kernel moving the same number of bytes, ramp and tail included)\n");
  std::printf("  %-34s %-22s %10s %10s %8s %12s\n", "op", "tensor", "time us", "GB/s", "x copy", "x copy here");
  struct Tensor {
    const char* name;
    size_t rows, cols;
  };
  const std::vector<Tensor> tensors = {{"V4-Pro expert 3072x7168", 3072, 7168}, {"1 GiB as BF16 65536x8192", 65536, 8192}};
  // MXFP4 -> NVFP4 constants from the scale bytes the pool holds (every operand's bytes come from it).
  const auto& e8m0 = b.pools.host(Fill::E8m0Scale);
  const Mxfp4CastParams cast = cast_params(e8m0.data(), e8m0.size());
  // A converter builds the cast's table once per tensor; the "(table/call)" row builds it in each call.
  const cuda::Mxfp4CastDeviceTable cast_table(cast, b.s.get());
  DeviceBuffer counters(cuda::kMxfp4CastCounters * 8, "cast counters");
  cuda::fill_bytes(counters.data(), 0, counters.bytes(), b.s);

  for (const Tensor& t : tensors) {
    const size_t n = t.rows * t.cols;
    const std::string shape = std::to_string(t.rows) + "x" + std::to_string(t.cols);
    struct Op {
      const char* name;
      Fill in_kind, in2_kind;
      size_t in, in2, out, out2;  // bytes of the operands
      std::function<void(const CopySet&, const CopySet&, const CopySet&, const CopySet&, int)> run;
    };
    const Fp8BlockShape fp8{t.rows, t.cols, Fp8ScaleKind::E8M0};
    const Nvfp4Scaling sc_f32 = nvfp4_scaling(8.0f, Nvfp4Numerics::ModelOpt, DType::F32);
    const Nvfp4Scaling sc_bf16 = nvfp4_scaling(8.0f, Nvfp4Numerics::ModelOpt, DType::BF16);
    const std::vector<Op> ops = {
        {"NVFP4 amax (f32 in)", Fill::F32, Fill::AnyByte, n * 4, 0, 4, 0,
         [&](auto& i, auto&, auto& o, auto&, int c) { cuda::nvfp4_amax(i.at(c), DType::F32, n, o.template as<float>(c), b.s.get()); }},
        {"NVFP4 quantize (f32 in)", Fill::F32, Fill::AnyByte, n * 4, 0, n / 2, n / 16,
         [&](auto& i, auto&, auto& o, auto& o2, int c) {
           cuda::nvfp4_quantize(i.at(c), DType::F32, n, sc_f32, o.template as<uint8_t>(c), o2.template as<uint8_t>(c), b.s.get());
         }},
        {"NVFP4 amax (bf16 in)", Fill::Bf16, Fill::AnyByte, n * 2, 0, 4, 0,
         [&](auto& i, auto&, auto& o, auto&, int c) { cuda::nvfp4_amax(i.at(c), DType::BF16, n, o.template as<float>(c), b.s.get()); }},
        {"NVFP4 quantize (bf16 in)", Fill::Bf16, Fill::AnyByte, n * 2, 0, n / 2, n / 16,
         [&](auto& i, auto&, auto& o, auto& o2, int c) {
           cuda::nvfp4_quantize(i.at(c), DType::BF16, n, sc_bf16, o.template as<uint8_t>(c), o2.template as<uint8_t>(c), b.s.get());
         }},
        {"MXFP4 -> NVFP4 cast", Fill::AnyByte, Fill::E8m0Scale, n / 2, n / 32, n / 2, n / 16,
         [&](auto& i, auto& i2, auto& o, auto& o2, int c) {
           cuda::mxfp4_to_nvfp4(i.template as<uint8_t>(c), i2.template as<uint8_t>(c), n, cast_table,
                                o.template as<uint8_t>(c), o2.template as<uint8_t>(c), counters.data<uint64_t>(), b.s.get());
         }},
        {"MXFP4 -> NVFP4 cast (table/call)", Fill::AnyByte, Fill::E8m0Scale, n / 2, n / 32, n / 2, n / 16,
         [&](auto& i, auto& i2, auto& o, auto& o2, int c) {
           cuda::mxfp4_to_nvfp4(i.template as<uint8_t>(c), i2.template as<uint8_t>(c), n, cast, o.template as<uint8_t>(c),
                                o2.template as<uint8_t>(c), counters.data<uint64_t>(), b.s.get());
         }},
        {"MXFP4 dequantize -> bf16", Fill::AnyByte, Fill::E8m0Scale, n / 2, n / 32, n * 2, 0,
         [&](auto& i, auto& i2, auto& o, auto&, int c) {
           cuda::mxfp4_dequantize_bf16(i.template as<uint8_t>(c), i2.template as<uint8_t>(c), n, o.template as<uint16_t>(c), b.s.get());
         }},
        {"FP8 128x128 dequantize -> bf16", Fill::E4m3Value, Fill::E8m0Scale, n, fp8.scale_rows() * fp8.scale_cols(), n * 2, 0,
         [&](auto& i, auto& i2, auto& o, auto&, int c) {
           cuda::fp8_block_dequantize_bf16(i.template as<uint8_t>(c), i2.at(c), fp8, 0, t.rows, o.template as<uint16_t>(c), b.s.get());
         }},
    };
    for (const Op& op : ops) {
      if (b.opt.quick && t.rows > 3072 && std::string(op.name).find("amax") != std::string::npos) continue;
      const size_t moved = op.in + op.in2 + op.out + op.out2;
      try {
        const int copies = copies_past_l2(moved, b.dev.l2_bytes);
        const CopySet in(op.in, copies, op.in_kind, b.pools, "codec input"), in2(op.in2, copies, op.in2_kind, b.pools, "codec input 2");
        const CopySet o(op.out, copies, Fill::AnyByte, b.pools, "codec output"), o2(op.out2, copies, Fill::AnyByte, b.pools, "codec output 2");
        const Timing tm = b.time(copies, [&](int c) { op.run(in, in2, o, o2, c); });
        const double gbps = gb_per_s(dbl(moved), tm.us);
        // The same bytes moved by the copy kernel at this size: half read, half written, rotated alike.
        const size_t half = (moved / 2 + 15) / 16 * 16;
        const CopySet copy_in(half, copies, Fill::AnyByte, b.pools, "copy input"),
            copy_out(half, copies, Fill::AnyByte, b.pools, "copy output");
        const Timing copy = b.time(copies, [&](int c) { cuda::copy_with_kernel(copy_out.at(c), copy_in.at(c), half, b.s.get()); });
        const double here = copy.us / tm.us;
        std::printf("  %-34s %-22s %10.1f %10.1f %8.2f %12.2f\n", op.name, shape.c_str(), tm.us, gbps, gbps / b.copy_gbps, here);
        b.out["codecs"].push_back({{"op", op.name}, {"tensor", t.name}, {"rows", t.rows}, {"cols", t.cols}, {"bytes_moved", moved},
                                   {"gbps", gbps}, {"ratio_to_copy", gbps / b.copy_gbps}, {"ratio_to_copy_here", here},
                                   {"copy_here_timing", timing_json(copy)}, {"copies", copies}, {"timing", timing_json(tm)}});
      } catch (const std::exception& e) {
        b.failed("codecs", std::string(op.name) + " " + shape, e);
      }
    }
  }
  std::printf("\n");
}

// ---- b) activation quantization ------------------------------------------------------------

// Token counts of every table: decode (1, 8), small batches, prefill.
const int64_t kGemmMs[] = {1, 8, 64, 512, 4096};

void bench_activation(Bench& b) {
  std::printf("== NVFP4 activation quantization, x BF16 [M, 7168]: time us and GB/s of bytes read + written\n"
              "   (inputs rotated over >= 4x L2 where that takes <= 256 copies: small M stays in the L2, as a layer's input does)\n");
  const int64_t k = 7168;
  const float global_scale = 448.0f * 6.0f / 8.0f;  // 1/input_scale for an amax of 8 (the random data's range)
  struct Variant {
    const char* name;
    cuda::ActivationQuantMath math;
    Nvfp4ScaleLayout layout;
    bool fake;  // quantize then decode to BF16 (W4A4 emulation)
  };
  const Variant variants[] = {{"exact, linear scales", cuda::ActivationQuantMath::Exact, Nvfp4ScaleLayout::Linear, false},
                              {"fast, linear scales", cuda::ActivationQuantMath::Fast, Nvfp4ScaleLayout::Linear, false},
                              {"fast, 128x4 swizzled scales", cuda::ActivationQuantMath::Fast, Nvfp4ScaleLayout::Swizzled128x4, false},
                              {"exact, quantize+decode to bf16", cuda::ActivationQuantMath::Exact, Nvfp4ScaleLayout::Linear, true}};
  std::printf("  %5s", "M");
  for (const Variant& v : variants) std::printf(" | %-30s", (std::string(v.name) + ": us, GB/s").c_str());
  std::printf("\n");
  for (int64_t m : kGemmMs) {
    std::printf("  %5lld", static_cast<long long>(m));
    for (const Variant& v : variants) {
      const size_t in = static_cast<size_t>(m * k) * 2;
      const size_t packed = v.fake ? static_cast<size_t>(m * k) * 2 : static_cast<size_t>(m * k / 2);
      const size_t scales = v.fake ? 0 : static_cast<size_t>(nvfp4_scale_bytes(m, k / 16, v.layout));
      const size_t moved = in + packed + scales;
      try {
        const int copies = copies_past_l2(moved, b.dev.l2_bytes, 256);
        const CopySet x(in, copies, Fill::Bf16, b.pools, "activations"), o(packed, copies, Fill::AnyByte, b.pools, "packed"),
            sc(scales, copies, Fill::AnyByte, b.pools, "scales");
        const Timing t = b.time(copies, [&](int c) {
          if (v.fake)
            cuda::fake_quantize_activation(x.as<uint16_t>(c), m, k, global_scale, 1.0f, o.as<uint16_t>(c), b.s.get(), v.math);
          else
            cuda::quantize_activation(x.as<uint16_t>(c), m, k, global_scale, v.layout, o.as<uint8_t>(c), sc.as<uint8_t>(c), b.s.get(),
                                      v.math);
        });
        const double gbps = gb_per_s(dbl(moved), t.us);
        std::printf(" | %10.2f %19.1f", t.us, gbps);
        b.out["activation_quantize"].push_back({{"variant", v.name}, {"m", m}, {"k", k}, {"bytes_moved", moved}, {"copies", copies},
                                                {"gbps", gbps}, {"ratio_to_copy", gbps / b.copy_gbps}, {"timing", timing_json(t)}});
      } catch (const std::exception& e) {
        std::printf(" | %30s", "FAILED");
        b.failed("activation", std::string(v.name) + " M=" + std::to_string(m), e);
      }
    }
    std::printf("\n");
  }
  std::printf("\n");
}

// ---- c) weight GEMMs -----------------------------------------------------------------------

struct GemmShape {
  const char* model;
  const char* name;
  int64_t n, k;
  const char* note;
};

// DeepSeek V4 linear weights ([out, in], src/models/deepseek_v4.cpp; deepseek-v4-checkpoint.md).
const GemmShape kGemmShapes[] = {
    {"V4-Pro", "w1/w3", 3072, 7168, "routed and shared expert gate/up"},
    {"V4-Pro", "w2", 7168, 3072, "routed and shared expert down"},
    {"V4-Pro", "wq_a", 1536, 7168, ""},
    {"V4-Pro", "wq_b", 65536, 1536, ""},
    {"V4-Pro", "wkv", 512, 7168, ""},
    {"V4-Pro", "wo_a", 16384, 4096, "16 groups of 1024x4096, timed as one dense product (same bytes and FLOPs)"},
    {"V4-Pro", "wo_b", 7168, 16384, ""},
    {"V4-Flash", "w1/w3", 2048, 4096, "routed and shared expert gate/up"},
    {"V4-Flash", "w2", 4096, 2048, "routed and shared expert down"},
    {"V4-Flash", "wq_a", 1024, 4096, ""},
    {"V4-Flash", "wq_b", 32768, 1024, ""},
    {"V4-Flash", "wkv", 512, 4096, ""},
    {"V4-Flash", "wo_a", 8192, 4096, "8 groups of 1024x4096, timed as one dense product (same bytes and FLOPs)"},
    {"V4-Flash", "wo_b", 4096, 8192, ""},
};

// read_early: the weight marked as not written by the previous kernel, so that the FP4 decode
// kernel starts its weight loads while the previous product finishes (programmatic dependent launch).
void run_gemm(Bench& b, const WeightSet& w, const uint16_t* x, int64_t m, void* y, GemmOutput out, int copy,
              bool read_early = false) {
  if (w.format == WeightFormat::Bf16) {
    b.cublas.bf16_gemm(x, w.data.as<uint16_t>(copy), y, out, m, w.n, w.k, b.s.get());
  } else {
    GemmWeight g = w.at(copy);
    g.read_early = read_early;
    cuda::weight_gemm(x, m, g, y, out, b.s.get());
  }
}

// The NVFP4 product as the GPU forward pass runs it from kDecodeOnceRows rows up: the block values
// decoded to BF16 (cuda/gemm_weight_bf16.h) and cuBLASLt with the global scale as alpha; the decode
// is timed in every call (the pass decodes each weight once per layer).
void run_nvfp4_decoded(Bench& b, const WeightSet& w, const uint16_t* x, int64_t m, void* y, uint16_t* scratch, int copy) {
  const GemmWeight g = w.at(copy);
  b.cublas.bf16_gemm(x, cuda::gemm_weight_bf16(g, scratch, b.s.get()), y, GemmOutput::Bf16, m, w.n, w.k, b.s.get(),
                     cuda::gemm_weight_bf16_alpha(g));
}

// Relative L2 error of y (BF16 [m, n] on the device) against y_ref.
double rel_error(const Bench& b, const void* y, const void* y_ref, size_t count) {
  std::vector<uint16_t> h(count), r(count);
  cuda::copy_to_host(h.data(), y, count * 2, b.s);
  cuda::copy_to_host(r.data(), y_ref, count * 2, b.s);
  b.s.synchronize("check read-back");
  double e2 = 0, r2 = 0;
  for (size_t i = 0; i < count; ++i) {
    const double v = BF16{h[i]}.to_float(), ref = BF16{r[i]}.to_float();
    if (std::isnan(v) || std::isnan(ref)) return NAN;
    e2 += (v - ref) * (v - ref), r2 += ref * ref;
  }
  return r2 > 0 ? std::sqrt(e2 / r2) : NAN;
}

// Each decoding GEMM at M = 8 against cuBLAS on the same weights decoded to BF16 by the codec
// kernels (NVFP4 through the lossless cast of the MXFP4 weight): only the summation order differs.
json check_gemms(Bench& b, const WeightSet& mx, const WeightSet& fp8, const uint16_t* x, void* y, void* y_ref) {
  const int64_t m = 8, n = mx.n, k = mx.k;
  const size_t nk = static_cast<size_t>(n * k);
  DeviceBuffer dq(nk * 2, "decoded weight"), nv_data(nk / 2, "cast weight"), nv_scales(nk / 16, "cast scales");
  json j = json::object();
  auto compare = [&](const char* name, const GemmWeight& w) {
    cuda::fill_bytes(y, 0xFF, static_cast<size_t>(m * n) * 2, b.s);
    b.cublas.bf16_gemm(x, dq.data<uint16_t>(), y_ref, GemmOutput::Bf16, m, n, k, b.s.get());
    cuda::weight_gemm(x, m, w, y, GemmOutput::Bf16, b.s.get());
    const double err = rel_error(b, y, y_ref, static_cast<size_t>(m * n));
    j[name] = err;
    if (!(err < 1e-2)) {
      std::printf("  CHECK FAILED: %s N=%lld K=%lld M=8: ||y - cuBLAS(decoded)|| / ||cuBLAS|| = %g\n", name, static_cast<long long>(n),
                  static_cast<long long>(k), err);
      b.ok = false;
    }
  };
  const GemmWeight mxw = mx.at(0);
  cuda::mxfp4_dequantize_bf16(mx.data.as<uint8_t>(0), mx.scales.as<uint8_t>(0), nk, dq.data<uint16_t>(), b.s.get());
  compare("mxfp4", mxw);
  std::vector<uint8_t> host_scales(nk / 32);
  cuda::copy_to_host(host_scales.data(), mxw.scales, host_scales.size(), b.s);
  b.s.synchronize("scale read-back");
  const Mxfp4CastParams params = cast_params(host_scales.data(), host_scales.size());
  cuda::mxfp4_to_nvfp4(mx.data.as<uint8_t>(0), mx.scales.as<uint8_t>(0), nk, params, nv_data.data<uint8_t>(),
                       nv_scales.data<uint8_t>(), nullptr, b.s.get());
  GemmWeight nvw;
  nvw.format = WeightFormat::Nvfp4, nvw.n = n, nvw.k = k, nvw.data = nv_data.data(), nvw.scales = nv_scales.data();
  nvw.global_scale = params.weight_scale_2;
  compare("nvfp4", nvw);
  const Fp8BlockShape shape{static_cast<size_t>(n), static_cast<size_t>(k), Fp8ScaleKind::E8M0};
  cuda::fp8_block_dequantize_bf16(fp8.data.as<uint8_t>(0), fp8.scales.at(0), shape, 0, shape.rows, dq.data<uint16_t>(), b.s.get());
  compare("fp8_block", fp8.at(0));
  return j;
}

void bench_gemms(Bench& b) {
  std::printf("== weight GEMMs y[M,N] = x[M,K]·Wᵀ, x BF16, y BF16, F32 accumulation; time in us; TB/s = weight bytes / time;\n"
              "   xBF16 = cuBLAS BF16 time / this time (cuBLASLt heuristic, default preferences, 32 MiB workspace).\n"
              "   Goals: M=1 NVFP4 >= 3x cuBLAS; M=4096 NVFP4 >= 0.6x cuBLAS TFLOP/s. Check at M=8: ||y - cuBLAS(W decoded to BF16)|| / ||.||\n"
              "   NVFP4 dec = block values decoded to BF16 + cuBLASLt with alpha = global scale (the forward pass's path from 1024 rows),\n"
              "   decode timed in every call; M >= 512 only. Read floor (M=1): a read-only kernel over the NVFP4 weight's bytes\n"
              "   (codes + scales, rotated the same way), and cuBLAS BF16 / that time: the most any NVFP4 kernel can reach there.\n");
  std::printf("  %-16s %-11s %5s | %9s %6s %7s | %9s %6s %7s %6s | %9s %6s | %9s %6s | %9s %6s | %s\n", "shape", "NxK", "M", "BF16 us", "TB/s",
              "TFLOP/s", "NVFP4 us", "TB/s", "TFLOP/s", "xBF16", "MXFP4 us", "xBF16", "FP8 us", "xBF16", "NVFP4 dec", "xBF16",
              "goal / check");
  const WeightFormat formats[] = {WeightFormat::Bf16, WeightFormat::Nvfp4, WeightFormat::Mxfp4, WeightFormat::Fp8Block};
  for (const GemmShape& sh : kGemmShapes) {
    if (b.opt.quick && !(sh.n == 3072 || (sh.n == 7168 && sh.k == 3072) || sh.n == 2048 || sh.n == 65536)) continue;
    const std::string label = std::string(sh.model) + " " + sh.name;
    const std::string nk = std::to_string(sh.n) + "x" + std::to_string(sh.k);
    try {
      const int64_t m_max = kGemmMs[std::size(kGemmMs) - 1];
      DeviceBuffer x(static_cast<size_t>(m_max * sh.k) * 2, "x"), y(static_cast<size_t>(m_max * sh.n) * 2, "y"),
          y_ref(static_cast<size_t>(8 * sh.n) * 2, "y reference"), decoded(static_cast<size_t>(sh.n * sh.k) * 2, "decoded NVFP4");
      b.pools.fill(x.data(), x.bytes(), Fill::Bf16);
      std::vector<WeightSet> sets;
      for (WeightFormat f : formats) sets.emplace_back(f, sh.n, sh.k, b.pools, b.dev.l2_bytes);
      // The least time any kernel takes to stream the NVFP4 weight's bytes at this size (M = 1 rows).
      const size_t floor_bytes = sets[1].bytes() / 16 * 16;
      CopySet floor_src(floor_bytes, sets[1].copies(), Fill::AnyByte, b.pools, "read-floor copies");
      DeviceBuffer sink(16, "read-floor sink");
      json check = json::object();
      try {
        check = check_gemms(b, sets[2], sets[3], x.data<uint16_t>(), y.data(), y_ref.data());
      } catch (const std::exception& e) {
        b.failed("gemm", "check " + label, e);
      }
      for (int64_t m : kGemmMs) {
        if (!b.opt.gemm_ms.empty() && b.opt.gemm_ms.count(m) == 0) continue;
        json row = {{"model", sh.model}, {"name", sh.name}, {"n", sh.n}, {"k", sh.k}, {"m", m}, {"note", sh.note}};
        if (m == 8) row["check_rel_error_vs_cublas_decoded"] = check;
        double us[4] = {NAN, NAN, NAN, NAN};
        for (size_t f = 0; f < std::size(formats); ++f) {
          const WeightSet& w = sets[f];
          try {
            const Timing t = b.time(w.copies(), [&](int c) { run_gemm(b, w, x.data<uint16_t>(), m, y.data(), GemmOutput::Bf16, c); });
            us[f] = t.us;
            const double flops = 2.0 * dbl(m) * dbl(sh.n) * dbl(sh.k);
            row[format_name(w.format)] = {{"weight_bytes", w.bytes()}, {"copies", w.copies()}, {"tbps_weights", gb_per_s(dbl(w.bytes()), t.us) / 1e3},
                                          {"tflops", tflops(flops, t.us)}, {"timing", timing_json(t)}};
          } catch (const std::exception& e) {
            b.failed("gemm", label + " M=" + std::to_string(m) + " " + format_name(w.format), e);
          }
        }
        for (size_t f = 1; f < 4; ++f)
          if (row.contains(format_name(formats[f]))) row[format_name(formats[f])]["speedup_vs_cublas_bf16"] = us[0] / us[f];
        const double flops = 2.0 * dbl(m) * dbl(sh.n) * dbl(sh.k);
        double dec_us = NAN;
        if (m >= 512) {
          try {
            const WeightSet& w = sets[1];
            const Timing t = b.time(w.copies(), [&](int c) {
              run_nvfp4_decoded(b, w, x.data<uint16_t>(), m, y.data(), decoded.data<uint16_t>(), c);
            });
            dec_us = t.us;
            row["nvfp4_decoded"] = {{"tflops", tflops(flops, t.us)}, {"speedup_vs_cublas_bf16", us[0] / t.us}, {"timing", timing_json(t)}};
          } catch (const std::exception& e) {
            b.failed("gemm", label + " M=" + std::to_string(m) + " nvfp4 decoded", e);
          }
        }
        double early_us = NAN;
        if (m <= 16) {
          try {
            const WeightSet& w = sets[1];
            const Timing t = b.time(w.copies(), [&](int c) { run_gemm(b, w, x.data<uint16_t>(), m, y.data(), GemmOutput::Bf16, c, true); });
            early_us = t.us;
            row["nvfp4_read_early"] = {{"tbps_weights", gb_per_s(dbl(w.bytes()), t.us) / 1e3}, {"speedup_vs_cublas_bf16", us[0] / t.us},
                                       {"timing", timing_json(t)}};
          } catch (const std::exception& e) {
            b.failed("gemm", label + " M=" + std::to_string(m) + " nvfp4 read early", e);
          }
        }
        double floor_us = NAN;
        if (m == 1) {
          try {
            const Timing t = b.time(floor_src.copies, [&](int c) {
              cuda::read_with_kernel(floor_src.at(c), floor_bytes, sink.data<uint32_t>(), b.s.get());
            });
            floor_us = t.us;
            row["nvfp4_read_floor"] = {{"bytes", floor_bytes}, {"tbps", gb_per_s(dbl(floor_bytes), t.us) / 1e3},
                                       {"cublas_bf16_over_floor", us[0] / t.us}, {"timing", timing_json(t)}};
          } catch (const std::exception& e) {
            b.failed("gemm", label + " M=1 read floor", e);
          }
        }
        std::string goal;
        if (m == 1) goal = std::string("NVFP4 >= 3x: ") + (us[0] / us[1] >= 3 ? "yes" : "NO");
        if (m <= 16) {
          char c[96];
          std::snprintf(c, sizeof c, "%searly reads %.1f us (%.2fx)", goal.empty() ? "" : "; ", early_us, us[0] / early_us);
          goal += c;
        }
        if (m == 1) {
          char c[96];
          std::snprintf(c, sizeof c, "; read floor %.1f us (%.2fx)", floor_us, us[0] / floor_us);
          goal += c;
        }
        if (m == 4096)
          goal = std::string("NVFP4 >= 0.6x TFLOP/s: kernel ") + (us[0] / us[1] >= 0.6 ? "yes" : "NO") + ", decoded " +
                 (us[0] / dec_us >= 0.6 ? "yes" : "NO");
        if (m == 8 && !check.empty()) {
          char c[96];
          std::snprintf(c, sizeof c, "rel err nv %.1e mx %.1e fp8 %.1e", check.value("nvfp4", NAN), check.value("mxfp4", NAN),
                        check.value("fp8_block", NAN));
          goal = std::string(c) + "; " + goal;
        }
        row["goal"] = goal;
        std::printf("  %-16s %-11s %5lld | %9.1f %6.2f %7.1f | %9.1f %6.2f %7.1f %6.2f | %9.1f %6.2f | %9.1f %6.2f | %9.1f %6.2f | %s\n",
                    label.c_str(), nk.c_str(), static_cast<long long>(m), us[0], gb_per_s(dbl(sets[0].bytes()), us[0]) / 1e3,
                    tflops(flops, us[0]), us[1], gb_per_s(dbl(sets[1].bytes()), us[1]) / 1e3, tflops(flops, us[1]), us[0] / us[1],
                    us[2], us[0] / us[2], us[3], us[0] / us[3], dec_us, us[0] / dec_us, goal.c_str());
        b.out["gemm"].push_back(row);
      }
    } catch (const std::exception& e) {
      b.failed("gemm", label, e);
    }
  }
  std::printf("\n");
}

// ---- d) MoE layer -------------------------------------------------------------------------

constexpr int64_t kMoeHidden = 7168, kMoeInter = 3072, kMoeTopK = 6, kMoeExperts = 384;  // V4-Pro
constexpr float kSwigluLimit = 10.0f;

// Bytes of one expert's three matrices in a format.
size_t expert_bytes(WeightFormat f) {
  const size_t nk = static_cast<size_t>(kMoeHidden * kMoeInter);
  switch (f) {
    case WeightFormat::Nvfp4: return 3 * (nk / 2 + nk / 16);
    case WeightFormat::Mxfp4: return 3 * (nk / 2 + nk / 32);
    case WeightFormat::Fp8Block: return 3 * nk + 3 * 24 * 56;
    case WeightFormat::Bf16: return 3 * nk * 2;
  }
  return 0;
}

// The routed experts of one layer through moe_routed_experts (grouped decoding GEMMs).
Timing time_moe_grouped(Bench& b, WeightFormat f, int32_t experts, const std::vector<Routing>& routes, const uint16_t* x,
                        float* out, cuda::MoeWorkspace& ws) {
  const size_t nk = static_cast<size_t>(kMoeHidden * kMoeInter);
  const size_t data = nk / 2, scale = f == WeightFormat::Nvfp4 ? nk / 16 : nk / 32;
  const Fill scale_kind = f == WeightFormat::Nvfp4 ? Fill::E4m3Scale : Fill::E8m0Scale;
  const CopySet d(3 * data, experts, Fill::AnyByte, b.pools, std::string(format_name(f)) + " expert weights");
  const CopySet sc(3 * scale, experts, scale_kind, b.pools, std::string(format_name(f)) + " expert scales");
  std::vector<GemmWeight> w1, w3, w2;
  for (int32_t e = 0; e < experts; ++e) {
    auto make = [&](int j, int64_t n, int64_t k) {
      GemmWeight w;
      w.format = f, w.n = n, w.k = k;
      w.data = d.as<uint8_t>(e) + j * data;
      w.scales = sc.as<uint8_t>(e) + j * scale;
      w.global_scale = f == WeightFormat::Nvfp4 ? 0.01f : 1.0f;
      return w;
    };
    w1.push_back(make(0, kMoeInter, kMoeHidden));
    w3.push_back(make(1, kMoeInter, kMoeHidden));
    w2.push_back(make(2, kMoeHidden, kMoeInter));
  }
  const cuda::MoeExpertTable table(w1, w3, w2);
  for (const Routing& r : routes)  // once synchronously: checks the routing and the whole path
    cuda::moe_routed_experts(x, r.view, table.view(), kSwigluLimit, out, GemmOutput::F32, ws, b.s.get());
  return b.time(static_cast<int>(routes.size()), [&](int c) {
    cuda::moe_routed_experts_async(x, routes[static_cast<size_t>(c)].view, table.view(), kSwigluLimit, out, GemmOutput::F32, ws,
                                   b.s.get());
  });
}

// The same layer with BF16 experts as a BF16 engine runs it: the same routing and gather
// (moe_route_rows), per active expert one cuBLAS product with w1 and w3 stacked [2I, H] and one with
// w2, the same combine (moe_combine). The SwiGLU between them is not run (w2 reads a random [R, I]
// buffer instead); its bytes at the copy rate are added to the time as an estimate.
Timing time_moe_cublas(Bench& b, int32_t experts, const std::vector<Routing>& routes, const uint16_t* x, float* out,
                       cuda::MoeWorkspace& ws) {
  const size_t nk = static_cast<size_t>(kMoeHidden * kMoeInter);
  const CopySet w(3 * nk * 2, experts, Fill::Bf16, b.pools, "bf16 expert weights");
  const int64_t rows = ws.max_rows();
  DeviceBuffer h13(static_cast<size_t>(rows * 2 * kMoeInter) * 2, "gate/up output"), h(static_cast<size_t>(rows * kMoeInter) * 2, "SwiGLU output");
  b.pools.fill(h.data(), h.bytes(), Fill::Bf16);
  auto* expert_out = const_cast<float*>(ws.expert_out());  // the buffer moe_combine reads
  auto layer = [&](int c) {
    const Routing& r = routes[static_cast<size_t>(c)];
    cuda::moe_route_rows(x, r.view, ws, b.s.get());
    int64_t off = 0;
    for (int32_t e = 0; e < experts; ++e) {
      const int64_t cnt = r.count[static_cast<size_t>(e)];
      if (cnt == 0) continue;
      b.cublas.bf16_gemm(ws.sorted_x() + off * kMoeHidden, w.as<uint16_t>(e), h13.data<uint16_t>() + off * 2 * kMoeInter,
                         GemmOutput::Bf16, cnt, 2 * kMoeInter, kMoeHidden, b.s.get());
      off += cnt;
    }
    off = 0;
    for (int32_t e = 0; e < experts; ++e) {
      const int64_t cnt = r.count[static_cast<size_t>(e)];
      if (cnt == 0) continue;
      b.cublas.bf16_gemm(h.data<uint16_t>() + off * kMoeInter, w.as<uint16_t>(e) + 2 * nk, expert_out + off * kMoeHidden,
                         GemmOutput::F32, cnt, kMoeHidden, kMoeInter, b.s.get());
      off += cnt;
    }
    cuda::moe_combine(r.view, ws, out, GemmOutput::F32, b.s.get());
  };
  return b.time(static_cast<int>(routes.size()), layer);
}

void bench_moe(Bench& b) {
  std::printf("== MoE layer, V4-Pro routed experts (H=%lld, I=%lld, k=%lld, SwiGLU limit %.0f), x BF16, out F32; goal NVFP4 >= 3x BF16\n",
              static_cast<long long>(kMoeHidden), static_cast<long long>(kMoeInter), static_cast<long long>(kMoeTopK), kSwigluLimit);
  size_t free_b = 0, total_b = 0;
  cuda::check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
  // One format's experts are resident at a time; BF16 needs the most.
  const auto fit = static_cast<int64_t>(dbl(free_b) * 0.85 / dbl(expert_bytes(WeightFormat::Bf16)));
  const auto experts = static_cast<int32_t>(std::min<int64_t>(kMoeExperts, fit));
  std::printf("  %d of %lld experts resident (routing drawn over them); %.2f GB NVFP4, %.2f GB BF16 in all\n", experts,
              static_cast<long long>(kMoeExperts), dbl(expert_bytes(WeightFormat::Nvfp4)) * experts / 1e9,
              dbl(expert_bytes(WeightFormat::Bf16)) * experts / 1e9);
  std::printf("  %6s %7s | %10s %7s | %10s %7s | %10s %10s %10s %7s | %7s %7s\n", "tokens", "experts", "NVFP4 us", "TB/s", "MXFP4 us",
              "TB/s", "BF16 us", "+SwiGLU", "BF16 tot", "TB/s", "NV xBF", "MX xBF");
  b.out["moe"]["experts_resident"] = experts;
  const std::vector<int64_t> token_counts = b.opt.quick ? std::vector<int64_t>{1, 8} : std::vector<int64_t>{1, 8, 512};
  for (int64_t tokens : token_counts) {
    try {
      const int n_routes = tokens <= 64 ? 8 : 2;
      std::vector<Routing> routes;
      double active = 0;
      for (int i = 0; i < n_routes; ++i) {
        routes.push_back(draw_routing(tokens, kMoeTopK, experts, 1000 + static_cast<uint64_t>(i), b.s));
        active += routes.back().active;
      }
      active /= n_routes;
      DeviceBuffer x(static_cast<size_t>(tokens * kMoeHidden) * 2, "moe x"), out(static_cast<size_t>(tokens * kMoeHidden) * 4, "moe out");
      b.pools.fill(x.data(), x.bytes(), Fill::Bf16);
      cuda::MoeWorkspace ws(tokens, kMoeTopK, experts, kMoeHidden, kMoeInter);
      json row = {{"tokens", tokens}, {"top_k", kMoeTopK}, {"experts", experts}, {"routings", n_routes}, {"active_experts_mean", active}};
      double us[3] = {NAN, NAN, NAN};
      const WeightFormat fs[] = {WeightFormat::Nvfp4, WeightFormat::Mxfp4};
      for (int i = 0; i < 2; ++i) {
        try {
          const Timing t = time_moe_grouped(b, fs[i], experts, routes, x.data<uint16_t>(), out.data<float>(), ws);
          us[i] = t.us;
          row[format_name(fs[i])] = {{"timing", timing_json(t)},
                                     {"tbps_active_weights", gb_per_s(active * dbl(expert_bytes(fs[i])), t.us) / 1e3}};
        } catch (const std::exception& e) {
          b.failed("moe", std::to_string(tokens) + " tokens " + format_name(fs[i]), e);
        }
      }
      double swiglu_us = NAN;
      try {
        const Timing t = time_moe_cublas(b, experts, routes, x.data<uint16_t>(), out.data<float>(), ws);
        us[2] = t.us;
        const double rows = dbl(tokens * kMoeTopK);
        swiglu_us = (rows * 2 * dbl(kMoeInter) * 2 + rows * dbl(kMoeInter) * 2) / (b.copy_gbps * 1e3);
        row["bf16_cublas"] = {{"timing", timing_json(t)},
                              {"swiglu_estimate_us", swiglu_us},
                              {"total_us", t.us + swiglu_us},
                              {"tbps_active_weights", gb_per_s(active * dbl(expert_bytes(WeightFormat::Bf16)), t.us) / 1e3},
                              {"note", "w1|w3 stacked, one cuBLAS call per active expert and product; SwiGLU not run, estimated at the copy rate"}};
      } catch (const std::exception& e) {
        b.failed("moe", std::to_string(tokens) + " tokens bf16 cuBLAS", e);
      }
      const double base = us[2] + swiglu_us;
      row["speedup_nvfp4_vs_bf16"] = base / us[0];
      row["speedup_mxfp4_vs_bf16"] = base / us[1];
      std::printf("  %6lld %7.1f | %10.1f %7.2f | %10.1f %7.2f | %10.1f %10.1f %10.1f %7.2f | %7.2f %7.2f %s\n", static_cast<long long>(tokens),
                  active, us[0], gb_per_s(active * dbl(expert_bytes(WeightFormat::Nvfp4)), us[0]) / 1e3, us[1],
                  gb_per_s(active * dbl(expert_bytes(WeightFormat::Mxfp4)), us[1]) / 1e3, us[2], swiglu_us, base,
                  gb_per_s(active * dbl(expert_bytes(WeightFormat::Bf16)), us[2]) / 1e3, base / us[0], base / us[1],
                  base / us[0] >= 3 ? "goal met" : "goal NOT met");
      b.out["moe"]["rows"].push_back(row);
    } catch (const std::exception& e) {
      b.failed("moe", std::to_string(tokens) + " tokens", e);
    }
  }
  std::printf("  (experts = mean distinct active experts per routing; TB/s = their weight bytes / time)\n\n");
}

// ---- token draws -----------------------------------------------------------------------------

// The next token of R sequences at V4's vocabulary, as `serve --device cuda` draws it now (on the
// device, only the tokens come back) and as it did before (the logits copied to the host, then
// serve's CPU sampler on every core, one row per sequence). Wall time per step, median of the calls;
// temperature 0.8 with the chosen token's logprob and one alternative, as bench/serve_load.py asks.
void bench_draw(Bench& b) {
  constexpr int64_t V = 129280;
  std::printf("Token draws, V = %lld (wall time of one step's draws, median)\n", static_cast<long long>(V));
  std::printf("  %4s | %12s | %22s | %8s\n", "rows", "device ms", "host ms (copy + draw)", "x");
  const auto median_ms = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2] * 1e3;
  };
  for (int64_t R : {1, 8, 32}) {
    try {
      DeviceBuffer logits(static_cast<size_t>(R * V) * 4, "draw logits");
      std::vector<float> host_rows(static_cast<size_t>(R * V));
      uint64_t seed = 17;
      for (float& x : host_rows) {  // normal(0, 3) by Box-Muller on a counter
        const double u1 = serve::sampling_uniform(seed, 0), u2 = serve::sampling_uniform(seed, 1);
        ++seed;
        x = static_cast<float>(3.0 * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
      }
      cuda::check(cudaMemcpy(logits.data(), host_rows.data(), host_rows.size() * 4, cudaMemcpyHostToDevice), "draw logits");
      std::vector<cuda::TokenDrawRow> rows(static_cast<size_t>(R));
      std::vector<serve::SamplingParams> params(static_cast<size_t>(R));
      for (int64_t r = 0; r < R; ++r) {
        params[static_cast<size_t>(r)].temperature = rows[static_cast<size_t>(r)].temperature = 0.8;
        params[static_cast<size_t>(r)].seed = static_cast<uint64_t>(r);
        params[static_cast<size_t>(r)].top_logprobs = rows[static_cast<size_t>(r)].top_logprobs = 1;
        rows[static_cast<size_t>(r)].logprobs = true;
        rows[static_cast<size_t>(r)].uniform = serve::sampling_uniform(static_cast<uint64_t>(r), 0);
      }
      std::vector<double> dev_s, host_s;
      std::vector<cuda::TokenDrawResult> drawn;
      for (int i = 0; i < 21; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        drawn = cuda::draw_tokens(logits.data<float>(), V, rows, b.s.get());
        dev_s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      std::vector<float> out(static_cast<size_t>(R * V));
      std::vector<serve::SampledToken> tokens(static_cast<size_t>(R));
      for (int i = 0; i < 7; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        cuda::check(cudaMemcpy(out.data(), logits.data(), out.size() * 4, cudaMemcpyDeviceToHost), "logits to the host");
        parallel_for(static_cast<size_t>(R), 1, default_threads(), [&](size_t begin, size_t end) {
          for (size_t r = begin; r < end; ++r) tokens[r] = serve::sample_token(out.data() + r * V, V, params[r], 0);
        });
        host_s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      int same = 0;
      for (int64_t r = 0; r < R; ++r) same += drawn[static_cast<size_t>(r)].token == tokens[static_cast<size_t>(r)].token;
      const double d = median_ms(dev_s), h = median_ms(host_s);
      std::printf("  %4lld | %12.3f | %22.3f | %8.1f   (same tokens: %d of %lld)\n", static_cast<long long>(R), d, h, h / d, same,
                  static_cast<long long>(R));
      b.out["draw"].push_back({{"rows", R}, {"vocab", V}, {"device_ms", d}, {"host_ms", h}, {"same_tokens", same}});
      if (same != R) b.ok = false;
    } catch (const std::exception& e) {
      b.failed("draw", std::to_string(R) + " rows", e);
    }
  }
  std::printf("\n");
}

// ---- f) host time per launch ------------------------------------------------------------------

// What the host spends to queue one call of the launchers a decode step makes, the device held busy
// by copies queued first (so the time is the host's own, no waiting), beside the device time of the
// same call (graph replays). A decode step is host-bound where the first column exceeds the second.
void bench_launch(Bench& b) {
  std::printf("Host time to queue one call (the device busy with copies queued first), and its device time\n");
  std::printf("  %-52s | %10s | %10s\n", "call", "host us", "device us");
  constexpr size_t kBusy = size_t{1} << 30;
  DeviceBuffer busy_a(kBusy, "busy copy source"), busy_b(kBusy, "busy copy target");
  const auto host_us = [&](const std::function<void()>& call) {
    call();  // first-call set-up out of the measurement
    b.s.synchronize("launch warm-up");
    std::vector<double> per_call;
    for (int rep = 0; rep < 5; ++rep) {
      for (int i = 0; i < 6; ++i)  // several ms of copies ahead of the calls
        cuda::check(cudaMemcpyAsync(busy_b.data(), busy_a.data(), kBusy, cudaMemcpyDeviceToDevice, b.s.get()), "busy copy");
      constexpr int kCalls = 100;
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < kCalls; ++i) call();
      per_call.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / kCalls);
      b.s.synchronize("launch timing");
    }
    std::sort(per_call.begin(), per_call.end());
    return per_call[per_call.size() / 2];
  };
  const auto row = [&](const std::string& name, const std::function<void()>& call) {
    try {
      const double h = host_us(call);
      const Timing t = b.time(1, [&](int) { call(); });
      std::printf("  %-52s | %10.2f | %10.2f\n", name.c_str(), h, t.us);
      b.out["launch"].push_back({{"call", name}, {"host_us", h}, {"device_us", t.us}});
    } catch (const std::exception& e) {
      b.failed("launch", name, e);
    }
  };
  DeviceBuffer x(size_t{16} * 32768 * 2, "launch x"), y(size_t{16} * 32768 * 4, "launch y");
  DeviceBuffer xf(size_t{4096} * 4, "launch f32 row"), norm_w(size_t{4096} * 4, "launch norm weight");
  cuda::fill_bytes(x.data(), 0, x.bytes(), b.s);
  cuda::fill_bytes(xf.data(), 0, xf.bytes(), b.s);
  cuda::fill_bytes(norm_w.data(), 0, norm_w.bytes(), b.s);
  row("cudaMemsetAsync of 4 bytes", [&] { cuda::check(cudaMemsetAsync(y.data(), 0, 4, b.s.get()), "memset"); });
  row("rms_norm_rows, 1 x 4096", [&] {
    cuda::rms_norm_rows(xf.data<float>(), 1, 4096, norm_w.data<float>(), 1e-6f, y.data<float>(), b.s.get());
  });
  {
    cuda::StreamOrderedAllocations ordered(b.s);
    row("stream-ordered DeviceBuffer of 64 KiB, made and dropped", [&] { DeviceBuffer t(65536, "launch temporary"); });
  }
  const WeightSet fp8(WeightFormat::Fp8Block, 8192, 4096, b.pools, 0), nv(WeightFormat::Nvfp4, 3072, 7168, b.pools, 0);
  const WeightSet bf(WeightFormat::Bf16, 4096, 4096, b.pools, 0);
  row("weight_gemm FP8 blocks 1024x4096, M=1", [&] {
    GemmWeight w = fp8.at(0);
    w.n = 1024;
    cuda::weight_gemm(x.data<uint16_t>(), 1, w, y.data(), GemmOutput::F32, b.s.get());
  });
  row("weight_gemm NVFP4 3072x7168, M=1", [&] {
    cuda::weight_gemm(x.data<uint16_t>(), 1, nv.at(0), y.data(), GemmOutput::F32, b.s.get());
  });
  row("batched_weight_gemm FP8 blocks 8 x 1024x4096, M=1", [&] {
    cuda::BatchedGemm g;
    g.x = x.data<uint16_t>(), g.m = 1, g.ldx = 32768, g.x_batch_stride = 4096;
    g.w = fp8.at(0), g.batch = 8, g.n = 1024;
    g.y = y.data(), g.ldy = 8192, g.y_batch_stride = 1024;
    cuda::batched_weight_gemm(g, b.s.get());
  });
  {  // V4-Flash's hyper-connections at one token: hc_pre with the sublayer's input norm is 2 launches, hc_post 1
    cuda::HcShape hs;
    hs.tokens = 1, hs.hc = 4, hs.hidden = 4096;
    const int64_t rows = (2 + hs.hc) * hs.hc;
    DeviceBuffer streams(size_t{4} * 4096 * 4, "hc streams"), fn(static_cast<size_t>(rows) * 4 * 4096 * 4, "hc fn");
    DeviceBuffer small(size_t{4096} * 4, "hc small"), scratch(static_cast<size_t>(cuda::hc_scratch_floats(hs)) * 4, "hc scratch");
    DeviceBuffer norm(size_t{4096} * 4, "hc norm"), normed16(size_t{4096} * 2, "hc normed bf16");
    for (DeviceBuffer* d : {&streams, &fn, &small, &norm}) cuda::fill_bytes(d->data(), 0, d->bytes(), b.s);
    float* f = small.data<float>();
    row("hc_pre + input norm, 1 token (2 launches)", [&] {
      cuda::hc_pre(streams.data<float>(), hs, {fn.data<float>(), f, f + 64}, y.data<float>(), f + 128, f + 256,
                   scratch.data<float>(), b.s.get(), norm.data<float>(), normed16.data<uint16_t>());
    });
    row("hc_post, 1 token", [&] { cuda::hc_post(streams.data<float>(), xf.data<float>(), f + 128, f + 256, hs, b.s.get()); });
  }
  row("cuBLASLt BF16 4096x4096, M=1", [&] {
    b.cublas.bf16_gemm(x.data<uint16_t>(), bf.data.as<uint16_t>(0), y.data(), GemmOutput::F32, 1, 4096, 4096, b.s.get());
  });
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      opt.quick = true;
    } else if (a == "--only" && i + 1 < argc) {
      std::string list = argv[++i];
      for (size_t p = 0; p <= list.size();) {
        const size_t q = std::min(list.find(',', p), list.size());
        if (q > p) opt.only.insert(list.substr(p, q - p));
        p = q + 1;
      }
    } else if (a == "--m" && i + 1 < argc) {
      const std::string list = argv[++i];
      for (size_t p = 0; p <= list.size();) {
        const size_t q = std::min(list.find(',', p), list.size());
        if (q > p) opt.gemm_ms.insert(std::stoll(list.substr(p, q - p)));
        p = q + 1;
      }
    } else if (a == "--json" && i + 1 < argc) {
      opt.json_path = argv[++i];
    } else if (a == "--reps" && i + 1 < argc) {
      opt.timing.reps = std::max(1, std::stoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: gpu_kernels_bench [--quick] [--only ceilings,codecs,activation,gemm,moe,draw,launch] [--m 1,8,...] [--reps R] [--json FILE]\n");
      return 2;
    }
  }
  if (opt.quick) {
    opt.timing.reps = std::min(opt.timing.reps, 5);
    opt.timing.replay_ms = 1.0;
  }
  std::string why;
  const auto dev = cuda::probe(0, &why);
  if (!dev) {
    std::fprintf(stderr, "gpu_kernels_bench: %s\n", why.c_str());
    return 2;
  }
  try {
    Bench b(opt, *dev);
    describe_device(b);
    measure_ceilings(b);  // every ratio below needs them
    if (opt.wants("codecs")) bench_codecs(b);
    if (opt.wants("activation")) bench_activation(b);
    if (opt.wants("gemm")) bench_gemms(b);
    if (opt.wants("moe")) bench_moe(b);
    if (opt.wants("draw")) bench_draw(b);
    if (opt.wants("launch")) bench_launch(b);
    if (!opt.json_path.empty()) {
      FILE* f = std::fopen(opt.json_path.c_str(), "w");
      if (!f) {
        std::fprintf(stderr, "gpu_kernels_bench: cannot write %s\n", opt.json_path.c_str());
        return 1;
      }
      const std::string text = b.out.dump(1);
      std::fwrite(text.data(), 1, text.size(), f);
      std::fclose(f);
    }
    return b.ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_kernels_bench: %s\n", e.what());
    return 1;
  }
}
