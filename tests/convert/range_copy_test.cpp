// The kernel copy of kept tensors (copy_file_range) against the plain pread/pwrite path: the same
// bytes at the same places and the same XXH3, on random data at odd offsets and lengths, and a
// whole conversion whose shards and recorded hashes do not depend on the path taken.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <xxhash.h>

#include "convert/convert_test_util.h"
#include "convert/range_copy.h"
#include "convert/shard_hash.h"
#include "run_command.h"
#include "test_data.h"

namespace fp4kit {
namespace {

std::vector<std::byte> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> out(n);
  for (std::byte& b : out) b = static_cast<std::byte>(rng() & 0xFF);
  return out;
}

std::vector<std::byte> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(chars.size());
  std::memcpy(out.data(), chars.data(), chars.size());
  return out;
}

std::string xxh3_hex(const std::byte* data, size_t n) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(XXH3_64bits(data, n)));
  return buf;
}

TEST(RangeCopy, KernelCopyGivesTheBytesAndHashOfThePlainPath) {
  const std::string dir = testing::fresh_temp_dir("range-copy");
  // More than one 8 MB piece, at offsets that are no multiple of the page size.
  const std::vector<std::byte> src = random_bytes((17u << 20) + 12345, 7);
  {
    std::ofstream out(dir + "/src", std::ios::binary);
    out.write(reinterpret_cast<const char*>(src.data()), static_cast<std::streamsize>(src.size()));
  }
  const int in = ::open((dir + "/src").c_str(), O_RDONLY);
  ASSERT_GE(in, 0);
  struct Case { uint64_t src_offset, dst_offset, bytes; };
  for (const Case c : {Case{0, 0, 1}, Case{3, 77, 4096 + 5}, Case{1000, 8, (16u << 20) + 999},
                       Case{12345, 24, src.size() - 12345}}) {
    std::vector<std::byte> got[2];
    std::string hash[2];
    for (int kernel = 0; kernel < 2; ++kernel) {
      const std::string path = dir + "/dst" + std::to_string(kernel);
      const int out = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ASSERT_GE(out, 0);
      ASSERT_EQ(::ftruncate(out, static_cast<off_t>(c.dst_offset + c.bytes + 3)), 0);  // a hole, as the writer leaves
      ShardHasher hasher;
      std::vector<std::byte> buffer;
      const RangeCopy r{in, c.src_offset, out, c.dst_offset, c.bytes};
      if (kernel) EXPECT_TRUE(copy_range(r, &hasher, buffer, path));  // ext4, tmpfs: the kernel copies
      else copy_range_ref(r, &hasher, buffer, path);
      ::close(out);
      got[kernel] = file_bytes(path);
      hash[kernel] = hasher.hex();
    }
    EXPECT_EQ(got[0], got[1]) << c.src_offset << " " << c.bytes;
    ASSERT_EQ(got[1].size(), c.dst_offset + c.bytes + 3);
    EXPECT_TRUE(std::equal(got[1].begin() + static_cast<std::ptrdiff_t>(c.dst_offset),
                           got[1].begin() + static_cast<std::ptrdiff_t>(c.dst_offset + c.bytes),
                           src.begin() + static_cast<std::ptrdiff_t>(c.src_offset)));
    EXPECT_EQ(got[1][0], c.dst_offset ? std::byte{0} : src[c.src_offset]);  // nothing before it touched
    EXPECT_EQ(hash[0], hash[1]);
    EXPECT_EQ(hash[1], xxh3_hex(src.data() + c.src_offset, c.bytes));
  }
  // Overlapping ranges of one file, which copy_file_range refuses (EINVAL): the plain path takes
  // over, with the same bytes and hash.
  const std::string path = dir + "/same";
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(src.data()), 1000);
  }
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ShardHasher hasher;
  std::vector<std::byte> buffer;
  EXPECT_FALSE(copy_range(RangeCopy{fd, 0, fd, 50, 100}, &hasher, buffer, path));
  ::close(fd);
  std::vector<std::byte> want(src.begin(), src.begin() + 1000);
  std::memmove(want.data() + 50, want.data(), 100);
  EXPECT_EQ(file_bytes(path), want);
  EXPECT_EQ(hasher.hex(), xxh3_hex(src.data(), 100));
  ::close(in);
}

TEST(RangeCopy, ConversionDoesNotDependOnTheCopyPath) {
  const std::string dir = testing::fresh_temp_dir("range-copy-convert");
  std::string hashes[2];
  for (int plain = 0; plain < 2; ++plain) {
    if (plain) ::setenv("FP4KIT_TEST_NO_KERNEL_COPY", "1", 1);
    const auto r = testing::run_fp4kit("convert " + testing::test_data("dsv4-tiny") + " " + dir + "/out" +
                                       std::to_string(plain) + " --recipe all-linear --weight-only --quiet");
    ::unsetenv("FP4KIT_TEST_NO_KERNEL_COPY");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    hashes[plain] = testing::read_json_file(dir + "/out" + std::to_string(plain) + "/.fp4kit-convert.json")
                        .at("finished_shards").dump();
  }
  EXPECT_EQ(hashes[0], hashes[1]);
  size_t shards = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir + "/out0")) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with("model-")) continue;
    ++shards;
    EXPECT_EQ(file_bytes(entry.path().string()), file_bytes(dir + "/out1/" + name)) << name;
    EXPECT_EQ(testing::read_json_file(dir + "/out0/.fp4kit-convert.json").at("finished_shards").at(name).at("xxh3_64"),
              shard_data_xxh3(entry.path().string()));
  }
  EXPECT_EQ(shards, 3u);
}

}  // namespace
}  // namespace fp4kit
