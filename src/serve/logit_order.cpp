#include "serve/logit_order.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>

namespace fp4kit::serve {

namespace {

// A key whose unsigned order is the logits' descending order (-0 as +0).
uint32_t descending_key(float logit) {
  const float f = logit + 0.0f;  // -0 + +0 = +0
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // ascending with the float
  return ~u;
}

// Below this share of the vocabulary a partial comparison sort is the cheaper one.
constexpr int64_t kRadixFrom = 2048;

}  // namespace

std::vector<int32_t> order_by_logit_ref(const float* logits, int64_t vocab, int64_t keep) {
  std::vector<int32_t> ids(static_cast<size_t>(vocab));
  std::iota(ids.begin(), ids.end(), 0);
  const auto before = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  keep = std::clamp<int64_t>(keep, 0, vocab);
  std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), before);
  ids.resize(static_cast<size_t>(keep));
  return ids;
}

std::vector<int32_t> order_by_logit(const float* logits, int64_t vocab, int64_t keep) {
  std::vector<int32_t> ids;
  order_by_logit(logits, vocab, keep, ids);
  return ids;
}

void order_by_logit(const float* logits, int64_t vocab, int64_t keep, std::vector<int32_t>& ids) {
  keep = std::clamp<int64_t>(keep, 0, vocab);
  if (keep < kRadixFrom) {
    ids = order_by_logit_ref(logits, vocab, keep);
    return;
  }
  // LSD radix sort, 8 bits a pass, stable: starting from id order, equal keys stay in id order.
  const size_t n = static_cast<size_t>(vocab);
  thread_local std::vector<uint32_t> key, key_tmp;
  thread_local std::vector<int32_t> ids_tmp;
  key.resize(n), key_tmp.resize(n), ids_tmp.resize(n), ids.resize(n);
  for (size_t i = 0; i < n; ++i) key[i] = descending_key(logits[i]), ids[i] = static_cast<int32_t>(i);
  for (int shift = 0; shift < 32; shift += 8) {
    std::array<size_t, 257> start{};
    for (size_t i = 0; i < n; ++i) ++start[((key[i] >> shift) & 0xff) + 1];
    if (start[((key[0] >> shift) & 0xff) + 1] == n) continue;  // one bucket: the pass changes nothing
    for (size_t b = 1; b < start.size(); ++b) start[b] += start[b - 1];
    for (size_t i = 0; i < n; ++i) {
      const size_t at = start[(key[i] >> shift) & 0xff]++;
      key_tmp[at] = key[i], ids_tmp[at] = ids[i];
    }
    key.swap(key_tmp), ids.swap(ids_tmp);
  }
  ids.resize(static_cast<size_t>(keep));
}

}  // namespace fp4kit::serve
