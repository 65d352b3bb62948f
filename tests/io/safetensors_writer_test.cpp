#include "io/safetensors_writer.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "io/safetensors_file.h"
#include "io_test_util.h"
#include "test_data.h"

namespace fp4kit::io {
namespace {

using testing::expect_error;
using testing::read_bytes;

std::vector<std::byte> pattern(size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 31 + seed * 7 + 1) & 0xFF);
  return v;
}

std::string dtype_tensor_name(DType d) { return "t." + std::string(dtype_name(d)); }

// The rules of the reference reader beyond ours: data contiguous from 0 and exactly filling the file.
void expect_contiguous(const SafetensorsFile& f) {
  uint64_t expected_begin = 0;
  for (const TensorInfo& t : f.tensors()) {
    EXPECT_EQ(t.begin, expected_begin) << t.name;
    expected_begin = t.end;
  }
  EXPECT_EQ(f.header().data_offset + expected_begin, f.file_size());
  EXPECT_EQ(f.header().data_offset % 8, 0u);
}

TEST(SafetensorsWriter, RoundTripsEveryDtype) {
  const std::string path = fp4kit::testing::fresh_temp_dir("writer-dtypes") + "/all.safetensors";
  SafetensorsWriter w(path);
  for (const auto& t : kDTypeTable) w.declare(dtype_tensor_name(t.dtype), t.dtype, {3, 8});
  w.begin();
  unsigned seed = 0;
  for (const TensorInfo& t : w.layout()) w.write(t.name, pattern(t.nbytes(), seed++));
  w.commit();

  const SafetensorsFile f = SafetensorsFile::open(path);
  ASSERT_EQ(f.tensors().size(), std::size(kDTypeTable));
  expect_contiguous(f);
  seed = 0;
  for (const TensorInfo& declared : w.layout()) {
    const TensorInfo& t = f.at(declared.name);
    EXPECT_EQ(t.dtype, declared.dtype);
    EXPECT_EQ(t.shape, (std::vector<int64_t>{3, 8}));
    EXPECT_EQ(t.nbytes(), 24u * dtype_bits(t.dtype) / 8) << t.name;
    EXPECT_EQ(f.read_all(t), pattern(t.nbytes(), seed++)) << t.name;
  }
  EXPECT_EQ(f.at("t.F4").nbytes(), 12u);
  EXPECT_EQ(f.at("t.F6_E3M2").nbytes(), 18u);
}

TEST(SafetensorsWriter, RoundTripsScalarsEmptyTensorsAndMetadata) {
  const std::string path = fp4kit::testing::fresh_temp_dir("writer-edge") + "/edge.safetensors";
  SafetensorsWriter w(path);
  w.set_metadata({{"format", "pt"}, {"producer", "fp4kit \"test\"\n"}});
  w.declare("scalar", DType::F32, {});
  w.declare("empty", DType::BF16, {0, 5});
  w.declare("fp4", DType::F4, {1, 2});
  w.begin();
  w.write("empty", {});
  w.write("fp4", pattern(1, 1));
  w.write("scalar", pattern(4, 2));
  w.commit();

  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.header().metadata.at("producer"), "fp4kit \"test\"\n");
  EXPECT_EQ(f.header().metadata.at("format"), "pt");
  EXPECT_EQ(f.at("scalar").shape, std::vector<int64_t>{});
  EXPECT_EQ(f.at("scalar").numel(), 1);
  EXPECT_EQ(f.read_all(f.at("scalar")), pattern(4, 2));
  EXPECT_EQ(f.at("empty").shape, (std::vector<int64_t>{0, 5}));
  EXPECT_EQ(f.at("empty").nbytes(), 0u);
  EXPECT_TRUE(f.view(f.at("empty")).empty());
  EXPECT_EQ(f.read_all(f.at("fp4")), pattern(1, 1));
  expect_contiguous(f);
}

TEST(SafetensorsWriter, WritesCompactHeaderPaddedWithSpaces) {
  const std::string path = fp4kit::testing::fresh_temp_dir("writer-header") + "/h.safetensors";
  SafetensorsWriter w(path);
  w.set_metadata({{"format", "pt"}});
  w.declare("b", DType::F32, {2});
  w.declare("a", DType::U8, {3});
  w.begin();
  w.write("a", pattern(3, 0));
  w.write("b", pattern(8, 0));
  w.commit();

  const auto bytes = read_bytes(path);
  const std::string expected =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[3,11]}})";
  const uint64_t n = safetensors_header_length(std::span<const std::byte, 8>(bytes.data(), 8));
  EXPECT_EQ(n % 8, 0u);
  ASSERT_EQ(bytes.size(), 8 + n + 11);
  const std::string header(reinterpret_cast<const char*>(bytes.data()) + 8, n);
  EXPECT_EQ(header, expected + std::string(n - expected.size(), ' '));
  EXPECT_LT(n - expected.size(), 8u);
}

TEST(SafetensorsWriter, OutputIsDeterministicWhateverTheDeclarationOrder) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("writer-determinism");
  auto write = [&](const std::string& path, bool reversed) {
    SafetensorsWriter w(path);
    std::vector<std::string> names = {"x.weight", "a.scale", "m.bias", "B.upper"};
    if (reversed) std::reverse(names.begin(), names.end());
    for (const auto& name : names) w.declare(name, DType::BF16, {4, 3});
    w.set_metadata({{"k", "v"}});
    w.begin();
    for (const TensorInfo& t : w.layout()) w.write(t.name, pattern(t.nbytes(), static_cast<unsigned>(t.name[0])));
    w.commit();
  };
  write(dir + "/one.safetensors", false);
  write(dir + "/two.safetensors", true);
  EXPECT_EQ(read_bytes(dir + "/one.safetensors"), read_bytes(dir + "/two.safetensors"));
}

TEST(SafetensorsWriter, AppendInChunksEqualsWholeWrites) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("writer-append");
  auto declare = [](SafetensorsWriter& w) {
    w.declare("a", DType::F32, {5, 7});
    w.declare("b", DType::U8, {0});
    w.declare("c", DType::F4, {2, 9});
    w.declare("d", DType::I64, {3});
    w.begin();
  };
  SafetensorsWriter whole(dir + "/whole.safetensors");
  declare(whole);
  std::vector<std::byte> data;
  for (const TensorInfo& t : whole.layout()) {
    const auto bytes = pattern(t.nbytes(), static_cast<unsigned>(t.begin));
    whole.write(t.name, bytes);
    data.insert(data.end(), bytes.begin(), bytes.end());
  }
  whole.commit();

  SafetensorsWriter chunked(dir + "/chunked.safetensors");
  declare(chunked);
  // Chunks of 1, 2, 3, ... bytes: they cross tensor boundaries.
  size_t pos = 0;
  for (size_t size = 1; pos < data.size(); ++size) {
    const size_t n = std::min(size, data.size() - pos);
    chunked.append(std::span(data).subspan(pos, n));
    pos += n;
  }
  chunked.commit();
  EXPECT_EQ(read_bytes(dir + "/whole.safetensors"), read_bytes(dir + "/chunked.safetensors"));

  // append and write mix: the first tensor in pieces, the rest whole.
  SafetensorsWriter mixed(dir + "/mixed.safetensors");
  declare(mixed);
  const TensorInfo& a = mixed.layout()[0];
  mixed.append(std::span(data).first(10));
  mixed.append(std::span(data).subspan(10, a.nbytes() - 10));
  for (size_t i = 1; i < mixed.layout().size(); ++i) {
    const TensorInfo& t = mixed.layout()[i];
    mixed.write(t.name, std::span(data).subspan(t.begin, t.nbytes()));
  }
  mixed.commit();
  EXPECT_EQ(read_bytes(dir + "/whole.safetensors"), read_bytes(dir + "/mixed.safetensors"));
}

TEST(SafetensorsWriter, RejectsMisuse) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("writer-misuse");
  const std::string path = dir + "/m.safetensors";
  SafetensorsWriter w(path);
  w.declare("a", DType::F32, {2});
  expect_error<Error>([&] { w.declare("a", DType::F32, {2}); }, {path, "'a'", "declared twice"});
  expect_error<Error>([&] { w.declare("odd", DType::F4, {3}); }, {path, "'odd'", "whole number of bytes"});
  expect_error<Error>([&] { w.declare("neg", DType::F32, {-1}); }, {path, "'neg'", "negative"});
  expect_error<Error>([&] { w.declare("", DType::F32, {1}); }, {path, "empty tensor name"});
  expect_error<Error>([&] { w.declare("__metadata__", DType::F32, {1}); }, {path, "reserved"});
  expect_error<Error>([&] { w.write("a", pattern(8, 0)); }, {path, "before begin()"});
  w.declare("b", DType::U8, {4});
  w.begin();
  expect_error<Error>([&] { w.declare("c", DType::F32, {2}); }, {path, "after begin()"});
  expect_error<Error>([&] { w.write("zzz", pattern(1, 0)); }, {path, "'zzz'", "not declared"});
  expect_error<Error>([&] { w.write("a", pattern(7, 0)); }, {path, "'a'", "got 7 bytes", "has 8"});
  expect_error<Error>([&] { w.write("b", pattern(4, 0)); }, {path, "'b'", "out of order", "'a'"});
  w.write("a", pattern(8, 0));
  expect_error<Error>([&] { w.write("a", pattern(8, 0)); }, {path, "'a'", "written twice"});
  w.append(pattern(1, 0));
  expect_error<Error>([&] { w.commit(); }, {path, "'b'", "incomplete", "1 of 4 bytes"});
  expect_error<Error>([&] { w.append(pattern(4, 0)); }, {path, "past the end", "3 bytes left"});
  w.append(pattern(3, 0));
  w.commit();
  EXPECT_TRUE(std::filesystem::exists(path));
  expect_error<Error>([&] { w.commit(); }, {path, "twice"});
}

TEST(SafetensorsWriter, AbandonedWriterLeavesNoFile) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("writer-abandon");
  {
    SafetensorsWriter w(dir + "/x.safetensors");
    w.declare("a", DType::F32, {2});
    w.begin();
    w.write("a", pattern(8, 0));
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir));
}

TEST(SafetensorsWriter, WritesAFileWithNoTensors) {
  const std::string path = fp4kit::testing::fresh_temp_dir("writer-empty") + "/e.safetensors";
  SafetensorsWriter w(path);
  w.begin();
  w.commit();
  EXPECT_EQ(read_bytes(path), testing::safetensors_bytes("{}      "));
  EXPECT_TRUE(SafetensorsFile::open(path).tensors().empty());
}

}  // namespace
}  // namespace fp4kit::io
