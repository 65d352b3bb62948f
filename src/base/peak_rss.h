#pragma once
// The most resident memory this process has held so far (getrusage's ru_maxrss), for the reports
// of long jobs that promise bounded memory; 0 where the system does not say.
#include <cstdint>

namespace fp4kit {

uint64_t peak_rss_bytes();

}  // namespace fp4kit
