#include "io/safetensors_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <numeric>
#include <set>

#include "io/safetensors_writer.h"
#include "io_test_util.h"
#include "test_data.h"

namespace fp4kit::io {
namespace {

using testing::expect_error;

std::string shard(int i) {
  return fp4kit::testing::test_data("dsv4-tiny/model-0000" + std::to_string(i) + "-of-00003.safetensors");
}

std::string hex_prefix(std::span<const std::byte> bytes, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < std::min(n, bytes.size()); ++i) {
    const auto b = std::to_integer<unsigned>(bytes[i]);
    s += kHex[b >> 4];
    s += kHex[b & 0xF];
  }
  return s;
}

TEST(SafetensorsFile, ReadsTheDsv4TinyShards) {
  const size_t expected[] = {102, 157, 168};
  size_t total = 0;
  std::set<std::string> names;
  for (int i = 1; i <= 3; ++i) {
    const SafetensorsFile f = SafetensorsFile::open(shard(i));
    EXPECT_EQ(f.tensors().size(), expected[i - 1]) << f.path();
    EXPECT_EQ(f.header().metadata, (std::map<std::string, std::string>{{"format", "pt"}}));
    EXPECT_EQ(f.file_size(), std::filesystem::file_size(shard(i)));
    total += f.tensors().size();
    for (const TensorInfo& t : f.tensors()) names.insert(t.name);
  }
  EXPECT_EQ(total, 427u);
  EXPECT_EQ(names.size(), 427u);
}

TEST(SafetensorsFile, KnowsDsv4TinyDtypesShapesAndBytes) {
  const SafetensorsFile f = SafetensorsFile::open(shard(1));
  const TensorInfo& embed = f.at("embed.weight");
  EXPECT_EQ(embed.dtype, DType::BF16);
  EXPECT_EQ(embed.shape, (std::vector<int64_t>{1024, 128}));
  EXPECT_EQ(hex_prefix(f.view(embed), 8), "a83ebe3efa3f5cbf");

  const TensorInfo& wq_a = f.at("layers.0.attn.wq_a.weight");
  EXPECT_EQ(wq_a.dtype, DType::F8_E4M3);
  EXPECT_EQ(shape_string(wq_a.shape), "[128, 128]");
  EXPECT_EQ(wq_a.nbytes(), 16384u);
  EXPECT_EQ(hex_prefix(f.view(wq_a), 8), "e5dc4c6ed34fb5c4");
  const TensorInfo& scale = f.at("layers.0.attn.wq_a.scale");
  EXPECT_EQ(scale.dtype, DType::F8_E8M0);
  EXPECT_EQ(hex_prefix(f.read_all(scale), 1), "76");

  const TensorInfo& expert = f.at("layers.0.ffn.experts.0.w1.weight");
  EXPECT_EQ(expert.dtype, DType::I8);
  EXPECT_EQ(expert.shape, (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(hex_prefix(f.read_all(expert), 8), "640a3dbd1ba913ca");
  EXPECT_EQ(f.at("layers.0.ffn.gate.tid2eid").dtype, DType::I64);

  const SafetensorsFile f3 = SafetensorsFile::open(shard(3));
  const auto hc_head_scale = f3.read_all(f3.at("hc_head_scale"));
  float value = 0;
  ASSERT_EQ(hc_head_scale.size(), sizeof value);
  std::memcpy(&value, hc_head_scale.data(), sizeof value);
  EXPECT_FLOAT_EQ(value, 1.2569538354873657f);
}

TEST(SafetensorsFile, ViewEqualsReadForEveryTensor) {
  for (int i = 1; i <= 3; ++i) {
    const SafetensorsFile f = SafetensorsFile::open(shard(i));
    for (const TensorInfo& t : f.tensors()) {
      const auto view = f.view(t);
      ASSERT_EQ(view.size(), t.nbytes());
      ASSERT_TRUE(std::equal(view.begin(), view.end(), f.read_all(t).begin())) << t.name;
    }
  }
}

TEST(SafetensorsFile, ReadsTheOracleFiles) {
  const std::pair<const char*, size_t> files[] = {{"compressed_tensors_nvfp4", 65},
                                                  {"deepseek_fp4_experts", 78},
                                                  {"deepseek_fp8_to_nvfp4", 72},
                                                  {"modelopt_nvfp4", 109}};
  for (const auto& [name, count] : files) {
    const SafetensorsFile f = SafetensorsFile::open(fp4kit::testing::test_data("oracles/nvfp4/") + name + ".safetensors");
    EXPECT_EQ(f.tensors().size(), count) << name;
    EXPECT_TRUE(f.header().metadata.contains("producer")) << name;
    for (const TensorInfo& t : f.tensors()) {
      const auto view = f.view(t);
      ASSERT_TRUE(std::equal(view.begin(), view.end(), f.read_all(t).begin())) << t.name;
    }
  }
  const SafetensorsFile modelopt = SafetensorsFile::open(fp4kit::testing::test_data("oracles/nvfp4/modelopt_nvfp4.safetensors"));
  const TensorInfo& wsf2 = modelopt.at("out.normal_s1.weight_scale_2");
  EXPECT_EQ(wsf2.dtype, DType::F32);
  EXPECT_TRUE(wsf2.shape.empty());
  EXPECT_EQ(wsf2.nbytes(), 4u);
}

TEST(SafetensorsFile, FindAndAt) {
  const SafetensorsFile f = SafetensorsFile::open(shard(2));
  EXPECT_EQ(f.find("nope"), nullptr);
  ASSERT_NE(f.find(f.tensors().back().name), nullptr);
  EXPECT_EQ(f.find(f.tensors().back().name), &f.tensors().back());
  expect_error([&] { f.at("nope\n"); }, {shard(2), "no tensor 'nope\\x0a'"});
}

TEST(SafetensorsFile, ReadRangeReadsPartsAndChecksBounds) {
  const SafetensorsFile f = SafetensorsFile::open(shard(1));
  const TensorInfo& t = f.at("embed.weight");
  std::vector<std::byte> part(100);
  f.read_range(t, 1000, part);
  EXPECT_TRUE(std::equal(part.begin(), part.end(), f.view(t).begin() + 1000));
  f.read_range(t, t.nbytes(), std::span<std::byte>());
  expect_error<Error>([&] { f.read_range(t, t.nbytes() - 99, part); }, {shard(1), "'embed.weight'", "outside"});
  expect_error<Error>([&] { f.read_range(t, ~uint64_t{0}, part); }, {shard(1), "outside"});
  std::vector<std::byte> wrong(t.nbytes() - 1);
  expect_error<Error>([&] { f.read(t, wrong); }, {shard(1), "'embed.weight'", "buffer of"});
}

TEST(SafetensorsFile, RejectsTensorInfoOfAnotherFile) {
  const SafetensorsFile small = SafetensorsFile::open(shard(1));
  TensorInfo foreign = small.at("embed.weight");
  foreign.begin = small.file_size();
  foreign.end = foreign.begin + 16;
  expect_error<Error>([&] { small.view(foreign); }, {shard(1), "'embed.weight'", "inside this file"});
  expect_error<Error>([&] { small.drop_cache(foreign); }, {shard(1), "inside this file"});
}

TEST(SafetensorsFile, CacheHintsKeepDataIntact) {
  const SafetensorsFile f = SafetensorsFile::open(shard(3));
  const TensorInfo& t = f.tensors()[f.tensors().size() / 2];
  const auto before = f.read_all(t);
  f.advise_sequential(t);
  f.drop_cache(t);  // before mapping: fadvise only
  const auto view = f.view(t);
  f.advise_sequential(t);
  f.drop_cache(t);  // mapped: madvise too; the view stays valid and reads the same bytes again
  EXPECT_TRUE(std::equal(view.begin(), view.end(), before.begin()));
  for (const TensorInfo& u : f.tensors()) f.drop_cache(u);
  EXPECT_TRUE(std::equal(view.begin(), view.end(), before.begin()));
}

TEST(SafetensorsFile, IsMovable) {
  SafetensorsFile a = SafetensorsFile::open(shard(1));
  const auto view = a.view(a.at("embed.weight"));
  SafetensorsFile b = std::move(a);
  EXPECT_EQ(b.view(b.at("embed.weight")).data(), view.data());  // same mapping, moved along
  EXPECT_EQ(b.tensors().size(), 102u);
}

TEST(SafetensorsFile, ReportsMissingAndUnreadableFiles) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("file-missing");
  expect_error([&] { SafetensorsFile::open(dir + "/absent.safetensors"); },
               {dir + "/absent.safetensors", "cannot open", "No such file or directory"});
  expect_error([&] { SafetensorsFile::open(dir); }, {dir, "not a regular file"});
}

TEST(SafetensorsFile, ReportsHeaderErrorsWithThePath) {
  const std::string path = fp4kit::testing::fresh_temp_dir("file-bad") + "/bad.safetensors";
  testing::write_bytes(path, testing::safetensors_bytes(R"({"w":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}})", 1));
  expect_error([&] { SafetensorsFile::open(path); }, {path + ": tensor 'w': unknown dtype 'F7'"});
  testing::write_bytes(path, testing::safetensors_bytes("{}", 0, 1u << 20));  // lying length: not read at all
  expect_error([&] { SafetensorsFile::open(path); }, {path, "past the end"});
  testing::write_bytes(path, testing::to_bytes("short"));
  expect_error([&] { SafetensorsFile::open(path); }, {path, "5 bytes"});
}

TEST(SafetensorsFile, FileTruncatedAfterOpenGivesAnErrorNotACrash) {
  const std::string path = fp4kit::testing::fresh_temp_dir("file-truncated") + "/t.safetensors";
  {
    SafetensorsWriter w(path);
    w.declare("a", DType::U8, {4096});
    w.declare("b", DType::U8, {4096});
    w.begin();
    w.append(std::vector<std::byte>(8192, std::byte{7}));
    w.commit();
  }
  const SafetensorsFile f = SafetensorsFile::open(path);
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(f.file_size() - 1000)), 0);
  EXPECT_NO_THROW(f.read_all(f.at("a")));
  expect_error([&] { f.read_all(f.at("b")); }, {path, "tensor 'b'", "truncated"});
  expect_error([&] { f.view(f.at("a")); }, {path, "shrank"});
}

}  // namespace
}  // namespace fp4kit::io
