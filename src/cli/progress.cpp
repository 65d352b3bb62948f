#include "cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace fp4kit::cli {

bool stderr_is_terminal() { return isatty(STDERR_FILENO) == 1; }

Progress::Progress(std::string label, bool enabled)
    : label_(std::move(label)), enabled_(enabled), start_(std::chrono::steady_clock::now()), last_(start_) {}

Progress::~Progress() { finish(); }

void Progress::update(uint64_t done, uint64_t total) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (done < total && now - last_ < std::chrono::milliseconds(200)) return;
  last_ = now;
  const double secs = std::chrono::duration<double>(now - start_).count();
  const double gbps = secs > 0 ? static_cast<double>(done) / secs / 1e9 : 0.0;
  const double eta = (gbps > 0 && total > done) ? static_cast<double>(total - done) / 1e9 / gbps : 0.0;
  const double pct = total ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 100.0;
  std::fprintf(stderr, "\r%s %5.1f%%  %.2f/%.2f GB  %.2f GB/s  ETA %.0fs   ", label_.c_str(), pct,
               static_cast<double>(done) / 1e9, static_cast<double>(total) / 1e9, gbps, eta);
  drawn_ = true;
}

void Progress::finish() {
  if (drawn_) std::fputc('\n', stderr);
  drawn_ = false;
}

}  // namespace fp4kit::cli
