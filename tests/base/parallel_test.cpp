// parallel_for over the process's worker threads: every index exactly once at any thread count, the
// first exception rethrown with the workers still usable, nested loops and loops started from
// several threads at once finishing (no deadlock), more threads asked for than cores.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "base/parallel.h"

namespace fp4kit {
namespace {

// Counts how often each index of [0, n) was visited; a piece outside [0, n) or with begin >= end
// counts as a failure.
struct Visits {
  explicit Visits(size_t n) : count(n) {}
  std::vector<std::atomic<int>> count;
  std::atomic<int> bad_pieces{0};
  void visit(size_t begin, size_t end) {
    if (begin >= end || end > count.size()) {
      ++bad_pieces;
      return;
    }
    for (size_t i = begin; i < end; ++i) ++count[i];
  }
  bool each_once() const {
    for (const auto& c : count)
      if (c.load() != 1) return false;
    return bad_pieces.load() == 0;
  }
};

TEST(ParallelFor, EveryIndexOnceAtAnyThreadCountAndGrain) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{1000}, size_t{4097}})
    for (size_t grain : {size_t{0}, size_t{1}, size_t{3}, size_t{64}, size_t{5000}})
      for (unsigned threads : {0u, 1u, 2u, 3u, 8u, 33u}) {
        Visits v(n);
        parallel_for(n, grain, threads, [&](size_t b, size_t e) { v.visit(b, e); });
        EXPECT_TRUE(v.each_once()) << "n " << n << " grain " << grain << " threads " << threads;
      }
}

TEST(ParallelFor, PiecesDoNotDependOnTheThreadCount) {
  // The pieces handed out are [k * grain, min(n, (k + 1) * grain)), whatever runs them.
  for (unsigned threads : {1u, 2u, 5u, 16u}) {
    std::vector<std::atomic<size_t>> begin_of(100), end_of(100);
    parallel_for(995, 10, threads, [&](size_t b, size_t e) {
      begin_of[b / 10] = b;
      end_of[b / 10] = e;
    });
    for (size_t k = 0; k < 100; ++k) {
      EXPECT_EQ(begin_of[k].load(), 10 * k) << "piece " << k << " threads " << threads;
      EXPECT_EQ(end_of[k].load(), std::min<size_t>(995, 10 * (k + 1))) << "piece " << k << " threads " << threads;
    }
  }
}

TEST(ParallelFor, TheFirstExceptionIsRethrownAndTheWorkersGoOn) {
  for (int round = 0; round < 20; ++round) {
    std::atomic<int> ran{0};
    try {
      parallel_for(200, 1, 4, [&](size_t b, size_t) {
        ++ran;
        if (b == 37) throw std::runtime_error("piece 37");
      });
      ADD_FAILURE() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "piece 37");
    }
    EXPECT_GE(ran.load(), 1);
    // The workers are free again: a loop after it runs whole.
    Visits v(500);
    parallel_for(500, 7, 4, [&](size_t b, size_t e) { v.visit(b, e); });
    ASSERT_TRUE(v.each_once()) << "round " << round;
  }
}

TEST(ParallelFor, NestedLoopsFinish) {
  // Three levels, each asking for more threads than there are cores: every innermost index once.
  Visits v(8 * 8 * 50);
  parallel_for(8, 1, 6, [&](size_t a, size_t) {
    parallel_for(8, 1, 6, [&](size_t b, size_t) {
      parallel_for(50, 3, 6, [&](size_t c0, size_t c1) { v.visit((a * 8 + b) * 50 + c0, (a * 8 + b) * 50 + c1); });
    });
  });
  EXPECT_TRUE(v.each_once());
}

TEST(ParallelFor, LoopsFromSeveralThreadsAtOnceFinish) {
  constexpr int kCallers = 6;
  std::vector<std::unique_ptr<Visits>> visits;
  for (int c = 0; c < kCallers; ++c) visits.push_back(std::make_unique<Visits>(3000));
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c)
    callers.emplace_back([&, c] {
      for (int round = 0; round < 10; ++round)
        parallel_for(300, 1, 3, [&](size_t b, size_t e) { visits[c]->visit(round * 300 + b, round * 300 + e); });
    });
  for (auto& t : callers) t.join();
  for (int c = 0; c < kCallers; ++c) EXPECT_TRUE(visits[c]->each_once()) << "caller " << c;
}

}  // namespace
}  // namespace fp4kit
