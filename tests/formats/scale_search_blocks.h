#pragma once
// Adversarial 16-blocks for the searched NVFP4 scales, and random 16×16 Gram blocks for the
// hessian weighting, shared by the tests of the sweeps and of their fast paths.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "formats/bf16.h"
#include "formats/dtype.h"
#include "formats/e4m3.h"

namespace fp4kit::testing {

inline float e4m3_value(int code) { return E4M3{static_cast<uint8_t>(code)}.to_float(); }

// One adversarial 16-block for a tensor of global amax g: kinds that put values exactly on the
// candidates' grids, on E2M1 decision boundaries, at the E4M3 ends, or make many candidates tie.
inline std::vector<float> adversarial_block(std::mt19937& rng, float g) {
  std::vector<float> x(16, 0.0f);
  std::uniform_int_distribution<int> code(1, 126), kind(0, 13), pos(0, 15);
  auto pick = [&rng](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  std::normal_distribution<float> normal;
  const float grid[] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float bounds[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
  const float unit = g / 2688.0f;  // the scale of E4M3 value 1
  switch (kind(rng)) {
    case 0: break;  // all zero
    case 1: x[pos(rng)] = g; break;
    case 2: x[pos(rng)] = 6.0f * e4m3_value(code(rng)) * unit; break;  // exactly on one candidate's 6
    case 3: {  // constant block
      const float v = e4m3_value(code(rng)) * unit * grid[1 + pick(7)];
      for (float& e : x) e = v;
      break;
    }
    case 4: {  // every element a grid point of one candidate scale
      const float s = e4m3_value(code(rng)) * unit;
      for (float& e : x) e = grid[pick(8)] * s * ((rng() & 1) ? -1.0f : 1.0f);
      break;
    }
    case 5: {  // elements on the decision boundaries of the max scale, and next to them
      const float s = std::fabs(normal(rng)) * g / 6.0f + 1e-30f;
      for (float& e : x) {
        float b = bounds[pick(7)] * s;
        const int nudge = pick(3) - 1;
        if (nudge) b = std::nextafter(b, nudge > 0 ? std::numeric_limits<float>::infinity() : 0.0f);
        e = b;
      }
      x[0] = 6.0f * s;
      break;
    }
    case 6:  // a block far below the global amax: q0 subnormal or near it
      for (float& e : x) e = normal(rng) * g * std::ldexp(1.0f, -(8 + pick(10)));
      break;
    case 7:  // at the top: elements at +-g
      for (float& e : x) e = (rng() & 1) ? g : -g;
      break;
    case 8:  // two levels
      for (int i = 0; i < 16; ++i) x[i] = i % 2 ? g * 0.37f : g * 0.37f / 2.0f;
      break;
    case 9:  // signed zeros and negatives
      for (float& e : x) e = (pick(3) == 0) ? -0.0f : -std::fabs(normal(rng)) * g * 0.3f;
      break;
    case 10: {  // few distinct E4M3-grid values (an FP8 source)
      const float s = g / 448.0f;
      for (float& e : x) e = e4m3_value(1 + pick(126)) * s * ((rng() & 1) ? -1.0f : 1.0f);
      break;
    }
    case 11: {  // one large element and the rest at a fraction of it
      const float big = std::fabs(normal(rng)) * g * 0.5f + g * 0.01f;
      const float r = grid[1 + pick(7)] / 6.0f;
      for (float& e : x) e = big * r;
      x[pos(rng)] = big;
      break;
    }
    default:
      for (float& e : x) e = normal(rng) * g * 0.3f;
      x[pos(rng)] = g * ((rng() & 1) ? 1.0f : -1.0f) * 0.999f;
      break;
  }
  for (float& e : x) e = std::fmin(std::fmax(e, -g), g);
  return x;
}

// Blocks whose two best candidates, block scales s1 and s2, have the same errors in exact arithmetic
// on different elements: pairs q*s1 + d and q*s2 - d, one element's error at s1 the other's at s2
// (q from `multipliers`; d below the distance to any other grid point). Their f32 sums differ only
// by rounding, so the order of the summation decides the choice. `amax` > 0 is added as one element.
inline std::vector<float> mirrored_block(std::mt19937& rng, float s1, float s2, const std::vector<float>& multipliers,
                                         float amax) {
  std::uniform_real_distribution<float> u(0.0f, 0.5f);
  std::vector<float> x(16, 0.0f);
  std::vector<int> order(16);
  for (int i = 0; i < 16; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  const int pairs = 2 + static_cast<int>(rng() % 6);
  for (int p = 0; p < pairs; ++p) {
    const float q = p == 0 ? multipliers[0] : multipliers[rng() % multipliers.size()];
    const float d = std::fabs(q * (s2 - s1)) * std::ldexp(u(rng), -static_cast<int>(rng() % 8));
    const float sign = (rng() & 1) ? -1.0f : 1.0f;
    x[order[2 * p]] = sign * (q * s1 + d);
    x[order[2 * p + 1]] = sign * (q * s2 - d);
  }
  if (amax > 0.0f) x[order[15]] = amax;
  return x;
}

// A random Gram matrix AᵀA of 40 correlated rows: channels share a common factor and differ in size.
inline std::vector<float> random_gram(std::mt19937& rng) {
  std::normal_distribution<double> n;
  std::vector<double> scale(16);
  for (double& s : scale) s = std::exp(1.5 * n(rng));
  std::vector<double> h(256, 0.0);
  for (int r = 0; r < 40; ++r) {
    const double common = n(rng);
    double row[16];
    for (int i = 0; i < 16; ++i) row[i] = scale[static_cast<size_t>(i)] * (0.8 * common + 0.6 * n(rng));
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 16; ++j) h[static_cast<size_t>(i * 16 + j)] += row[i] * row[j];
  }
  return std::vector<float>(h.begin(), h.end());
}

inline std::vector<float> round_to(const std::vector<float>& v, DType dtype) {
  if (dtype != DType::BF16) return v;
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = round_to_bf16(v[i]);
  return out;
}

}  // namespace fp4kit::testing
