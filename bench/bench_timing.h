#pragma once
// The timing the CPU benchmarks share (simd_bench, formats_bench): the best wall time of several runs.
#include <algorithm>
#include <chrono>
#include <functional>

namespace fp4kit::bench {

// Runs fn reps times; returns the shortest run's wall time in seconds.
inline double time_best(int reps, const std::function<void()>& fn) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace fp4kit::bench
