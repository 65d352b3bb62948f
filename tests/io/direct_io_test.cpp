// Direct I/O against the ordinary path: direct_pread of any range equals pread of it (unaligned
// offsets and lengths, ranges crossing the bounce buffer, the file's tail, a range past the end),
// and a DirectWriteStream fed in random pieces after a prefix writes exactly the bytes a plain
// write would (lengths around the alignment and the staging buffer).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "io/direct_io.h"
#include "test_data.h"

namespace fp4kit::io {
namespace {

std::vector<std::byte> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng() & 0xFF);
  return out;
}

void write_file(const std::string& path, const std::vector<std::byte>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::byte> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  if (!c.empty()) std::memcpy(out.data(), c.data(), c.size());
  return out;
}

TEST(DirectIo, PreadOfAnyRangeEqualsTheFilesBytes) {
  const std::string dir = testing::fresh_temp_dir("direct-read");
  const size_t size = (9u << 20) + 1234;  // crosses the 4 MB bounce buffer twice, ragged tail
  const std::vector<std::byte> bytes = random_bytes(size, 7);
  write_file(dir + "/f", bytes);
  const int fd = open_direct_read(dir + "/f");
  if (fd < 0) GTEST_SKIP() << "this file system refuses O_DIRECT";
  std::mt19937 rng(11);
  std::vector<std::pair<uint64_t, size_t>> ranges = {
      {0, 1}, {0, size}, {1, 4095}, {4095, 2}, {4096, 4096}, {size - 1, 1}, {size - 5000, 5000}, {(4u << 20) - 3, 10}};
  for (int i = 0; i < 40; ++i) {
    const uint64_t off = rng() % size;
    ranges.emplace_back(off, 1 + rng() % std::min<size_t>(size - off, 6u << 20));
  }
  for (const auto& [off, len] : ranges) {
    std::vector<std::byte> got(len);
    direct_pread(fd, off, got, dir + "/f", "range");
    ASSERT_TRUE(std::equal(got.begin(), got.end(), bytes.begin() + static_cast<std::ptrdiff_t>(off))) << off << " + " << len;
  }
  std::vector<std::byte> past(10);
  EXPECT_THROW(direct_pread(fd, size - 5, past, dir + "/f", "range"), InputError);
  ::close(fd);
}

TEST(DirectIo, WriteStreamGivesTheBytesOfAPlainWrite) {
  const std::string dir = testing::fresh_temp_dir("direct-write");
  std::mt19937 rng(5);
  for (const size_t total : {size_t{0}, size_t{1}, size_t{4095}, size_t{4096}, size_t{4097}, size_t{65536 * 3 + 17},
                             size_t{(1u << 20) + 4096}}) {
    for (const size_t prefix : {size_t{0}, size_t{8}, size_t{4100}}) {
      const std::vector<std::byte> want = random_bytes(prefix + total, static_cast<uint32_t>(total * 31 + prefix));
      const std::string path = dir + "/f" + std::to_string(total) + "-" + std::to_string(prefix);
      // The prefix is already in the file, as a header written through the page cache would be.
      write_file(path, std::vector<std::byte>(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(prefix)));
      std::optional<DirectWriteStream> s = DirectWriteStream::open(path, prefix, 65536);
      if (!s) GTEST_SKIP() << "this file system refuses O_DIRECT";
      size_t at = prefix;
      while (at < want.size()) {
        const size_t n = std::min<size_t>(want.size() - at, 1 + rng() % 70000);
        s->append(std::span(want).subspan(at, n));
        at += n;
      }
      EXPECT_EQ(s->size(), want.size());
      s->finish();
      EXPECT_TRUE(read_file(path) == want) << total << " after a prefix of " << prefix;
      EXPECT_THROW(s->append(std::span(want).first(std::min<size_t>(1, want.size()))), Error);
    }
  }
}

}  // namespace
}  // namespace fp4kit::io
