// The writer additions hollow checkpoints rest on: AtomicFile::skip and SafetensorsWriter::append_hole.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstddef>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "base/error.h"
#include "io/atomic_file.h"
#include "io/safetensors_file.h"
#include "io/safetensors_writer.h"
#include "test_data.h"

namespace fp4kit::io {
namespace {

std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(SynthHollowWriter, SkipLeavesAHoleThatReadsAsZeros) {
  const std::string path = testing::fresh_temp_dir("hollow-atomic") + "/f.bin";
  AtomicFile f(path);
  f.write("ab");
  f.skip(1 << 20);
  f.write("cd");
  f.skip(3);  // a hole at the very end still makes the file that long
  EXPECT_EQ(f.bytes_written(), 2u + (1u << 20) + 2u + 3u);
  f.commit();
  const auto bytes = read_file(path);
  ASSERT_EQ(bytes.size(), 2u + (1u << 20) + 2u + 3u);
  EXPECT_EQ(bytes[0], 'a');
  EXPECT_EQ(bytes[1], 'b');
  for (size_t i = 2; i < 2 + (1u << 20); ++i) ASSERT_EQ(bytes[i], 0) << i;
  EXPECT_EQ(bytes[2 + (1u << 20)], 'c');
  EXPECT_EQ(bytes.back(), 0);
}

TEST(SynthHollowWriter, HollowShardIsValidAndTakesNoSpace) {
  const std::string path = testing::fresh_temp_dir("hollow-writer") + "/m.safetensors";
  SafetensorsWriter w(path);
  w.set_metadata({{"fp4kit_hollow", "true"}});
  w.declare("a", DType::BF16, {4096, 4096});  // 32 MiB
  w.declare("b", DType::F8_E8M0, {3});
  w.begin();
  EXPECT_THROW(w.append_hole((uint64_t{32} << 20) + 4), Error);  // past the end of the last tensor
  w.append_hole(uint64_t{32} << 20);
  w.append(std::as_bytes(std::span("xyz", 3)));
  w.commit();

  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, uint64_t{1} << 20);
  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.file_size(), static_cast<uint64_t>(st.st_size));
  EXPECT_EQ(f.header().metadata.at("fp4kit_hollow"), "true");
  std::vector<std::byte> b(3);
  f.read(f.at("b"), b);
  EXPECT_EQ(static_cast<char>(b[2]), 'z');
  std::vector<std::byte> a(16);
  f.read_range(f.at("a"), 1000, a);
  for (std::byte x : a) EXPECT_EQ(x, std::byte{0});
}

TEST(SynthHollowWriter, AnIncompleteHollowShardIsNotPublished) {
  const std::string dir = testing::fresh_temp_dir("hollow-incomplete");
  SafetensorsWriter w(dir + "/m.safetensors");
  w.declare("a", DType::F32, {1000});
  w.begin();
  w.append_hole(3996);
  EXPECT_THROW(w.commit(), Error);  // 4 bytes missing
  std::ifstream in(dir + "/m.safetensors");
  EXPECT_FALSE(in.good());
}

}  // namespace
}  // namespace fp4kit::io
