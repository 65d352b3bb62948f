// The GPU weight codecs against the scalar CPU references (nvfp4_ref, mxfp4_ref, mxfp4_cast_ref,
// fp8_block_ref), byte for byte, on random and adversarial data. Every output buffer is poisoned
// before the launch, so an element a kernel fails to write shows up as a mismatch; a mismatch prints
// the first failing indices with their inputs, the expected and the actual bits.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "cuda/element_encoders.h"
#include "cuda/nvfp4_from_host.h"
#include "cuda/runtime.h"
#include "cuda/weight_codecs.h"
#include "formats/bf16.h"
#include "formats/e2m1.h"
#include "formats/e4m3.h"
#include "formats/e8m0.h"
#include "formats/f16.h"
#include "formats/float_bits.h"
#include "formats/fp8_block.h"
#include "formats/mxfp4.h"
#include "formats/mxfp4_cast.h"
#include "formats/nvfp4.h"
#include "formats/nvfp4_scale_steps.h"
#include "gpu_test.h"
#include "source_bytes.h"

namespace fp4kit::cuda {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr uint8_t kPoison = 0xA5;

// ---- helpers ---------------------------------------------------------------------------------

template <class T>
DeviceBuffer to_device(const std::vector<T>& v, const Stream& s, const std::string& what) {
  DeviceBuffer b(std::max<size_t>(v.size() * sizeof(T), 16), what);
  if (!v.empty()) copy_to_device(b.data(), v.data(), v.size() * sizeof(T), s);
  return b;
}

// A device buffer of `count` T filled with kPoison bytes.
template <class T>
DeviceBuffer poisoned(size_t count, const Stream& s, const std::string& what) {
  DeviceBuffer b(std::max<size_t>(count * sizeof(T), 16), what);
  fill_bytes(b.data(), kPoison, b.bytes(), s);
  return b;
}

template <class T>
std::vector<T> to_host(const void* device, size_t count, const Stream& s) {
  return testing::read_back<T>(device, count, s);
}

std::string hex(uint64_t v, int digits) {
  std::ostringstream o;
  o << "0x" << std::hex;
  o.width(digits);
  o.fill('0');
  o << v;
  return o.str();
}

std::string float_text(float f) {
  std::ostringstream o;
  o.precision(9);
  o << f << " (" << hex(f32_bits(f), 8) << ")";
  return o.str();
}

using Describe = std::function<std::string(size_t)>;

// memcmp of the two arrays; on mismatch the count and the first few indices with want/got bits and
// what `describe` says about the inputs of that index.
template <class T>
::testing::AssertionResult same_bits(const std::string& what, const std::vector<T>& want, const std::vector<T>& got,
                                     const Describe& describe = {}) {
  if (want.size() != got.size())
    return ::testing::AssertionFailure() << what << ": size " << got.size() << ", want " << want.size();
  if (want.empty() || std::memcmp(want.data(), got.data(), want.size() * sizeof(T)) == 0)
    return ::testing::AssertionSuccess();
  size_t mismatches = 0;
  std::ostringstream o;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::memcmp(&want[i], &got[i], sizeof(T)) == 0) continue;
    if (mismatches++ < 8) {
      uint64_t w = 0, g = 0;
      std::memcpy(&w, &want[i], sizeof(T));
      std::memcpy(&g, &got[i], sizeof(T));
      o << "\n  [" << i << "] want " << hex(w, 2 * sizeof(T)) << " got " << hex(g, 2 * sizeof(T));
      if (describe) o << "  " << describe(i);
    }
  }
  return ::testing::AssertionFailure() << what << ": " << mismatches << " of " << want.size()
                                       << " elements differ" << o.str();
}

std::vector<uint8_t> encode(const std::vector<float>& values, DType dtype) { return testing::source_bytes(values, dtype); }

const DType kSources[] = {DType::F32, DType::BF16, DType::F16};
const Nvfp4Numerics kNumerics[] = {Nvfp4Numerics::ModelOpt, Nvfp4Numerics::ModelOptCuda,
                                   Nvfp4Numerics::CompressedTensors};

std::string label(const std::string& data, DType dtype, Nvfp4Numerics numerics) {
  return data + " " + std::string(dtype_name(dtype)) + " " + std::string(numerics_name(numerics));
}

// Random values of a named distribution.
std::vector<float> random_values(const std::string& kind, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(n);
  if (kind == "normal" || kind == "normal_small" || kind == "normal_large") {
    const float sigma = kind == "normal" ? 1.0f : kind == "normal_small" ? 1e-3f : 300.0f;
    std::normal_distribution<float> d(0.0f, sigma);
    for (auto& x : v) x = d(rng);
  } else if (kind == "student_t3") {
    std::student_t_distribution<float> d(3.0f);
    for (auto& x : v) x = d(rng);
  } else if (kind == "log_uniform") {  // magnitudes from f32 subnormals to near the top of the range
    std::uniform_real_distribution<float> e(-148.0f, 127.0f);
    std::bernoulli_distribution neg(0.5);
    for (auto& x : v) x = (neg(rng) ? -1.0f : 1.0f) * std::exp2(e(rng));
  } else if (kind == "subnormal") {
    std::uniform_int_distribution<uint32_t> m(0, 0x7FFFFF);
    std::bernoulli_distribution neg(0.5);
    for (auto& x : v) x = f32_from_bits(m(rng) | (neg(rng) ? 0x80000000u : 0u));
  } else if (kind == "bits") {  // any pattern: NaN, Inf, subnormals included
    for (auto& x : v) x = f32_from_bits(static_cast<uint32_t>(rng()));
  } else {
    ADD_FAILURE() << "unknown distribution " << kind;
  }
  return v;
}

// ---- element encoders -----------------------------------------------------------------------

// Every bf16 pattern widened with several low halves, E4M3/E2M1/F16 decision points and their
// neighbours, and random patterns.
std::vector<float> encoder_inputs() {
  std::vector<float> v;
  const uint32_t lows[] = {0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x1234};
  for (uint32_t hi = 0; hi < 0x10000; ++hi)
    for (uint32_t lo : lows) v.push_back(f32_from_bits(hi << 16 | lo));
  auto around = [&](float f) {
    const uint32_t u = f32_bits(f);
    for (int d = -3; d <= 3; ++d) {
      v.push_back(f32_from_bits(u + d));
      v.push_back(-f32_from_bits(u + d));
    }
  };
  for (unsigned b = 0; b < 256; ++b) {
    const float a = E4M3{static_cast<uint8_t>(b)}.to_float(), c = E4M3{static_cast<uint8_t>(b + 1)}.to_float();
    around(a);
    if (std::isfinite(a) && std::isfinite(c)) around((a + c) / 2);  // E4M3 ties
  }
  for (float t : {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 6.0f, 448.0f, 464.0f, 480.0f, 65504.0f, 65520.0f,
                  0x1p-6f, 0x1p-9f, 0x1p-10f, 0x1p-14f, 0x1p-24f, 0x1p-25f, 0x1p-126f, 2.0f})
    around(t);
  std::mt19937 rng(7);
  for (int i = 0; i < (1 << 20); ++i) v.push_back(f32_from_bits(static_cast<uint32_t>(rng())));
  return v;
}

TEST(CudaElementEncoders, MatchTheCpuCodecsBitForBit) {
  FP4KIT_REQUIRE_GPU();
  const std::vector<float> in = encoder_inputs();
  Stream s;
  DeviceBuffer d_in = to_device(in, s, "encoder inputs");
  struct Case {
    ElementEncoding encoding;
    const char* name;
    std::function<uint16_t(float)> cpu;
  };
  const Case cases[] = {
      {ElementEncoding::E4M3, "e4m3", [](float f) { return uint16_t{E4M3::from_float(f).bits}; }},
      {ElementEncoding::E4M3Saturate, "e4m3 saturate", [](float f) { return uint16_t{E4M3::from_float_saturate(f).bits}; }},
      {ElementEncoding::E2M1, "e2m1", [](float f) { return uint16_t{E2M1::from_float(f).bits}; }},
      {ElementEncoding::F16, "f16", [](float f) { return F16::from_float(f).bits; }},
      {ElementEncoding::BF16, "bf16", [](float f) { return BF16::from_float(f).bits; }},
  };
  for (const auto& c : cases) {
    DeviceBuffer d_out = poisoned<uint16_t>(in.size(), s, "encoder outputs");
    encode_elements(d_in.data<float>(), in.size(), c.encoding, d_out.data<uint16_t>(), s.get());
    const auto got = to_host<uint16_t>(d_out.data(), in.size(), s);
    std::vector<uint16_t> want(in.size());
    for (size_t i = 0; i < in.size(); ++i) want[i] = c.cpu(in[i]);
    EXPECT_TRUE(same_bits(c.name, want, got, [&](size_t i) { return "input " + float_text(in[i]); }));
  }
}

// ---- NVFP4 amax ------------------------------------------------------------------------------

float amax_on_device(const std::vector<uint8_t>& bytes, DType dtype, size_t n, const Stream& s) {
  DeviceBuffer d_src = to_device(bytes, s, "amax source");
  DeviceBuffer d_amax = poisoned<float>(1, s, "amax");
  nvfp4_amax(d_src.data(), dtype, n, d_amax.data<float>(), s.get());
  return to_host<float>(d_amax.data(), 1, s)[0];
}

void expect_amax(const std::string& what, const std::vector<float>& values, DType dtype, const Stream& s) {
  const auto bytes = encode(values, dtype);
  const float want = nvfp4_ref::amax(FloatSpan{bytes.data(), dtype, values.size()});
  const float got = amax_on_device(bytes, dtype, values.size(), s);
  EXPECT_EQ(f32_bits(got), f32_bits(want)) << what << " " << dtype_name(dtype) << " n=" << values.size()
                                           << ": want " << float_text(want) << " got " << float_text(got);
}

TEST(CudaNvfp4Amax, MatchesTheReferenceOnRandomAndSpecialData) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  for (DType dtype : kSources) {
    for (const char* kind : {"normal", "normal_small", "student_t3", "log_uniform", "subnormal"}) {
      for (size_t n : {size_t{1}, size_t{3}, size_t{16}, size_t{17}, size_t{1000}, size_t{1000003}})
        expect_amax(kind, random_values(kind, n, static_cast<uint32_t>(n)), dtype, s);
    }
    // The maximum (or a NaN) at the first, a middle and the last element, the last in the tail.
    for (size_t n : {size_t{5}, size_t{4099}, size_t{1 << 20}}) {
      for (size_t at : {size_t{0}, n / 2, n - 1}) {
        for (float special : {1e4f, -1e4f, kInf, -kInf, kNaN, -kNaN}) {
          auto v = random_values("normal", n, 11);
          v[at] = special;
          expect_amax("special " + float_text(special) + " at " + std::to_string(at), v, dtype, s);
        }
      }
    }
    expect_amax("all zero", std::vector<float>(4096, 0.0f), dtype, s);
    expect_amax("all -0", std::vector<float>(4096, -0.0f), dtype, s);
  }
  // Raw patterns (NaN payloads and signs the float -> dtype conversion would not give).
  std::mt19937 rng(3);
  for (DType dtype : kSources) {
    std::vector<uint8_t> bytes(4 * 100003);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    const size_t n = bytes.size() / (dtype_bits(dtype) / 8);
    const float want = nvfp4_ref::amax(FloatSpan{bytes.data(), dtype, n});
    const float got = amax_on_device(bytes, dtype, n, s);
    EXPECT_EQ(f32_bits(got), f32_bits(want)) << "random bits " << dtype_name(dtype);
  }
}

TEST(CudaNvfp4Amax, AccumulatesOverPieces) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  auto v = random_values("student_t3", 100000, 5);
  v[77777] = 1e6f;  // in the second piece
  const auto bytes = encode(v, DType::F32);
  const float want = nvfp4_ref::amax(FloatSpan{bytes.data(), DType::F32, v.size()});
  DeviceBuffer d_src = to_device(bytes, s, "amax source");
  DeviceBuffer d_amax = poisoned<float>(1, s, "amax");
  nvfp4_amax(d_src.data(), DType::F32, 50000, d_amax.data<float>(), s.get());
  nvfp4_amax(d_src.data<float>() + 50000, DType::F32, 50000, d_amax.data<float>(), s.get(), true);
  EXPECT_EQ(f32_bits(to_host<float>(d_amax.data(), 1, s)[0]), f32_bits(want));
}

// ---- NVFP4 quantization ----------------------------------------------------------------------

void expect_quantize(const std::string& what, const std::vector<uint8_t>& bytes, DType dtype,
                     const Nvfp4Scaling& scaling, const Stream& s) {
  const size_t n = bytes.size() / (dtype_bits(dtype) / 8);
  ASSERT_EQ(n % 16, 0u) << what;
  const FloatSpan span{bytes.data(), dtype, n};
  std::vector<uint8_t> want_packed(n / 2), want_scales(n / 16);
  nvfp4_ref::quantize(span, scaling, want_packed.data(), want_scales.data());

  DeviceBuffer d_src = to_device(bytes, s, "quantize source");
  DeviceBuffer d_packed = poisoned<uint8_t>(n / 2, s, "packed");
  DeviceBuffer d_scales = poisoned<uint8_t>(n / 16, s, "scales");
  nvfp4_quantize(d_src.data(), dtype, n, scaling, d_packed.data<uint8_t>(), d_scales.data<uint8_t>(), s.get());
  const auto got_packed = to_host<uint8_t>(d_packed.data(), n / 2, s);
  const auto got_scales = to_host<uint8_t>(d_scales.data(), n / 16, s);

  const std::string context = what + " n=" + std::to_string(n) + " global " + float_text(scaling.global);
  auto describe_scale = [&](size_t b) {
    return "block amax " + float_text(nvfp4_ref::amax(span.subspan(b * 16, 16)));
  };
  auto describe_packed = [&](size_t i) {
    return "x[" + std::to_string(2 * i) + "]=" + float_text(span.at(2 * i)) + " x[" + std::to_string(2 * i + 1) +
           "]=" + float_text(span.at(2 * i + 1)) + " block scale want " + hex(want_scales[i / 8], 2) + " got " +
           hex(got_scales[i / 8], 2);
  };
  EXPECT_TRUE(same_bits(context + " scales", want_scales, got_scales, describe_scale));
  EXPECT_TRUE(same_bits(context + " packed", want_packed, got_packed, describe_packed));
}

// The scaling the converters use for these values: from the tensor's own amax.
Nvfp4Scaling own_scaling(const std::vector<uint8_t>& bytes, DType dtype, Nvfp4Numerics numerics, float amax_factor = 1) {
  const size_t n = bytes.size() / (dtype_bits(dtype) / 8);
  const float amax = nvfp4_ref::amax(FloatSpan{bytes.data(), dtype, n});
  return nvfp4_scaling(amax * amax_factor, numerics, dtype);
}

TEST(CudaNvfp4Quantize, RandomDataEveryNumericsAndSource) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  for (DType dtype : kSources)
    for (Nvfp4Numerics numerics : kNumerics)
      for (const char* kind : {"normal", "normal_small", "normal_large", "student_t3", "log_uniform", "subnormal"}) {
        const auto bytes = encode(random_values(kind, 16 * 4099, 21), dtype);
        expect_quantize(label(kind, dtype, numerics), bytes, dtype, own_scaling(bytes, dtype, numerics), s);
        // A fused partner with a smaller amax (block scales past 448: clamped / saturated) or larger.
        expect_quantize(label(kind, dtype, numerics) + " amax/8", bytes, dtype,
                        own_scaling(bytes, dtype, numerics, 0.125f), s);
        expect_quantize(label(kind, dtype, numerics) + " amax*64", bytes, dtype,
                        own_scaling(bytes, dtype, numerics, 64.0f), s);
      }
}

// Blocks built around exact power-of-two scales: every E2M1 tie, values that round to -0, every
// E4M3 scale byte and the ties between neighbouring E4M3 values, zero / -0 / NaN / Inf blocks.
std::vector<float> adversarial_blocks(const Nvfp4Scaling& sc, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v;
  // Multiplier from an E4M3 scale value to the block amax that yields it.
  const bool ct = sc.numerics == Nvfp4Numerics::CompressedTensors;
  auto block_amax_for = [&](float s) { return ct ? s / sc.global * 6.0f : s * 6.0f * sc.global; };
  const float ties[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 0.1f};
  for (int k = -9; k <= 8; ++k) {
    const float s = std::ldexp(1.0f, k);
    const float d = ct ? s / sc.global : s * sc.global;  // the block's divisor
    v.push_back(6.0f * d);
    for (float t : ties) v.push_back(t * d);
    for (int j = 0; j < 7; ++j) v.push_back(-ties[j] * d);
  }
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (unsigned b = 0; b < 0x7F; ++b) {
    const float s = E4M3{static_cast<uint8_t>(b)}.to_float();
    const float next = E4M3{static_cast<uint8_t>(b + 1)}.to_float();
    for (float target : {s, (s + next) / 2, std::nextafter(s, 0.0f), std::nextafter(s, kInf)}) {
      const float a = block_amax_for(target);
      v.push_back(a);
      for (int j = 1; j < 16; ++j) v.push_back(a * u(rng));
    }
  }
  for (float fill : {0.0f, -0.0f}) v.insert(v.end(), 16, fill);
  for (float special : {kNaN, -kNaN, kInf, -kInf, 3e38f, -1e-45f}) {
    v.push_back(special);
    for (int j = 1; j < 16; ++j) v.push_back(u(rng));
  }
  return v;
}

TEST(CudaNvfp4Quantize, AdversarialBlocks) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  for (DType dtype : kSources)
    for (Nvfp4Numerics numerics : kNumerics)
      for (float global : {0.25f, 1.0f / 2688.0f, 8.0f, 0x1p-20f}) {
        const Nvfp4Scaling sc{numerics, global, dtype};
        const auto bytes = encode(adversarial_blocks(sc, 9), dtype);
        expect_quantize(label("adversarial", dtype, numerics), bytes, dtype, sc, s);
      }
}

// Quotients x/divisor within 8 ulps of every E2M1 tie point, for divisors that are not powers of
// two (global scales with full significands): the elements where any rounding of the quotient other
// than the reference's one IEEE division would change a code, and the edges of the window inside
// which the kernel divides instead of multiplying by the reciprocal.
TEST(CudaNvfp4Quantize, QuotientsNextToEveryE2M1Tie) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  std::mt19937 rng(23);
  std::uniform_real_distribution<float> mantissa(1.0f, 2.0f);
  const float ties[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 0.5f, 1.0f, 3.0f, 6.0f};
  for (Nvfp4Numerics numerics : kNumerics)
    for (float global : {mantissa(rng) * 0x1p-9f, mantissa(rng) / 2688.0f, mantissa(rng) * 8.0f, mantissa(rng) * 0x1p-30f}) {
      const Nvfp4Scaling sc{numerics, global, DType::F32};
      const bool ct = numerics == Nvfp4Numerics::CompressedTensors;
      std::vector<float> v;
      for (unsigned b = 1; b < 0x7F; ++b) {  // one block per E4M3 scale value
        const float target = E4M3{static_cast<uint8_t>(b)}.to_float();
        const float amax = ct ? target / global * 6.0f : target * 6.0f * global;
        if (!std::isfinite(amax) || amax == 0.0f) continue;
        const float divisor = nvfp4_quant_divisor(nvfp4_block_scale(amax, sc), sc);
        if (!(divisor > 0.0f) || !std::isfinite(divisor)) continue;
        std::vector<float> block = {amax};
        while (block.size() < 16) {
          const float t = ties[rng() % std::size(ties)];
          const uint32_t bits = f32_bits(t * divisor) + static_cast<uint32_t>(static_cast<int>(rng() % 17) - 8);
          const float x = f32_from_bits(bits);
          if (std::fabs(x) < amax) block.push_back(rng() % 2 ? -x : x);
        }
        v.insert(v.end(), block.begin(), block.end());
      }
      expect_quantize(label("near ties, global " + float_text(global), DType::F32, numerics), encode(v, DType::F32),
                      DType::F32, sc, s);
    }
}

TEST(CudaNvfp4Quantize, GlobalScalesFromSpecialAmax) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  for (DType dtype : kSources)
    for (Nvfp4Numerics numerics : kNumerics) {
      auto normal = random_values("normal", 16 * 257, 4);
      // The all-zero tensor: ModelOpt's weight_scale_2 = 0 and NaN (0/0) block scales.
      expect_quantize(label("all zero", dtype, numerics), encode(std::vector<float>(16 * 64, 0.0f), dtype), dtype,
                      nvfp4_scaling(0.0f, numerics, dtype), s);
      std::vector<float> mixed = normal;
      std::fill(mixed.begin(), mixed.begin() + 64, 0.0f);
      for (float amax : {0.0f, kInf, kNaN, 1e-30f, 1e-38f, 1e-42f, 3e38f, 448.0f * 6.0f}) {
        auto with = mixed;
        with[100] = kInf;  // a block with Inf, scaled by a global from these amax values
        with[200] = kNaN;
        with[300] = -kInf;
        expect_quantize(label("global from amax " + float_text(amax), dtype, numerics), encode(with, dtype), dtype,
                        nvfp4_scaling(amax, numerics, dtype), s);
      }
    }
}

// Block scales as counts of the tensor's steps (formats/nvfp4_scale_steps.h): blocks whose maximum
// lies on every step of the scale byte and a few source patterns either side, under tensor and edge
// global scales, so that a step one pattern off shows as a wrong scale byte.
TEST(CudaNvfp4Quantize, BlockMaximaOnEveryScaleStep) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  std::mt19937 rng(23);
  for (DType dtype : kSources)
    for (Nvfp4Numerics numerics : kNumerics)
      for (float global : {nvfp4_global_scale(3.0f, numerics, dtype), nvfp4_global_scale(0.0371f, numerics, dtype),
                           1e-30f, 3e30f}) {
        const Nvfp4Scaling sc{numerics, global, dtype};
        const Nvfp4ScaleSteps steps = nvfp4_scale_steps(sc);
        std::vector<float> values;
        for (uint32_t centre : nvfp4_scale_step_bits(steps)) {  // F32 bits of the block maxima's centres
          // The source's patterns next to the centre: F32 ones, or the 16-bit ones around its rounding.
          const float c = std::bit_cast<float>(centre);
          for (int d = -3; d <= 3; ++d) {
            float m;
            if (dtype == DType::F32) {
              m = std::bit_cast<float>(static_cast<uint32_t>(static_cast<int64_t>(centre) + d));
            } else if (dtype == DType::BF16) {
              m = BF16{static_cast<uint16_t>(BF16::from_float(c).bits + d)}.to_float();
            } else {
              m = F16{static_cast<uint16_t>(F16::from_float(c).bits + d)}.to_float();
            }
            if (!std::isfinite(m) || m < 0.0f) continue;
            std::uniform_real_distribution<float> below(-m, m);
            values.push_back((d & 1) ? -m : m);
            for (int i = 1; i < 16; ++i) values.push_back(below(rng));
          }
        }
        if (values.empty()) continue;
        const bool usable = steps.usable;
        expect_quantize(label(std::string("maxima on the scale steps (") + (usable ? "usable" : "not usable") + ")",
                              dtype, numerics),
                        encode(values, dtype), dtype, sc, s);
      }
}

// 16-bit sources, whose codes count thresholds (formats/nvfp4_code_thresholds.h): every pattern of
// both signs under block maxima that reach every scale byte the tensor can give, so every threshold
// of every covered byte is met from below and from above, and the uncovered bytes take the division.
TEST(CudaNvfp4Quantize, Every16BitPatternUnderEveryBlockScale) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  for (DType dtype : {DType::BF16, DType::F16}) {
    const bool bf16 = dtype == DType::BF16;
    const uint16_t max_finite = bf16 ? 0x7F7F : 0x7BFF;
    for (Nvfp4Numerics numerics : kNumerics) {
      const float tensor_amax = bf16 ? 3.0f : 1.0f;
      const Nvfp4Scaling sc = nvfp4_scaling(tensor_amax, numerics, dtype);
      auto value = [&](uint16_t b) { return bf16 ? BF16{b}.to_float() : F16{b}.to_float(); };
      // Block maxima: one per 2^-(1/8) step from the tensor's amax down to 2^-24 of it.
      std::vector<uint16_t> maxima;
      for (int step = 0; step < 8 * 24; ++step) {
        const float a = tensor_amax * std::exp2(static_cast<float>(-step) / 8.0f);
        const uint16_t b = bf16 ? BF16::from_float(a).bits : F16::from_float(a).bits;
        if (b != 0 && b <= max_finite && value(b) <= tensor_amax) maxima.push_back(b);
      }
      std::vector<uint16_t> patterns;
      for (uint16_t amax_bits : maxima) {
        // Blocks of the maximum and 15 more: every magnitude up to it, each with either sign.
        const uint32_t count = 2 * (uint32_t{amax_bits} + 1);
        for (uint32_t first = 0; first < count; first += 15) {
          patterns.push_back(amax_bits);
          for (uint32_t i = first; i < first + 15; ++i) {
            const uint32_t magnitude = std::min<uint32_t>(i / 2, amax_bits);
            patterns.push_back(static_cast<uint16_t>(magnitude | ((i & 1) ? 0x8000u : 0u)));
          }
        }
      }
      std::vector<uint8_t> bytes(patterns.size() * 2);
      std::memcpy(bytes.data(), patterns.data(), bytes.size());
      expect_quantize(label("every pattern", dtype, numerics), bytes, dtype, sc, s);
    }
  }
}

TEST(CudaNvfp4Quantize, RawBitPatterns) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  std::mt19937 rng(17);
  for (DType dtype : kSources)
    for (Nvfp4Numerics numerics : kNumerics) {
      std::vector<uint8_t> bytes(16 * 4 * 2049);
      for (auto& b : bytes) b = static_cast<uint8_t>(rng());
      for (float global : {1.0f, 1e-3f, 1e30f})
        expect_quantize(label("random bits", dtype, numerics), bytes, dtype, Nvfp4Scaling{numerics, global, dtype}, s);
    }
}

// The packed output where it is only 2-byte aligned (one 16-bit store per 4 codes instead of one
// 8-byte store per block): the same bytes, and nothing written outside them.
TEST(CudaNvfp4Quantize, PackedOutputOnTwoByteAlignment) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  for (DType dtype : kSources) {
    const auto bytes = encode(random_values("normal", 16 * 1027, 5), dtype);
    const size_t n = bytes.size() / (dtype_bits(dtype) / 8);
    const Nvfp4Scaling sc = own_scaling(bytes, dtype, Nvfp4Numerics::ModelOpt);
    std::vector<uint8_t> want_packed(n / 2), want_scales(n / 16);
    nvfp4_ref::quantize(FloatSpan{bytes.data(), dtype, n}, sc, want_packed.data(), want_scales.data());
    DeviceBuffer d_src = to_device(bytes, s, "quantize source");
    DeviceBuffer d_packed = poisoned<uint8_t>(n / 2 + 4, s, "packed");
    DeviceBuffer d_scales = poisoned<uint8_t>(n / 16, s, "scales");
    nvfp4_quantize(d_src.data(), dtype, n, sc, d_packed.data<uint8_t>() + 2, d_scales.data<uint8_t>(), s.get());
    const auto got = to_host<uint8_t>(d_packed.data(), n / 2 + 4, s);
    EXPECT_EQ(got[0], kPoison);
    EXPECT_EQ(got[1], kPoison);
    EXPECT_EQ(got[n / 2 + 2], kPoison);
    EXPECT_TRUE(std::equal(want_packed.begin(), want_packed.end(), got.begin() + 2)) << dtype_name(dtype);
    EXPECT_EQ(to_host<uint8_t>(d_scales.data(), n / 16, s), want_scales) << dtype_name(dtype);
  }
}

TEST(CudaNvfp4Quantize, MoreThan2To24Elements) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  const auto bytes = encode(random_values("student_t3", (size_t{1} << 24) + 16 * 1001, 8), DType::F32);
  expect_quantize("large", bytes, DType::F32, own_scaling(bytes, DType::F32, Nvfp4Numerics::ModelOpt), s);
  const auto bf16 = encode(random_values("normal", (size_t{1} << 25) + 16 * 3, 9), DType::BF16);
  expect_quantize("large", bf16, DType::BF16, own_scaling(bf16, DType::BF16, Nvfp4Numerics::CompressedTensors), s);
}

TEST(CudaNvfp4FromHost, PiecesGiveTheReferenceBytes) {
  FP4KIT_REQUIRE_GPU();
  // Three pieces of the host path (16 Mi elements each), the last one short.
  const size_t n = (size_t{32} << 20) + 16 * 5;
  const auto bytes = encode(random_values("normal", n, 12), DType::BF16);
  const FloatSpan span{bytes.data(), DType::BF16, n};
  const float want_amax = nvfp4_ref::amax(span);
  EXPECT_EQ(f32_bits(nvfp4_amax_from_host(span)), f32_bits(want_amax));
  const Nvfp4Scaling sc = nvfp4_scaling(want_amax, Nvfp4Numerics::ModelOpt, DType::BF16);
  std::vector<uint8_t> want_packed(n / 2), want_scales(n / 16), got_packed(n / 2, kPoison), got_scales(n / 16, kPoison);
  nvfp4_ref::quantize(span, sc, want_packed.data(), want_scales.data());
  nvfp4_quantize_from_host(span, sc, got_packed.data(), got_scales.data());
  EXPECT_TRUE(same_bits("host path scales", want_scales, got_scales));
  EXPECT_TRUE(same_bits("host path packed", want_packed, got_packed));

  auto with_nan = random_values("normal", 4096, 1);
  with_nan[4000] = -kNaN;
  const auto nan_bytes = encode(with_nan, DType::F32);
  EXPECT_TRUE(std::isnan(nvfp4_amax_from_host(FloatSpan{nan_bytes.data(), DType::F32, with_nan.size()})));
  EXPECT_EQ(nvfp4_amax_from_host(FloatSpan{nan_bytes.data(), DType::F32, 0}), 0.0f);
}

// ---- MXFP4 dequantization ----------------------------------------------------------------------

struct Mxfp4Data {
  std::vector<uint8_t> packed, scales;
  size_t n = 0;
};

// Random nibbles; scale bytes: every byte 0..255 once, then random bytes drawn from [lo, hi].
Mxfp4Data mxfp4_data(size_t groups, uint32_t seed, unsigned lo = 0, unsigned hi = 255) {
  std::mt19937 rng(seed);
  Mxfp4Data d;
  d.n = groups * 32;
  d.packed.resize(d.n / 2);
  for (auto& b : d.packed) b = static_cast<uint8_t>(rng());
  d.scales.resize(groups);
  std::uniform_int_distribution<unsigned> byte(lo, hi);
  for (size_t g = 0; g < groups; ++g) d.scales[g] = static_cast<uint8_t>(g < 256 ? g : byte(rng));
  return d;
}

void expect_mxfp4_dequantize(const std::string& what, const Mxfp4Data& d, const Stream& s) {
  DeviceBuffer d_packed = to_device(d.packed, s, "mxfp4 packed");
  DeviceBuffer d_scales = to_device(d.scales, s, "mxfp4 scales");
  auto describe = [&](size_t i) {
    return "code " + hex(unpack_e2m1(d.packed[i / 2], static_cast<unsigned>(i)).bits, 1) + " scale byte " +
           hex(d.scales[i / 32], 2);
  };
  std::vector<float> want_f32(d.n);
  mxfp4_ref::dequantize_f32(d.packed.data(), d.scales.data(), d.n, want_f32.data());
  DeviceBuffer d_f32 = poisoned<float>(d.n, s, "mxfp4 f32 out");
  mxfp4_dequantize_f32(d_packed.data<uint8_t>(), d_scales.data<uint8_t>(), d.n, d_f32.data<float>(), s.get());
  EXPECT_TRUE(same_bits(what + " f32 n=" + std::to_string(d.n), want_f32, to_host<float>(d_f32.data(), d.n, s), describe));

  std::vector<uint16_t> want_bf16(d.n);
  mxfp4_ref::dequantize_bf16(d.packed.data(), d.scales.data(), d.n, want_bf16.data());
  DeviceBuffer d_bf16 = poisoned<uint16_t>(d.n, s, "mxfp4 bf16 out");
  mxfp4_dequantize_bf16(d_packed.data<uint8_t>(), d_scales.data<uint8_t>(), d.n, d_bf16.data<uint16_t>(), s.get());
  EXPECT_TRUE(same_bits(what + " bf16 n=" + std::to_string(d.n), want_bf16, to_host<uint16_t>(d_bf16.data(), d.n, s),
                        describe));
}

TEST(CudaMxfp4Dequantize, EveryScaleByteAndRandomData) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  expect_mxfp4_dequantize("one group", mxfp4_data(1, 1), s);
  expect_mxfp4_dequantize("all scale bytes", mxfp4_data(256, 2), s);
  expect_mxfp4_dequantize("odd group count", mxfp4_data(256 + 4099, 3, 110, 130), s);
  expect_mxfp4_dequantize("more than 2^24 elements", mxfp4_data((size_t{1} << 20) + 3, 4, 100, 140), s);
}

// NVFP4 dequantization: every E4M3 scale byte (NaN bytes 0x7F/0xFF included) under random codes, both
// numerics, ordinary and special global scales (subnormal, huge, infinite, NaN): the CPU's bits.
TEST(CudaNvfp4Dequantize, EveryScaleByteBothNumericsSpecialGlobals) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  std::mt19937 rng(77);
  const size_t blocks = 256 * 3 + 5, n = blocks * 16;
  std::vector<uint8_t> packed(n / 2), scales(blocks);
  for (auto& b : packed) b = static_cast<uint8_t>(rng());
  for (size_t b = 0; b < blocks; ++b) scales[b] = static_cast<uint8_t>(b < 256 ? b : rng());
  DeviceBuffer d_packed = to_device(packed, s, "nvfp4 packed");
  DeviceBuffer d_scales = to_device(scales, s, "nvfp4 scales");
  for (Nvfp4Numerics numerics : {Nvfp4Numerics::ModelOpt, Nvfp4Numerics::CompressedTensors})
    for (float global : {0.0123f, 1.0f, 2688.0f, 1e-40f, 3e38f, INFINITY, NAN}) {
      Nvfp4Scaling scaling;
      scaling.numerics = numerics;
      scaling.global = global;
      std::vector<float> want(n);
      nvfp4_ref::dequantize(packed.data(), scales.data(), n, scaling, want.data());
      DeviceBuffer out = poisoned<float>(n, s, "nvfp4 f32 out");
      nvfp4_dequantize_f32(d_packed.data<uint8_t>(), d_scales.data<uint8_t>(), n, scaling, out.data<float>(), s.get());
      auto describe = [&](size_t i) {
        return "code " + hex(unpack_e2m1(packed[i / 2], static_cast<unsigned>(i)).bits, 1) + " scale byte " +
               hex(scales[i / 16], 2);
      };
      EXPECT_TRUE(same_bits(std::string(numerics == Nvfp4Numerics::ModelOpt ? "modelopt" : "compressed-tensors") +
                                " global " + std::to_string(global),
                            want, to_host<float>(out.data(), n, s), describe));
    }
  EXPECT_THROW(nvfp4_dequantize_f32(d_packed.data<uint8_t>(), d_scales.data<uint8_t>(), 24, {}, nullptr, s.get()),
               InputError);
}

// The block values alone as BF16 (for products that apply the global scale as alpha): every E4M3
// scale byte, NaN bytes included, under random codes; the reference is the CPU dequantization with
// a global scale of 1 (ModelOpt numerics), rounded to BF16, which the test also checks is exact.
TEST(CudaNvfp4Dequantize, BlockValuesAsBf16AreTheCpuValuesExactly) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  std::mt19937 rng(78);
  const size_t blocks = 256 * 3 + 5, n = blocks * 16;
  std::vector<uint8_t> packed(n / 2), scales(blocks);
  for (auto& b : packed) b = static_cast<uint8_t>(rng());
  for (size_t b = 0; b < blocks; ++b) scales[b] = static_cast<uint8_t>(b < 256 ? b : rng());
  Nvfp4Scaling unit;
  unit.numerics = Nvfp4Numerics::ModelOpt;
  unit.global = 1.0f;
  std::vector<float> values(n);
  nvfp4_ref::dequantize(packed.data(), scales.data(), n, unit, values.data());
  std::vector<uint16_t> want(n);
  for (size_t i = 0; i < n; ++i) {
    want[i] = BF16::from_float(values[i]).bits;
    if (!std::isnan(values[i])) {
      ASSERT_EQ(BF16{want[i]}.to_float(), values[i]) << "value " << i << " is not exact in BF16";
    }
  }
  DeviceBuffer d_packed = to_device(packed, s, "nvfp4 packed");
  DeviceBuffer d_scales = to_device(scales, s, "nvfp4 scales");
  DeviceBuffer out = poisoned<uint16_t>(n, s, "nvfp4 bf16 out");
  nvfp4_block_values_bf16(d_packed.data<uint8_t>(), d_scales.data<uint8_t>(), n, out.data<uint16_t>(), s.get());
  const std::vector<uint16_t> got = to_host<uint16_t>(out.data(), n, s);
  for (size_t i = 0; i < n; ++i)
    ASSERT_EQ(got[i], want[i]) << "element " << i << ", code " << hex(unpack_e2m1(packed[i / 2], static_cast<unsigned>(i)).bits, 1)
                               << " scale byte " << hex(scales[i / 16], 2);
  EXPECT_THROW(nvfp4_block_values_bf16(d_packed.data<uint8_t>(), d_scales.data<uint8_t>(), 24, nullptr, s.get()), InputError);
}

// Every scale byte over groups whose nibbles are zero magnitudes (codes 0 and 0x8) in some 2- or
// 4-byte words and not in others: zero vectors take the table path under any byte but 0xFF, which
// stays NaN; the words beside them (subnormal or overflowing products) compute element by element.
TEST(CudaMxfp4Dequantize, ZeroMagnitudesUnderEveryScaleByte) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  Mxfp4Data d = mxfp4_data(3 * 256, 5);
  for (size_t g = 0; g < 3 * 256; ++g) {
    d.scales[g] = static_cast<uint8_t>(g % 256);
    for (size_t j = 0; j < 16; ++j) {
      const size_t word = j / 4;  // 4-byte words; the first 2-byte half of word 1 is zero too
      const bool zero = g / 256 == 0 || (g / 256 == 1 && (word % 2 == 0 || j == 4 || j == 5));
      if (zero) d.packed[g * 16 + j] &= 0x88;  // keep the sign bits: code 0x8 is +0.0 as well
    }
  }
  expect_mxfp4_dequantize("zero magnitudes", d, s);
}

// ---- MXFP4 -> NVFP4 cast -------------------------------------------------------------------------

void expect_cast(const std::string& what, const Mxfp4Data& d, int k_max_shared, const Stream& s) {
  const size_t groups = d.n / 32;
  const Mxfp4CastParams params = mxfp4_cast_params(d.scales.data(), groups, k_max_shared);
  const Mxfp4CastTable table(d.scales.data(), groups, params);
  std::vector<uint8_t> want_packed(d.n / 2), want_scales(d.n / 16);
  const Mxfp4CastStats want = mxfp4_cast_ref::cast(d.packed.data(), d.scales.data(), d.n, table, want_packed.data(),
                                                   want_scales.data());

  DeviceBuffer d_packed = to_device(d.packed, s, "mxfp4 packed");
  DeviceBuffer d_scales = to_device(d.scales, s, "mxfp4 scales");
  DeviceBuffer o_packed = poisoned<uint8_t>(d.n / 2, s, "nvfp4 packed");
  DeviceBuffer o_scales = poisoned<uint8_t>(d.n / 16, s, "nvfp4 scales");
  DeviceBuffer counters(kMxfp4CastCounters * sizeof(uint64_t), "cast counters");
  fill_bytes(counters.data(), 0, counters.bytes(), s);
  // In two pieces (a whole number of groups each), the counters adding up: the first with the table
  // built inside the call, the second with a table built beforehand (outputs from group
  // groups/2 on come from that entry point).
  const size_t first = groups / 2 * 32;
  mxfp4_to_nvfp4(d_packed.data<uint8_t>(), d_scales.data<uint8_t>(), first, params, o_packed.data<uint8_t>(),
                 o_scales.data<uint8_t>(), counters.data<uint64_t>(), s.get());
  const Mxfp4CastDeviceTable device_table(params, s.get());
  mxfp4_to_nvfp4(d_packed.data<uint8_t>() + first / 2, d_scales.data<uint8_t>() + first / 32, d.n - first,
                 device_table, o_packed.data<uint8_t>() + first / 2, o_scales.data<uint8_t>() + first / 16,
                 counters.data<uint64_t>(), s.get());
  const auto got_packed = to_host<uint8_t>(o_packed.data(), d.n / 2, s);
  const auto got_scales = to_host<uint8_t>(o_scales.data(), d.n / 16, s);
  const auto got_counters = to_host<uint64_t>(counters.data(), kMxfp4CastCounters, s);
  uint64_t c[kMxfp4CastCounters];
  std::copy(got_counters.begin(), got_counters.end(), c);
  const Mxfp4CastStats got = mxfp4_cast_stats(c);

  const std::string context = what + " n=" + std::to_string(d.n) + " k_own=" + std::to_string(params.k_own) +
                              " k_max_shared=" + std::to_string(k_max_shared) + " (prebuilt table from group " +
                              std::to_string(first / 32) + ")";
  auto describe_group = [&](size_t g) {
    const int k = static_cast<int>(d.scales[g]) - 127;
    std::string nibbles;
    for (size_t j = 0; j < 16; ++j) nibbles += hex(d.packed[g * 16 + j], 2).substr(2);
    return "scale byte " + hex(d.scales[g], 2) + " (k=" + std::to_string(k) + ", window " +
           (table.in_window(d.scales[g]) ? "yes" : "no") + ") packed " + nibbles;
  };
  EXPECT_TRUE(same_bits(context + " scales", want_scales, got_scales, [&](size_t i) { return describe_group(i / 2); }));
  EXPECT_TRUE(same_bits(context + " packed", want_packed, got_packed, [&](size_t i) { return describe_group(i / 16); }));
  EXPECT_EQ(got.groups, want.groups) << context;
  EXPECT_EQ(got.zero_scale_groups, want.zero_scale_groups) << context;
  EXPECT_EQ(got.reported_lossless, want.reported_lossless) << context;
  EXPECT_EQ(got.exact_groups, want.exact_groups) << context;
}

TEST(CudaMxfp4ToNvfp4, EveryScaleByte) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  const Mxfp4Data d = mxfp4_data(256 * 9, 5);  // every byte, then random bytes, 0 and 255 included
  const int k_own = mxfp4_max_exponent(d.scales.data(), d.scales.size(), -127);
  for (int shared : {k_own, k_own + 3}) expect_cast("every byte", d, shared, s);
}

TEST(CudaMxfp4ToNvfp4, CheckpointLikeScalesWithOutOfWindowGroups) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  // Exponents clustered like a real expert, and a tail 20-30 below it (outside the window), some
  // groups of zeros (byte 0), and groups whose largest magnitude varies.
  Mxfp4Data d = mxfp4_data(4096 + 17, 6, 116, 124);
  std::mt19937 rng(6);
  for (size_t g = 0; g < d.scales.size(); ++g) {
    if (g < 256) d.scales[g] = static_cast<uint8_t>(116 + g % 9);
    if (g % 7 == 0) d.scales[g] = static_cast<uint8_t>(90 + g % 15);
    if (g % 101 == 0) d.scales[g] = 0;
    const unsigned max_mag = g % 8;  // nibbles limited to magnitudes <= max_mag
    if (g % 3 == 0)
      for (size_t j = 0; j < 16; ++j) {
        auto nibble = [&] { return static_cast<unsigned>(rng() % (max_mag + 1) | (rng() & 8u)); };
        const unsigned lo = nibble(), hi = nibble();
        d.packed[g * 16 + j] = static_cast<uint8_t>(lo | hi << 4);
      }
  }
  const int k_own = mxfp4_max_exponent(d.scales.data(), d.scales.size(), -127);
  for (int shared : {k_own, k_own + 1, k_own + 20}) expect_cast("checkpoint-like", d, shared, s);
  Mxfp4Data zeros = mxfp4_data(64, 7);
  std::fill(zeros.scales.begin(), zeros.scales.end(), 0);
  expect_cast("only byte-0 groups", zeros, -127, s);
}

TEST(CudaMxfp4ToNvfp4, MoreThan2To24Elements) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  const Mxfp4Data d = mxfp4_data((size_t{1} << 19) + 5, 8, 100, 127);
  expect_cast("large", d, mxfp4_max_exponent(d.scales.data(), d.scales.size(), -127), s);
}

// ---- FP8 128x128 block dequantization -------------------------------------------------------------

struct Fp8Data {
  Fp8BlockShape shape;
  std::vector<uint8_t> weight;
  std::vector<uint8_t> scales;  // E8M0 bytes or F32 values
};

// Random E4M3 bytes (NaN and -0 included); E8M0 scales run through every byte, F32 scales mix
// ordinary values with 0, -0, NaN (payloads, both signs), +-Inf, subnormals and huge values.
Fp8Data fp8_data(size_t rows, size_t cols, Fp8ScaleKind kind, uint32_t seed) {
  std::mt19937 rng(seed);
  Fp8Data d;
  d.shape = Fp8BlockShape{rows, cols, kind};
  d.weight.resize(rows * cols);
  for (auto& b : d.weight) b = static_cast<uint8_t>(rng());
  const size_t count = d.shape.scale_rows() * d.shape.scale_cols();
  if (kind == Fp8ScaleKind::E8M0) {
    d.scales.resize(count);
    for (size_t i = 0; i < count; ++i) d.scales[i] = static_cast<uint8_t>(i < 256 ? i : rng());
  } else {
    const float specials[] = {0.0f, -0.0f, kNaN, -kNaN, f32_from_bits(0x7F812345u), f32_from_bits(0xFFA00001u), kInf,
                              -kInf, 1e-40f, -0x1p-149f, 3e38f, 1e-3f};
    std::normal_distribution<float> normal(0.0f, 1e-3f);
    std::vector<float> f(count);
    for (size_t i = 0; i < count; ++i) f[i] = i < std::size(specials) ? specials[i] : normal(rng);
    d.scales.resize(4 * count);
    std::memcpy(d.scales.data(), f.data(), 4 * count);
  }
  return d;
}

void expect_fp8_dequantize(const std::string& what, const Fp8Data& d, size_t row_begin, size_t row_end,
                           const Stream& s, size_t out_offset = 0) {
  const size_t count = (row_end - row_begin) * d.shape.cols;
  const std::string context = what + " rows=" + std::to_string(d.shape.rows) + " cols=" +
                              std::to_string(d.shape.cols) + " rows " + std::to_string(row_begin) + ".." +
                              std::to_string(row_end) + (d.shape.scale_kind == Fp8ScaleKind::E8M0 ? " E8M0" : " F32") +
                              (out_offset ? " out offset " + std::to_string(out_offset) : "");
  auto describe = [&](size_t i) {
    const size_t r = row_begin + i / d.shape.cols, c = i % d.shape.cols;
    const float scale = fp8_block_ref::load_block_scale(d.scales.data(), d.shape, r / 128, c / 128);
    return "row " + std::to_string(r) + " col " + std::to_string(c) + " weight " +
           hex(d.weight[r * d.shape.cols + c], 2) + " scale " + float_text(scale);
  };
  DeviceBuffer d_weight = to_device(d.weight, s, "fp8 weight");
  DeviceBuffer d_scales = to_device(d.scales, s, "fp8 scales");

  std::vector<float> want_f32(count);
  fp8_block_ref::dequantize_f32(d.weight.data(), d.scales.data(), d.shape, row_begin, row_end, want_f32.data());
  DeviceBuffer o_f32 = poisoned<float>(count + out_offset, s, "fp8 f32 out");
  fp8_block_dequantize_f32(d_weight.data<uint8_t>(), d_scales.data(), d.shape, row_begin, row_end,
                           o_f32.data<float>() + out_offset, s.get());
  EXPECT_TRUE(same_bits(context + " f32", want_f32, to_host<float>(o_f32.data<float>() + out_offset, count, s), describe));

  std::vector<uint16_t> want_bf16(count);
  fp8_block_ref::dequantize_bf16(d.weight.data(), d.scales.data(), d.shape, row_begin, row_end, want_bf16.data());
  DeviceBuffer o_bf16 = poisoned<uint16_t>(count + out_offset, s, "fp8 bf16 out");
  fp8_block_dequantize_bf16(d_weight.data<uint8_t>(), d_scales.data(), d.shape, row_begin, row_end,
                            o_bf16.data<uint16_t>() + out_offset, s.get());
  EXPECT_TRUE(same_bits(context + " bf16", want_bf16,
                        to_host<uint16_t>(o_bf16.data<uint16_t>() + out_offset, count, s), describe));
}

TEST(CudaFp8BlockDequantize, RaggedShapesBothScaleKinds) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  const std::pair<size_t, size_t> shapes[] = {{1, 1},     {3, 5},     {128, 128}, {129, 200}, {256, 384},
                                              {300, 129}, {130, 1000}, {200, 7168}, {17, 4100}, {2048, 2048}};
  for (Fp8ScaleKind kind : {Fp8ScaleKind::E8M0, Fp8ScaleKind::F32})
    for (auto [rows, cols] : shapes) {
      const Fp8Data d = fp8_data(rows, cols, kind, static_cast<uint32_t>(rows * 31 + cols));
      expect_fp8_dequantize("full", d, 0, rows, s);
      if (rows > 2) expect_fp8_dequantize("row range", d, 1, rows - 1, s);
      // An output pointer off the 16-byte grid takes the element-wise path.
      expect_fp8_dequantize("element-wise", d, 0, rows, s, 1);
    }
}

// Every weight byte (NaN 0x7F/0xFF among them) under every special scale, few blocks, so each NaN
// scale meets NaN weights in the vector and the element-wise kernels: which NaN the product keeps
// is the compiled reference's operand order, which differs between the two scale kinds.
TEST(CudaFp8BlockDequantize, NaNWeightsUnderEverySpecialScale) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  const uint8_t e8m0_specials[] = {0xFF, 0x00, 0xFE, 0x7F, 0x01};
  const float f32_specials[] = {kNaN, -kNaN, f32_from_bits(0x7F812345u), f32_from_bits(0xFFA00001u), kInf, -kInf,
                                0.0f, -0.0f, 1e-40f, 3e38f};
  for (Fp8ScaleKind kind : {Fp8ScaleKind::E8M0, Fp8ScaleKind::F32}) {
    const size_t scale_count = kind == Fp8ScaleKind::E8M0 ? std::size(e8m0_specials) : std::size(f32_specials);
    Fp8Data d;
    d.shape = Fp8BlockShape{130, 128 * scale_count, kind};  // two block rows, the second ragged
    d.weight.resize(d.shape.rows * d.shape.cols);
    for (size_t i = 0; i < d.weight.size(); ++i) d.weight[i] = static_cast<uint8_t>(i * 7 + i / 256);
    std::vector<float> f32(2 * scale_count);
    d.scales.resize(kind == Fp8ScaleKind::E8M0 ? 2 * scale_count : 4 * 2 * scale_count);
    for (size_t r = 0; r < 2; ++r)
      for (size_t c = 0; c < scale_count; ++c) {
        const size_t j = (c + r) % scale_count;  // the second block row shifts the specials by one
        if (kind == Fp8ScaleKind::E8M0) d.scales[r * scale_count + c] = e8m0_specials[j];
        else f32[r * scale_count + c] = f32_specials[j];
      }
    if (kind == Fp8ScaleKind::F32) std::memcpy(d.scales.data(), f32.data(), d.scales.size());
    expect_fp8_dequantize("special scales", d, 0, d.shape.rows, s);
    expect_fp8_dequantize("special scales element-wise", d, 0, d.shape.rows, s, 1);
    expect_fp8_dequantize("special scales rows 127..130", d, 127, d.shape.rows, s);
  }
}

TEST(CudaFp8BlockDequantize, MoreThan2To24Elements) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  const Fp8Data d = fp8_data(4099, 4224, Fp8ScaleKind::E8M0, 99);
  expect_fp8_dequantize("large", d, 0, d.shape.rows, s);
  expect_fp8_dequantize("large tail", d, 3000, d.shape.rows, s);
}

// ---- argument checks (no GPU needed: they fail before any CUDA call) ------------------------------

template <class F>
void expect_input_error(F&& f, std::initializer_list<const char*> words) {
  try {
    f();
    ADD_FAILURE() << "no InputError";
  } catch (const InputError& e) {
    for (const char* w : words) EXPECT_NE(std::string(e.what()).find(w), std::string::npos) << e.what();
  }
}

TEST(WeightCodecArguments, NamedInputErrors) {
  auto* fake = reinterpret_cast<uint8_t*>(uintptr_t{1} << 20);  // never dereferenced: checks come first
  auto* fake_f = reinterpret_cast<float*>(fake);
  const Nvfp4Scaling sc{};
  expect_input_error([&] { nvfp4_quantize(fake, DType::F32, 24, sc, fake, fake, nullptr); }, {"nvfp4_quantize", "n=24"});
  expect_input_error([&] { nvfp4_quantize(fake, DType::U8, 32, sc, fake, fake, nullptr); }, {"nvfp4_quantize", "U8"});
  expect_input_error([&] { nvfp4_quantize(nullptr, DType::BF16, 32, sc, fake, fake, nullptr); }, {"src is null"});
  expect_input_error([&] { nvfp4_quantize(fake + 8, DType::F32, 32, sc, fake, fake, nullptr); }, {"16-byte aligned"});
  expect_input_error([&] { nvfp4_quantize(fake, DType::F32, 32, sc, fake, nullptr, nullptr); }, {"scales is null"});
  expect_input_error([&] { nvfp4_amax(fake, DType::F32, 32, nullptr, nullptr); }, {"nvfp4_amax", "amax is null"});
  expect_input_error([&] { nvfp4_amax(fake + 4, DType::F32, 32, fake_f, nullptr); }, {"nvfp4_amax", "aligned"});
  expect_input_error([&] { mxfp4_dequantize_f32(fake, fake, 48, fake_f, nullptr); }, {"mxfp4_dequantize_f32", "n=48"});
  expect_input_error([&] { mxfp4_dequantize_bf16(fake, fake, 64, nullptr, nullptr); }, {"out is null"});
  expect_input_error([&] { mxfp4_dequantize_f32(fake, fake, 64, fake_f + 1, nullptr); }, {"out", "aligned"});
  expect_input_error([&] { mxfp4_to_nvfp4(fake, fake, 33, Mxfp4CastParams{}, fake, fake, nullptr, nullptr); },
                     {"mxfp4_to_nvfp4", "n=33"});
  expect_input_error([&] { mxfp4_to_nvfp4(fake, nullptr, 64, Mxfp4CastParams{}, fake, fake, nullptr, nullptr); },
                     {"scales is null"});
  const Fp8BlockShape shape{10, 20, Fp8ScaleKind::F32};
  expect_input_error([&] { fp8_block_dequantize_f32(fake, fake, shape, 5, 11, fake_f, nullptr); },
                     {"fp8_block_dequantize_f32", "rows=10 cols=20", "row range"});
  expect_input_error([&] { fp8_block_dequantize_bf16(fake, fake + 1, shape, 0, 10, reinterpret_cast<uint16_t*>(fake), nullptr); },
                     {"fp8_block_dequantize_bf16", "scales is not 4-byte aligned"});
}

TEST(WeightCodecArguments, CastCountersBecomeStats) {
  const uint64_t c[kMxfp4CastCounters] = {10, 2, 7, 5};
  const Mxfp4CastStats s = mxfp4_cast_stats(c);
  EXPECT_EQ(s.groups, 10u);
  EXPECT_EQ(s.zero_scale_groups, 2u);
  EXPECT_EQ(s.reported_lossless, 7u);
  EXPECT_EQ(s.exact_groups, 5u);
}

}  // namespace
}  // namespace fp4kit::cuda
