#include "run_command.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>

#include "test_data.h"

namespace fp4kit::testing {

CommandResult run_fp4kit(const std::string& args) {
  CommandResult r;
  const std::string cmd = fp4kit_binary() + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace fp4kit::testing
