#pragma once
// Watching the input of every linear projection, for calibration (activation amax per linear input).
//
// The engine calls on_linear_input() on the calling thread, one projection at a time, in a fixed
// order (the order the forward pass runs them), with the f32 rows that are about to be multiplied by
// the weight. Names are the checkpoint's module names (the weight's name minus ".weight"):
//   layers.N.attn.wq_a, wq_b, wkv, wo_a (the full grouped input [tokens, heads*head_dim], all
//   groups), wo_b; layers.N.attn.compressor.wkv/wgate, layers.N.attn.indexer.wq_b/weights_proj,
//   layers.N.attn.indexer.compressor.wkv/wgate; layers.N.ffn.gate;
//   layers.N.ffn.shared_experts.w1/w3/w2;
//   layers.N.ffn.experts.E.w1/w3 (the rows of the tokens routed to E) and .w2 (h = silu(min(g,l)) *
//   clamp(u) of those tokens, unweighted as transformers feeds it, with the routing weight of each row
//   so that a caller can form weight*h, as DeepSeek's own code and ModelOpt feed w2).
// Rows are tokens of the batch in state order (sequence-major); `tokens` says which token each row is
// when the rows are a subset (experts), and is empty when row r is token r.
//
// With EngineOptions::observe_all_experts, every expert's w1/w3/w2 inputs cover ALL tokens of the
// layer (tokens = 0..T-1); rows of tokens not routed to the expert have routing weight 0. This is
// for the observer only: the routed output is the same as without the option.
#include <cstdint>
#include <span>
#include <string_view>

struct CUstream_st;  // cudaStream_t is CUstream_st*: named here without the CUDA headers

namespace fp4kit::engine {

struct LinearInput {
  std::string_view name;
  const float* x = nullptr;  // [rows, cols], row-major
  int64_t rows = 0, cols = 0;
  std::span<const int64_t> tokens;          // empty: row r is token r of the state
  std::span<const float> routing_weights;   // experts.E.w2 only: one per row
};

// What a pass that keeps its activations on a GPU reports instead of the rows themselves (copying
// every linear input back would cost more than the pass): max |x| over the input, NaN if any
// element is NaN, and for experts.E.w2 also max over rows of |routing weight × max |row||, the value
// a caller that feeds w2 weight·h wants (the same as forming the products, since the weights are
// >= 0 and rounding is monotone). Same names, order and rows as on_linear_input.
struct LinearAmax {
  std::string_view name;
  float amax = 0.0f;
  float weighted_amax = 0.0f;  // experts.E.w2 only; amax otherwise
  int64_t rows = 0;
};

// The rows themselves where they are, in GPU memory, for an observer that sums over them on the
// device (XᵀX statistics): a pass on the GPU shows them after on_linear_amax when the observer
// wants_device_rows(). Same names and order; the pass may run a layer's sequences in chunks, and
// then shows each projection once per chunk (`last_chunk`: no later chunk of this layer shows it
// again), so the rows of all chunks together are on_linear_input's. Routed experts' rows are those
// of on_linear_input (the tokens routed to the expert, or with observe_all_experts every token,
// weight 0 where not routed); a BF16 pass that runs the routed experts through its grouped kernels
// shows their rows as those kernels read them, in BF16.
struct DeviceLinearInput {
  std::string_view name;
  const float* x = nullptr;          // [rows, cols] row-major F32, or
  const uint16_t* x_bf16 = nullptr;  // [rows, cols] row-major BF16 bits (exactly one of the two is set)
  int64_t rows = 0, cols = 0;
  const float* routing_weights = nullptr;  // experts.E.w2 only: one per row, on the device
  bool last_chunk = true;
  // The pass's stream: work queued on it sees the rows, and the pass overwrites or frees them only
  // after that work.
  CUstream_st* stream = nullptr;
};

class LinearObserver {
 public:
  virtual ~LinearObserver() = default;
  virtual void on_linear_input(const LinearInput& input) = 0;
  // Passes on the GPU call this instead; an observer that needs the rows and cannot take them on
  // the device (wants_device_rows) does not override it.
  virtual void on_linear_amax(const LinearAmax& input);
  virtual bool wants_device_rows() const { return false; }
  virtual void on_linear_device_rows(const DeviceLinearInput&) {}
};

}  // namespace fp4kit::engine
