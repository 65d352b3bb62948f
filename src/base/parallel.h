#pragma once
// Data-parallel loops over index ranges. Work is cut into fixed pieces that do not depend on the
// thread count, so results never do either.
#include <cstddef>
#include <functional>

namespace fp4kit {

// Number of worker threads to use by default (hardware concurrency, at least 1).
unsigned default_threads();

// Calls fn(begin, end) over [0, n) in pieces of `grain` items (the last may be shorter), on up
// to `threads` threads. The first exception thrown by fn is rethrown after all threads stop.
void parallel_for(size_t n, size_t grain, unsigned threads,
                  const std::function<void(size_t begin, size_t end)>& fn);

}  // namespace fp4kit
