// The GPU forward pass in F32 (--precision f32) against the CPU engine on the tiny V4 checkpoint and on its NVFP4
// conversions (every stored format decoded on the device: FP8 blocks, MXFP4, NVFP4 in ModelOpt's
// and compressed-tensors' layouts, BF16): the same tokens give the same logits within F32 summation-order noise and the same
// top-1 token everywhere. The batch is long enough for every layer kind to do real work: sliding
// window (64) wrapping, HCA entries (ratio 128), CSA entries with the indexer choosing 8 of up to 40.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>

#include "base/error.h"
#include "engine/engine.h"
#include "engine/engine_test_util.h"
#include "gpu_engine/gpu_forward.h"
#include "gpu_test.h"
#include "nan_aware.h"
#include "run_command.h"
#include "test_data.h"
#include "tiny_conversions.h"

namespace fp4kit {
namespace {

gpu_engine::GpuForwardOptions f32() {
  gpu_engine::GpuForwardOptions o;
  o.precision = gpu_engine::Precision::F32;
  return o;
}

std::vector<int64_t> token_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int64_t> ids(static_cast<size_t>(n));
  uint64_t x = seed;
  for (auto& id : ids) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    id = static_cast<int64_t>((x >> 33) % static_cast<uint64_t>(vocab));
  }
  return ids;
}

// A copy of the tiny checkpoint that a test may damage.
std::string copy_of_tiny(const std::string& tag) {
  namespace fs = std::filesystem;
  const std::string dir = testing::fresh_temp_dir(tag);
  for (const auto& e : fs::directory_iterator(testing::test_data("dsv4-tiny")))
    fs::copy_file(e.path(), fs::path(dir) / e.path().filename());
  return dir;
}

void expect_same_logits(const std::string& model, int64_t batch, int64_t seq,
                        const gpu_engine::GpuForwardOptions& options = f32()) {
  engine::Engine cpu(model);
  gpu_engine::GpuForward gpu(model, options);
  const int64_t V = cpu.config().base.vocab_size;
  const auto ids = token_ids(batch * seq, V, 7);
  const std::vector<float> want = cpu.forward(ids, batch);
  const std::vector<float> got = gpu.forward(ids, batch);
  ASSERT_EQ(got.size(), want.size());
  double scale = 0;
  for (float v : want) scale = std::max(scale, std::fabs(static_cast<double>(v)));
  ASSERT_GT(scale, 0.0);
  double worst = 0;
  size_t at = 0, top1_same = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << "logit " << i;
    const double e = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (e > worst) worst = e, at = i;
  }
  for (int64_t r = 0; r < batch * seq; ++r) {
    const float* a = &got[static_cast<size_t>(r * V)];
    const float* b = &want[static_cast<size_t>(r * V)];
    top1_same += std::max_element(a, a + V) - a == std::max_element(b, b + V) - b;
  }
  std::printf("%s: %lld x %lld tokens, worst |GPU - CPU| logit %.3g (at %zu; largest |logit| %.3g), top-1 same %zu/%lld\n",
              model.c_str(), static_cast<long long>(batch), static_cast<long long>(seq), worst, at, scale, top1_same,
              static_cast<long long>(batch * seq));
  EXPECT_LE(worst, 2e-4 * scale) << "at " << at << ": " << got[at] << " vs " << want[at];
  EXPECT_EQ(top1_same, static_cast<size_t>(batch * seq));
}

TEST(CudaGpuForward, MatchesTheCpuEngineOnTheOfficialLayout) {
  FP4KIT_REQUIRE_GPU();
  expect_same_logits(testing::test_data("dsv4-tiny"), 2, 160);
}

// Conversions whose weights the GPU decodes from NVFP4: the default (experts cast losslessly),
// every linear requantized, and the compressed-tensors layout.
TEST(CudaGpuForward, MatchesTheCpuEngineOnNvfp4Conversions) {
  FP4KIT_REQUIRE_GPU();
  for (const auto& [flags, out] : testing::tiny_nvfp4_conversions("gpu-forward-nvfp4")) {
    SCOPED_TRACE("convert" + flags);
    expect_same_logits(out, 2, 72);
  }
}

TEST(CudaGpuForward, ShortSequencesAndOneToken) {
  FP4KIT_REQUIRE_GPU();
  expect_same_logits(testing::test_data("dsv4-tiny"), 3, 5);
  expect_same_logits(testing::test_data("dsv4-tiny"), 1, 1);
}

// One sequence per chunk (what a small --gpu-memory budget makes): the same logits as the CPU.
TEST(CudaGpuForward, ChunkedBatchMatchesTheCpuEngine) {
  FP4KIT_REQUIRE_GPU();
  gpu_engine::GpuForwardOptions o = f32();
  o.max_chunk_sequences = 1;
  expect_same_logits(testing::test_data("dsv4-tiny"), 3, 96, o);
  gpu_engine::GpuForward gpu(testing::test_data("dsv4-tiny"), o);
  gpu.embed(token_ids(3 * 8, 1024, 5), 3);
  gpu.run_layer(0);
  EXPECT_EQ(gpu.last_timing().chunks, 3);
}

// Only each sequence's last token (what generation and the server ask for): the CPU engine's
// last-token logits, and the last rows of the GPU's own every-token logits, also when the head runs
// in chunks of sequences.
TEST(CudaGpuForward, LastTokenLogitsMatchTheCpuEngine) {
  FP4KIT_REQUIRE_GPU();
  const std::string model = testing::test_data("dsv4-tiny");
  engine::Engine cpu(model);
  const int64_t V = cpu.config().base.vocab_size, batch = 3, seq = 70;
  const auto ids = token_ids(batch * seq, V, 11);
  engine::ForwardState state = cpu.embed(ids, batch);
  for (int64_t l = 0; l < cpu.config().layers(); ++l) cpu.run_layer(l, state);
  const std::vector<float> want = cpu.head(state, true);
  ASSERT_EQ(want.size(), static_cast<size_t>(batch * V));
  double scale = 0;
  for (float v : want) scale = std::max(scale, std::fabs(static_cast<double>(v)));
  ASSERT_GT(scale, 0.0);
  for (int64_t per_chunk : {int64_t{0}, int64_t{2}}) {
    SCOPED_TRACE("sequences per chunk " + std::to_string(per_chunk));
    gpu_engine::GpuForwardOptions o = f32();
    o.max_chunk_sequences = per_chunk;
    gpu_engine::GpuForward gpu(model, o);
    gpu.embed(ids, batch);
    for (int64_t l = 0; l < cpu.config().layers(); ++l) gpu.run_layer(l);
    const std::vector<float> last = gpu.head(true);
    ASSERT_EQ(last.size(), want.size());
    gpu.embed(ids, batch);
    for (int64_t l = 0; l < cpu.config().layers(); ++l) gpu.run_layer(l);
    const std::vector<float> every = gpu.head();
    ASSERT_EQ(every.size(), static_cast<size_t>(batch * seq * V));
    for (int64_t b = 0; b < batch; ++b) {
      const float* g = &last[static_cast<size_t>(b * V)];
      const float* w = &want[static_cast<size_t>(b * V)];
      const float* e = &every[static_cast<size_t>(((b + 1) * seq - 1) * V)];
      for (int64_t v = 0; v < V; ++v) {
        // The negated form fails on NaN too.
        ASSERT_TRUE(std::fabs(static_cast<double>(g[v]) - w[v]) <= 2e-4 * scale)
            << "sequence " << b << " token " << v << ": " << g[v] << " vs CPU " << w[v];
        ASSERT_TRUE(std::fabs(static_cast<double>(g[v]) - e[v]) <= 1e-5 * scale)
            << "sequence " << b << " token " << v << ": " << g[v] << " vs every-token head " << e[v];
      }
      EXPECT_EQ(std::max_element(g, g + V) - g, std::max_element(w, w + V) - w) << "sequence " << b;
    }
  }
}

// A budget below what one sequence needs beside the group's weights: an InputError naming the
// step and the flag; one below the hidden streams themselves: the allocation names the budget.
TEST(CudaGpuForward, MemoryBudgetTooSmallIsNamed) {
  FP4KIT_REQUIRE_GPU();
  gpu_engine::GpuForwardOptions o = f32();
  o.gpu_memory = gpu_engine::parse_gpu_memory("1GiB");
  {
    gpu_engine::GpuForward gpu(testing::test_data("dsv4-tiny"), o);
    try {
      gpu.forward(token_ids(16, 1024, 3), 2);
      FAIL() << "no error";
    } catch (const InputError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("the embedding: one sequence of 8 tokens"), std::string::npos) << m;
      EXPECT_NE(m.find("--gpu-memory"), std::string::npos) << m;
    }
  }
  o.gpu_memory = gpu_engine::parse_gpu_memory("1KiB");
  gpu_engine::GpuForward gpu(testing::test_data("dsv4-tiny"), o);
  try {
    gpu.forward(token_ids(16, 1024, 3), 2);
    FAIL() << "no error";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("GPU memory budget"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cuda::device_bytes_budget(), size_t{1024});  // this pass's; the destructor restores the last
}

TEST(CudaGpuForward, BadIdsAreNamed) {
  FP4KIT_REQUIRE_GPU();
  gpu_engine::GpuForward gpu(testing::test_data("dsv4-tiny"), f32());
  try {
    gpu.forward({1, 2, 5000, 3}, 2);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("token id 5000 (sequence 1, position 0)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gpu.forward({1, 2, 3}, 2), InputError);
}

// A shard cut short after the checkpoint was opened: the streamed read fails with the file named,
// and the pass stops with an InputError instead of computing on garbage.
TEST(CudaGpuForward, TruncatedShardIsNamed) {
  FP4KIT_REQUIRE_GPU();
  namespace fs = std::filesystem;
  const std::string dir = copy_of_tiny("gpu-forward-truncated");
  gpu_engine::GpuForward gpu(dir, f32());
  const std::string shard = dir + "/model-00002-of-00003.safetensors";
  fs::resize_file(shard, fs::file_size(shard) / 2);
  try {
    gpu.forward(token_ids(16, 1024, 3), 2);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("model-00002-of-00003.safetensors"), std::string::npos) << e.what();
  }
}

// A checkpoint that fits stays on the device after the first pass: the second pass reads nothing
// (it still runs after a shard is cut short on disk) and gives the first pass's logits bit for bit,
// which are those of a pass that streams every group.
TEST(CudaGpuForward, ResidentCheckpointIsReadOnce) {
  FP4KIT_REQUIRE_GPU();
  namespace fs = std::filesystem;
  const std::string dir = copy_of_tiny("gpu-forward-resident");
  const auto ids = token_ids(2 * 40, 1024, 11);
  gpu_engine::GpuForward gpu(dir, f32());
  ASSERT_TRUE(gpu.resident());
  auto pass = [&](uint64_t* bytes_read) {
    *bytes_read = 0;
    gpu.embed(ids, 2);
    *bytes_read += gpu.last_timing().bytes;
    for (int64_t l = 0; l < gpu.config().layers(); ++l) {
      gpu.run_layer(l);
      *bytes_read += gpu.last_timing().bytes;
    }
    std::vector<float> logits = gpu.head();
    *bytes_read += gpu.last_timing().bytes;
    return logits;
  };
  uint64_t first_bytes = 0, second_bytes = 0;
  const std::vector<float> first = pass(&first_bytes);
  EXPECT_GT(first_bytes, uint64_t{4} << 20);  // the tiny checkpoint's ~5 MB
  const std::string shard = dir + "/model-00002-of-00003.safetensors";
  fs::resize_file(shard, fs::file_size(shard) / 2);
  const std::vector<float> second = pass(&second_bytes);
  EXPECT_EQ(second_bytes, 0u);
  ASSERT_EQ(second.size(), first.size());
  EXPECT_EQ(std::memcmp(second.data(), first.data(), first.size() * sizeof(float)), 0);

  gpu_engine::GpuForwardOptions streaming = f32();
  streaming.keep_resident = false;
  gpu_engine::GpuForward streamed(testing::test_data("dsv4-tiny"), streaming);
  EXPECT_FALSE(streamed.resident());
  const std::vector<float> third = streamed.forward(ids, 2);
  ASSERT_EQ(third.size(), first.size());
  EXPECT_EQ(std::memcmp(third.data(), first.data(), first.size() * sizeof(float)), 0);
  // Restarting the stream mid-pass (resume) takes its groups from the device too.
  gpu.embed(ids, 2);
  gpu.run_layer(0);
  const std::vector<float> after0 = gpu.hidden();
  gpu.set_hidden(after0, 0);
  for (int64_t l = 1; l < gpu.config().layers(); ++l) gpu.run_layer(l);
  const std::vector<float> resumed = gpu.head();
  EXPECT_EQ(std::memcmp(resumed.data(), first.data(), first.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace fp4kit
