#include "engine/compressor.h"

#include <cmath>

#include "engine/ops.h"

namespace fp4kit::engine {

void compressor_append(CompressorState& s, const CompressorWeights& w, const float* kv, const float* gate, int64_t n,
                       const Rope& rope, float rms_eps) {
  const int64_t m = w.ratio, d = w.width, rw = w.row_width();
  s.pending_kv.insert(s.pending_kv.end(), kv, kv + n * rw);
  s.pending_gate.insert(s.pending_gate.end(), gate, gate + n * rw);
  int64_t pending = static_cast<int64_t>(s.pending_kv.size()) / rw;
  int64_t consumed = 0;
  std::vector<float> z(static_cast<size_t>(m * rw)), entry(static_cast<size_t>(d));
  std::vector<float> slot_z, slot_v;
  while (pending - consumed >= m) {
    const float* k = s.pending_kv.data() + consumed * rw;
    const float* g = s.pending_gate.data() + consumed * rw;
    for (int64_t i = 0; i < m * rw; ++i) z[i] = g[i] + w.ape[i];
    const bool have_previous = w.overlap && !s.overlap_kv.empty();
    for (int64_t ch = 0; ch < d; ++ch) {
      // Slots: (overlap only) the previous window's Ca half, then this window's Cb half (or its only half).
      slot_z.clear();
      slot_v.clear();
      if (have_previous)
        for (int64_t i = 0; i < m; ++i) slot_z.push_back(s.overlap_gate[i * d + ch]), slot_v.push_back(s.overlap_kv[i * d + ch]);
      const int64_t off = w.overlap ? d : 0;
      for (int64_t i = 0; i < m; ++i) slot_z.push_back(z[i * rw + off + ch]), slot_v.push_back(k[i * rw + off + ch]);
      float mx = -INFINITY;
      for (float v : slot_z) mx = std::max(mx, v);
      float sum = 0;
      for (float& v : slot_z) sum += (v = std::exp(v - mx));
      float e = 0;
      for (size_t i = 0; i < slot_z.size(); ++i) e += (slot_z[i] / sum) * slot_v[i];
      entry[ch] = e;
    }
    if (w.overlap) {
      s.overlap_kv.resize(static_cast<size_t>(m * d));
      s.overlap_gate.resize(static_cast<size_t>(m * d));
      for (int64_t i = 0; i < m; ++i)
        for (int64_t ch = 0; ch < d; ++ch) {
          s.overlap_kv[i * d + ch] = k[i * rw + ch];
          s.overlap_gate[i * d + ch] = z[i * rw + ch];
        }
    }
    rms_norm(entry.data(), static_cast<size_t>(d), w.norm, rms_eps, entry.data());
    rope.apply(entry.data() + d - rope.dim(), s.count * m);
    s.entries.insert(s.entries.end(), entry.begin(), entry.end());
    ++s.count;
    consumed += m;
  }
  s.pending_kv.erase(s.pending_kv.begin(), s.pending_kv.begin() + consumed * rw);
  s.pending_gate.erase(s.pending_gate.begin(), s.pending_gate.begin() + consumed * rw);
}

}  // namespace fp4kit::engine
