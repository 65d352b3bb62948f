#include "io/atomic_file.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io_test_util.h"
#include "test_data.h"

namespace fp4kit::io {
namespace {

namespace fs = std::filesystem;
using testing::expect_error;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(AtomicFile, UncommittedLeavesNothing) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("atomic-abandon");
  {
    AtomicFile f(dir + "/out.bin");
    f.write("partial");
    EXPECT_EQ(f.bytes_written(), 7u);
    EXPECT_EQ(entries(dir).size(), 1u);  // only the temporary
    const std::string temp = fs::path(f.temp_path()).filename().string();
    EXPECT_TRUE(temp.starts_with(".out.bin.tmp-" + std::to_string(::getpid()) + "-")) << temp;
  }
  EXPECT_TRUE(entries(dir).empty());
}

TEST(AtomicFile, CommitPublishesTheCompleteFile) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("atomic-commit");
  AtomicFile f(dir + "/out.bin");
  f.write("hello ");
  const std::byte raw[] = {std::byte{'w'}, std::byte{'o'}, std::byte{'r'}, std::byte{'l'}, std::byte{'d'}};
  f.write(raw);
  EXPECT_FALSE(fs::exists(dir + "/out.bin"));
  f.commit();
  EXPECT_EQ(slurp(dir + "/out.bin"), "hello world");
  EXPECT_EQ(f.bytes_written(), 11u);
  EXPECT_EQ(entries(dir), std::vector<std::string>{"out.bin"});
  expect_error<Error>([&] { f.write("more"); }, {dir + "/out.bin", "after commit"});
  expect_error<Error>([&] { f.commit(); }, {dir + "/out.bin", "twice"});
}

TEST(AtomicFile, ReplacesAnExistingFileOnlyAtCommit) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("atomic-replace");
  const std::string path = dir + "/index.json";
  write_file_atomic(path, "old");
  {
    AtomicFile f(path);
    f.write("new contents");
    EXPECT_EQ(slurp(path), "old");
    f.commit();
  }
  EXPECT_EQ(slurp(path), "new contents");
  {
    AtomicFile abandoned(path);
    abandoned.write("never published");
  }
  EXPECT_EQ(slurp(path), "new contents");
  EXPECT_EQ(entries(dir), std::vector<std::string>{"index.json"});
}

TEST(AtomicFile, WorksWithARelativePath) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("atomic-relative");
  const fs::path old_cwd = fs::current_path();
  fs::current_path(dir);
  write_file_atomic("plain.txt", "x");
  fs::current_path(old_cwd);
  EXPECT_EQ(slurp(dir + "/plain.txt"), "x");
}

TEST(AtomicFile, MoveTransfersOwnership) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("atomic-move");
  AtomicFile a(dir + "/m.bin");
  a.write("ab");
  AtomicFile b(std::move(a));
  b.write("cd");
  b.commit();
  EXPECT_EQ(slurp(dir + "/m.bin"), "abcd");
}

TEST(AtomicFile, UncreatableTemporaryNamesThePath) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("atomic-uncreatable");
  write_file_atomic(dir + "/file", "x");
  expect_error<Error>([&] { AtomicFile f(dir + "/file/out.bin"); }, {dir + "/file/out.bin", "Not a directory"});
  expect_error<Error>([&] { AtomicFile f(dir + "/missing/out.bin"); }, {dir + "/missing/out.bin", "No such file"});
  // /proc accepts no new files, even from root.
  expect_error<Error>([&] { AtomicFile f("/proc/fp4kit-test.bin"); }, {"/proc/fp4kit-test.bin", "cannot create"});
}

TEST(AtomicFile, ReadOnlyDirectoryNamesThePath) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  const std::string dir = fp4kit::testing::fresh_temp_dir("atomic-readonly");
  ASSERT_EQ(::chmod(dir.c_str(), 0555), 0);
  expect_error<Error>([&] { AtomicFile f(dir + "/out.bin"); }, {dir + "/out.bin", "Permission denied"});
  ::chmod(dir.c_str(), 0755);
}

// A write that the system refuses part-way (here: the file size limit, which behaves like a full
// disk for this process) throws, refuses commit, and leaves no file behind.
TEST(AtomicFile, WriteErrorsThrowAndNothingIsPublished) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("atomic-full");
  const std::string path = dir + "/big.bin";
  struct rlimit old_limit {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  {
    AtomicFile f(path);
    const std::vector<std::byte> data(10000, std::byte{1});
    expect_error<Error>([&] { f.write(data); }, {path, "cannot write", "File too large"});
    EXPECT_EQ(f.bytes_written(), 4096u);
    expect_error<Error>([&] { f.commit(); }, {path, "earlier write failed"});
  }
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_TRUE(entries(dir).empty());
}

}  // namespace
}  // namespace fp4kit::io
