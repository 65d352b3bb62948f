// convert, dequant and calibrate killed with SIGKILL from outside (no hook) at 20 random moments
// each, on the three-shard tiny checkpoint, then resumed with --resume: every time the output is
// byte for byte that of an uninterrupted run. The moments are uniform over the shortest duration of
// a whole run seen so far (the uninterrupted one, and every attempt that ended before its kill),
// from a fixed seed. A kill that lands after the process ended is resumed and compared too, but
// does not count: attempts go on until 20 kills have landed mid-run, at most 60 attempts, so that a
// machine whose load drops after the first run (the runs get faster) cannot leave the test with too
// few kills to prove anything.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "convert/dequant_test_util.h"
#include "run_command.h"
#include "test_data.h"

namespace fp4kit::testing {
namespace {

namespace fs = std::filesystem;

constexpr int kKills = 20, kMaxAttempts = 60;

// Every regular file under `path` (a directory, or one file) with its bytes, by relative path.
std::map<std::string, std::string> snapshot(const std::string& path) {
  std::map<std::string, std::string> out;
  auto read = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  if (fs::is_regular_file(path)) {
    out["(the output file)"] = read(path);
    return out;
  }
  if (!fs::exists(path)) return out;
  for (const auto& e : fs::recursive_directory_iterator(path))
    if (e.is_regular_file()) out[fs::relative(e.path(), path).string()] = read(e.path());
  return out;
}

struct Command {
  std::string name;
  std::vector<std::string> args;  // without the output path
  bool output_is_flag;            // calibrate: --out FILE; the others: a positional DST
};

std::vector<std::string> with_output(const Command& c, const std::string& out) {
  std::vector<std::string> a = c.args;
  if (c.output_is_flag) a.insert(a.end(), {"--out", out});
  else a.push_back(out);
  a.push_back("--quiet");
  return a;
}

std::string joined(const std::vector<std::string>& args) {
  std::string s;
  for (const std::string& a : args) s += (s.empty() ? "" : " ") + a;
  return s;
}

class RandomKill : public ::testing::TestWithParam<Command> {};

TEST_P(RandomKill, ResumesToTheUninterruptedOutput) {
#if defined(FP4KIT_SANITIZED_BUILD)
  // Sixty runs killed and resumed cost minutes under ASan; they test the resume logic, which the
  // Release build runs, while the sanitized build's own kill-and-resume tests watch its memory.
  GTEST_SKIP() << "random kills run in the Release build only (the sanitized build keeps CI within its time)";
#endif
  const Command& c = GetParam();
  const std::string dir = fresh_temp_dir("random-kill-" + c.name);
  const std::string ref = dir + "/ref" + (c.output_is_flag ? ".safetensors" : "");
  const auto start = std::chrono::steady_clock::now();
  const CommandResult whole = run_fp4kit(joined(with_output(c, ref)));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  const auto want = snapshot(ref);
  ASSERT_FALSE(want.empty());

  std::mt19937 rng(20261203u + static_cast<unsigned>(c.name.size()));
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  double shortest = seconds;  // the shortest whole run seen
  int landed = 0, attempts = 0;
  for (int k = 0; landed < kKills && k < kMaxAttempts; ++k, ++attempts) {
    const std::string out = dir + "/run" + std::to_string(k) + (c.output_is_flag ? ".safetensors" : "");
    const auto spawned = std::chrono::steady_clock::now();
    const pid_t pid = spawn_fp4kit(with_output(c, out));
    ASSERT_GT(pid, 0);
    std::this_thread::sleep_for(std::chrono::duration<double>(unit(rng) * shortest));
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
      EXPECT_EQ(WTERMSIG(status), SIGKILL);
      ++landed;
    } else {
      ASSERT_TRUE(WIFEXITED(status));
      EXPECT_EQ(WEXITSTATUS(status), 0) << "run " << k << " ended on its own with an error";
      // It ended before the kill: a whole run takes at most this long now.
      shortest = std::min(shortest, std::chrono::duration<double>(std::chrono::steady_clock::now() - spawned).count());
    }
    std::vector<std::string> resume = with_output(c, out);
    resume.push_back("--resume");
    const CommandResult r = run_fp4kit(joined(resume));
    ASSERT_EQ(r.exit_code, 0) << "kill " << k << ": " << r.output;
    EXPECT_TRUE(snapshot(out) == want) << c.name << ": kill " << k << " resumed to different output";
    if (c.output_is_flag) {
      EXPECT_FALSE(fs::exists(out + ".fp4kit-calib")) << "resume state left behind";
    }
  }
  // The moments span the whole run, startup included; 20 must have found the process still working.
  EXPECT_EQ(landed, kKills) << "only " << landed << " of " << attempts << " kills landed before the run ended";
  RecordProperty("kills_mid_run", landed);
  RecordProperty("attempts", attempts);
}

INSTANTIATE_TEST_SUITE_P(
    Commands, RandomKill,
    ::testing::Values(
        Command{"convert", {"convert", test_data("dsv4-tiny"), "--numerics", "modelopt", "--calib",
                            test_data("oracles/dsv4-tiny-modelopt/calib_amax.safetensors"), "--threads", "2"},
                false},
        Command{"dequant", {"dequant", test_data("dsv4-tiny"), "--threads", "2"}, false},
        Command{"calibrate", {"calibrate", test_data("dsv4-tiny"), "--data", test_data("calib/oracle/calib_ids.safetensors"),
                              "--threads", "2"},
                true}),
    [](const auto& param_info) { return param_info.param.name; });

}  // namespace
}  // namespace fp4kit::testing
