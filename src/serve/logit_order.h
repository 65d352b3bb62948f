#pragma once
// Token ids ordered by logit, largest first, ties by id: the order in which sampling walks the
// candidates. order_by_logit_ref is the definition (a comparison sort); order_by_logit gives the
// same ids: a stable radix sort of the logits' bits when most of the vocabulary is wanted (a
// comparison sort of V4's 129280 logits took ~20 ms per token, more than a decode step).
#include <cstdint>
#include <vector>

namespace fp4kit::serve {

// The `keep` first ids of the order (all of them when keep >= vocab). Logits are finite; -0 and +0
// are equal.
std::vector<int32_t> order_by_logit(const float* logits, int64_t vocab, int64_t keep);
// The same into `ids`, whose storage (and this thread's scratch) is reused from call to call: fresh
// megabyte buffers cost their page faults at every token.
void order_by_logit(const float* logits, int64_t vocab, int64_t keep, std::vector<int32_t>& ids);
std::vector<int32_t> order_by_logit_ref(const float* logits, int64_t vocab, int64_t keep);

}  // namespace fp4kit::serve
