// XᵀX sums on the GPU (cuda/xtx_blocks.h, cuda/xtx_full.h, cuda/xtx_device_sums.h), the statistics
// of `calibrate --hessian` with `--device cuda`, against sums on the host.
//
// Reference: every entry Σ_r d_r[a]·d_r[b] (d = w·x, widened to F64 as the GPU and the CPU do) summed
// in long double, with Σ_r |d_r[a]·d_r[b]|. Bound: the GPU forms the same F64 products (exact
// without weights, one rounding with them) and sums them in another order; any order of n terms
// is within (n - 1)·2⁻⁵³·Σ|terms| of the exact sum, so each value must be within
// (rows + 32)·2⁻⁵²·Σ|terms| of the reference (twice that, with room for the few extra additions of
// the blocks' partial sums and of sums added over several calls), exactly 0 where every term is 0,
// NaN exactly where the reference is NaN, and the reference's infinity where it is infinite. F32
// results (the full matrices as they leave the device) may also differ by their rounding,
// 2⁻²⁴·|value|. NaN and Inf follow the CPU's calib/xtx_table.h and xtx_full_sums as well: the same
// entries are NaN or infinite when the CPU sums the same rows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "calib/xtx_full_observer.h"
#include "calib/xtx_table.h"
#include "cuda/xtx_blocks.h"
#include "cuda/xtx_device_sums.h"
#include "cuda/xtx_full.h"
#include "formats/bf16.h"
#include "gpu_test.h"

namespace fp4kit::cuda {
namespace {

// Rows on the host, F32 or BF16, [rows, stride] with `cols` used, and optional row weights.
struct HostRows {
  int64_t rows = 0, cols = 0, stride = 0;
  bool bf16 = false;
  std::vector<float> values;  // [rows, stride]; BF16 rows hold BF16 values
  std::vector<float> weights;  // empty: none

  // d[r][c] = w_r·x[r][c] in F64, as the GPU and the CPU form it.
  std::vector<double> widened() const {
    std::vector<double> d(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const double v = values[static_cast<size_t>(r * stride + c)];
        d[static_cast<size_t>(r * cols + c)] = weights.empty() ? v : static_cast<double>(weights[static_cast<size_t>(r)]) * v;
      }
    return d;
  }
};

// Random rows: magnitudes spread over 2^±8 with either sign, non-zero; BF16 rows rounded to BF16.
HostRows random_rows(int64_t rows, int64_t cols, int64_t stride, bool bf16, bool weighted, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mant(1.0f, 2.0f), wdist(0.0f, 2.0f);
  std::uniform_int_distribution<int> expo(-8, 8), sign(0, 1);
  HostRows h;
  h.rows = rows, h.cols = cols, h.stride = stride, h.bf16 = bf16;
  h.values.resize(static_cast<size_t>(rows * stride));
  for (float& v : h.values) {
    v = std::ldexp(mant(rng), expo(rng)) * (sign(rng) ? -1.0f : 1.0f);
    if (bf16) v = round_to_bf16(v);
  }
  if (weighted) {
    h.weights.resize(static_cast<size_t>(rows));
    for (float& w : h.weights) w = wdist(rng);
  }
  return h;
}

// The same rows (their weights kept) with every value 0.
HostRows zeroed(HostRows h) {
  for (float& v : h.values) v = 0.0f;
  return h;
}

// The same rows with every value moved to between a quarter of F32's largest and the largest, its
// sign kept: their squares overflow F32 but not F64.
HostRows near_float_max(HostRows h) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0.25f, 1.0f);
  for (float& v : h.values) v = std::copysign(std::numeric_limits<float>::max() * u(rng), v);
  return h;
}

// The rows on the device, and the XtxRows that name them (`first` rows on from row `from`).
struct DeviceRows {
  const HostRows& host;
  const Stream& stream;
  DeviceBuffer values, weights;
  DeviceRows(const HostRows& h, const Stream& s) : host(h), stream(s) {
    if (h.bf16) {
      std::vector<uint16_t> bits(h.values.size());
      for (size_t i = 0; i < bits.size(); ++i) bits[i] = BF16::from_float(h.values[i]).bits;
      values = testing::upload(bits, s, "rows");
    } else {
      values = testing::upload(h.values, s, "rows");
    }
    weights = testing::upload(h.weights, s, "row weights");
  }
  XtxRows rows(int64_t from, int64_t count) const {
    XtxRows x;
    const size_t offset = static_cast<size_t>(from * host.stride);
    if (host.bf16) x.bf16 = values.data<uint16_t>() + offset;
    else x.f32 = values.data<float>() + offset;
    x.rows = count, x.cols = host.cols, x.stride = host.stride;
    if (!host.weights.empty()) x.row_weights = weights.data<float>() + from;
    return x;
  }
};

struct Expected {
  long double sum = 0, abs = 0;
};

// Σ_r d[r][a]·d[r][b] and Σ_r |d[r][a]·d[r][b]| over d [rows, cols] (F64, widened()).
Expected expected(const std::vector<double>& d, int64_t rows, int64_t cols, int64_t a, int64_t b) {
  Expected e;
  for (int64_t r = 0; r < rows; ++r) {
    const long double t = static_cast<long double>(d[static_cast<size_t>(r * cols + a)]) * d[static_cast<size_t>(r * cols + b)];
    e.sum += t;
    e.abs += std::fabs(t);
  }
  return e;
}

// `got` against the reference as the header says; `f32`: got was rounded to F32 once.
::testing::AssertionResult matches(double got, const Expected& want, int64_t rows, bool f32 = false) {
  const double w = static_cast<double>(want.sum);
  if (std::isnan(w) || std::isnan(got)) {
    if (std::isnan(w) && std::isnan(got)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << got << " where the reference is " << w;
  }
  if (std::isinf(w) || std::isinf(got)) {
    if (got == w) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << got << " where the reference is " << w;
  }
  const double bound = static_cast<double>(rows + 32) * 0x1p-52 * static_cast<double>(want.abs) +
                       (f32 ? 0x1p-24 * std::fabs(w) : 0.0);
  const double diff = std::fabs(got - w);
  if (diff <= bound) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << got << " vs " << w << ": |difference| " << diff << " exceeds " << bound;
}

bool same_bits_or_both_nan(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// The blocks of `h` summed on the device by XtxBlockSums, the rows added in two calls.
std::vector<double> blocks_on_device(const HostRows& h, const Stream& s) {
  const DeviceRows d(h, s);
  XtxBlockSums sums(h.cols, "test blocks", s.get());
  const int64_t first = h.rows / 3;
  sums.add(d.rows(0, first), s.get());
  sums.add(d.rows(first, h.rows - first), s.get());
  return sums.read(s.get());
}

// The reference of block j: its 256 entries, the rows in one pass.
std::vector<Expected> expected_block(const std::vector<double>& d, int64_t rows, int64_t cols, int64_t j) {
  std::vector<Expected> e(256);
  for (int64_t r = 0; r < rows; ++r) {
    const double* v = &d[static_cast<size_t>(r * cols + j * 16)];
    for (int a = 0; a < 16; ++a)
      for (int b = 0; b < 16; ++b) {
        const long double t = static_cast<long double>(v[a]) * v[b];
        e[static_cast<size_t>(a * 16 + b)].sum += t;
        e[static_cast<size_t>(a * 16 + b)].abs += std::fabs(t);
      }
  }
  return e;
}

// Every entry of every block against the reference, and each block exactly symmetric.
void expect_blocks(const std::vector<double>& got, const HostRows& h) {
  ASSERT_EQ(got.size(), static_cast<size_t>(h.cols / 16 * 256));
  const std::vector<double> d = h.widened();
  for (int64_t j = 0; j < h.cols / 16; ++j) {
    const std::vector<Expected> want = expected_block(d, h.rows, h.cols, j);
    for (int a = 0; a < 16; ++a)
      for (int b = 0; b < 16; ++b) {
        const double v = got[static_cast<size_t>(j * 256 + a * 16 + b)];
        ASSERT_TRUE(matches(v, want[static_cast<size_t>(a * 16 + b)], h.rows))
            << "block " << j << " [" << a << "," << b << "] of rows=" << h.rows << " cols=" << h.cols
            << (h.bf16 ? " bf16" : " f32") << (h.weights.empty() ? "" : " weighted");
        ASSERT_TRUE(same_bits_or_both_nan(v, got[static_cast<size_t>(j * 256 + b * 16 + a)]))
            << "block " << j << " [" << a << "," << b << "] is not symmetric";
      }
  }
}

TEST(CudaXtx, BlocksMatchHostSumsOnRandomRows) {
  FP4KIT_REQUIRE_GPU();
  const Stream s;
  uint32_t seed = 1;
  for (const int64_t cols : {16, 48, 128, 7168})
    for (const int64_t rows : {1, 7, 17, 100, 1000}) {
      if (cols == 7168 && rows == 100) continue;  // the largest width: 1, 7, 17 and 1000 rows
      ++seed;
      const bool bf16 = seed % 2 == 0, weighted = seed % 3 != 0;
      const int64_t stride = seed % 4 == 0 ? cols + 16 : cols;  // rows further apart than their width
      const HostRows h = random_rows(rows, cols, stride, bf16, weighted, seed);
      expect_blocks(blocks_on_device(h, s), h);
    }
}

// Zeros give exact zeros; values near F32's largest do not overflow (F64 sums); NaN and Inf (and a
// zero weight times Inf) give NaN and infinite entries exactly where the CPU's XtxTable has them.
TEST(CudaXtx, BlocksOfZerosLargeValuesNanAndInf) {
  FP4KIT_REQUIRE_GPU();
  const Stream s;
  const int64_t rows = 37, cols = 48;

  const std::vector<double> z = blocks_on_device(zeroed(random_rows(rows, cols, cols, false, true, 11)), s);
  for (size_t i = 0; i < z.size(); ++i) ASSERT_TRUE(z[i] == 0.0 && !std::signbit(z[i])) << "entry " << i << ": " << z[i];

  const HostRows large = near_float_max(random_rows(rows, cols, cols, false, true, 12));
  const std::vector<double> l = blocks_on_device(large, s);
  for (size_t i = 0; i < l.size(); ++i) ASSERT_TRUE(std::isfinite(l[i])) << "entry " << i << ": " << l[i];
  expect_blocks(l, large);

  HostRows bad = random_rows(rows, cols, cols, false, true, 13);
  bad.values[5 * cols + 3] = std::numeric_limits<float>::quiet_NaN();
  bad.values[5 * cols + 20] = std::numeric_limits<float>::quiet_NaN();
  bad.values[9 * cols + 30] = std::numeric_limits<float>::infinity();
  bad.values[11 * cols + 40] = -std::numeric_limits<float>::infinity();
  bad.weights[11] = 0.0f;  // 0·Inf is NaN, on the CPU too
  const std::vector<double> g = blocks_on_device(bad, s);
  expect_blocks(g, bad);
  XtxTable cpu;
  cpu.observe("m", bad.values.data(), rows, cols, bad.weights.data(), 1);
  const std::vector<double>& c = cpu.modules().at("m").sums;  // the upper triangle
  int nan = 0, inf = 0;
  for (int64_t j = 0; j < cols / 16; ++j)
    for (int a = 0; a < 16; ++a)
      for (int b = a; b < 16; ++b) {
        const size_t i = static_cast<size_t>(j * 256 + a * 16 + b);
        EXPECT_EQ(std::isnan(g[i]), std::isnan(c[i])) << "block " << j << " [" << a << "," << b << "]";
        EXPECT_EQ(std::isinf(g[i]), std::isinf(c[i])) << "block " << j << " [" << a << "," << b << "]";
        if (std::isinf(g[i])) {
          EXPECT_EQ(g[i], c[i]);
        }
        nan += std::isnan(g[i]), inf += std::isinf(g[i]);
      }
  // Columns 3 and 20 (NaN) and 40 (0·Inf) make the 16 entries of the upper triangle of their block
  // that touch them NaN; column 30 (Inf) the 15 others of its own (its entry with column 20 is NaN).
  EXPECT_EQ(nan, 16 + 16 + 16);
  EXPECT_EQ(inf, 15);
}

TEST(CudaXtx, BlocksRefuseWidthsThatAreNoMultipleOf16AndMalformedRows) {
  FP4KIT_REQUIRE_GPU();
  const Stream s;
  EXPECT_THROW(XtxBlockSums(40, "test blocks", s.get()), Error);
  const HostRows h = random_rows(4, 48, 48, false, false, 3);
  const DeviceRows d(h, s);
  XtxBlockSums sums(32, "test blocks", s.get());
  try {
    sums.add(d.rows(0, 4), s.get());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("input width changed from 32 to 48"), std::string::npos) << e.what();
  }
  DeviceBuffer raw(48 / 16 * 256 * sizeof(double), "test sums");
  XtxRows x = d.rows(0, 4);
  x.cols = 40;
  try {
    xtx_blocks_accumulate(x, raw.data<double>(), s.get());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("xtx_blocks_accumulate [rows=4 cols=40"), std::string::npos) << e.what();
  }
  x = d.rows(0, 4);
  x.f32 = nullptr;
  EXPECT_THROW(xtx_blocks_accumulate(x, raw.data<double>(), s.get()), Error);
  x.rows = 0;  // no rows: nothing to read, nothing added
  EXPECT_NO_THROW(xtx_blocks_accumulate(x, raw.data<double>(), s.get()));
  s.synchronize("test");
}

// The full sums of `h` (groups of k columns) by XtxFullWorkspace into a raw F64 buffer, the rows in
// two calls and at most max_rows per product: the upper triangles, [groups][k][k] column-major.
std::vector<double> full_on_device(const HostRows& h, int64_t groups, int64_t max_rows, const Stream& s) {
  const int64_t k = h.cols / groups;
  const DeviceRows d(h, s);
  XtxFullWorkspace ws(max_rows);
  const std::vector<double> zero(static_cast<size_t>(groups * k * k), 0.0);
  DeviceBuffer sums = testing::upload(zero, s, "test sums");
  const int64_t first = h.rows / 3;
  ws.accumulate(d.rows(0, first), groups, k, sums.data<double>(), s.get());
  ws.accumulate(d.rows(first, h.rows - first), groups, k, sums.data<double>(), s.get());
  return testing::read_back<double>(sums.data(), zero.size(), s);
}

void expect_full(const std::vector<double>& got, const HostRows& h, int64_t groups) {
  const int64_t k = h.cols / groups;
  const std::vector<double> d = h.widened();
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t j = 0; j < k; ++j)
      for (int64_t i = 0; i <= j; ++i)
        ASSERT_TRUE(matches(got[static_cast<size_t>(g * k * k + i + j * k)], expected(d, h.rows, h.cols, g * k + i, g * k + j), h.rows))
            << "group " << g << " [" << i << "," << j << "] of rows=" << h.rows << " k=" << k
            << (h.bf16 ? " bf16" : " f32") << (h.weights.empty() ? "" : " weighted");
}

struct FullCase {
  int64_t groups, k, rows, max_rows;
  bool bf16, weighted;
};

TEST(CudaXtx, FullMatchesHostSumsInPiecesAndGroups) {
  FP4KIT_REQUIRE_GPU();
  const Stream s;
  uint32_t seed = 100;
  for (const FullCase& c : {FullCase{1, 16, 1, 0, false, false}, FullCase{1, 48, 37, 5, false, true},
                            FullCase{2, 64, 100, 0, true, true}, FullCase{1, 256, 1000, 0, false, false},
                            FullCase{3, 32, 53, 7, true, false}, FullCase{1, 7168, 5, 2, false, true}}) {
    const HostRows h = random_rows(c.rows, c.groups * c.k, c.groups * c.k + (c.bf16 ? 16 : 0), c.bf16, c.weighted, ++seed);
    expect_full(full_on_device(h, c.groups, c.max_rows, s), h, c.groups);
    if (c.k > 256) continue;  // the F32 read below is the same code at any size
    // As the observer reads it: mirrored and rounded to F32 on the device.
    const DeviceRows d(h, s);
    XtxFullWorkspace ws(c.max_rows);
    XtxFullSums sums(c.groups, c.k, "test matrices", s.get());
    sums.add(d.rows(0, h.rows), ws, s.get());
    const std::vector<float> f = sums.read_f32(s.get());
    ASSERT_EQ(f.size(), static_cast<size_t>(c.groups * c.k * c.k));
    const std::vector<double> wide = h.widened();
    for (int64_t g = 0; g < c.groups; ++g)
      for (int64_t a = 0; a < c.k; ++a)
        for (int64_t b = 0; b < c.k; ++b) {
          const float v = f[static_cast<size_t>(g * c.k * c.k + a * c.k + b)];
          ASSERT_TRUE(matches(v, expected(wide, h.rows, h.cols, g * c.k + a, g * c.k + b), h.rows, true))
              << "group " << g << " [" << a << "," << b << "] (F32)";
          ASSERT_EQ(v, f[static_cast<size_t>(g * c.k * c.k + b * c.k + a)]) << "not symmetric at [" << a << "," << b << "]";
        }
  }
}

TEST(CudaXtx, FullOfZerosLargeValuesNanAndInf) {
  FP4KIT_REQUIRE_GPU();
  const Stream s;
  const int64_t rows = 23, k = 32;

  for (const double v : full_on_device(zeroed(random_rows(rows, k, k, false, true, 21)), 1, 4, s)) ASSERT_EQ(v, 0.0);

  const HostRows large = near_float_max(random_rows(rows, k, k, false, true, 22));
  const std::vector<double> l = full_on_device(large, 1, 4, s);
  for (int64_t j = 0; j < k; ++j)
    for (int64_t i = 0; i <= j; ++i) ASSERT_TRUE(std::isfinite(l[static_cast<size_t>(i + j * k)])) << i << "," << j;
  expect_full(l, large, 1);

  HostRows bad = random_rows(rows, k, k, false, true, 23);
  bad.values[5 * k + 3] = std::numeric_limits<float>::quiet_NaN();
  bad.values[9 * k + 30] = std::numeric_limits<float>::infinity();
  bad.values[11 * k + 17] = std::numeric_limits<float>::infinity();
  bad.weights[11] = 0.0f;  // 0·Inf is NaN, on the CPU too
  const std::vector<double> g = full_on_device(bad, 1, 4, s);
  expect_full(g, bad, 1);
  const std::vector<double> cpu = xtx_full_sums(bad.values.data(), rows, k, 0, k, bad.weights.data(), 1);
  int nan = 0, inf = 0;
  for (int64_t j = 0; j < k; ++j)
    for (int64_t i = 0; i <= j; ++i) {
      const double v = g[static_cast<size_t>(i + j * k)], c = cpu[static_cast<size_t>(i * k + j)];
      EXPECT_EQ(std::isnan(v), std::isnan(c)) << i << "," << j;
      EXPECT_EQ(std::isinf(v), std::isinf(c)) << i << "," << j;
      if (std::isinf(v)) {
        EXPECT_EQ(v, c);
      }
      nan += std::isnan(v), inf += std::isinf(v);
    }
  // Columns 3 (NaN) and 17 (0·Inf): 2·32 - 1 entries of the upper triangle touch them; column 30
  // (Inf) spoils the other 30 of its row and column with infinities.
  EXPECT_EQ(nan, 63);
  EXPECT_EQ(inf, 30);
}

}  // namespace
}  // namespace fp4kit::cuda
