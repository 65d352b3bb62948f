#include "gpu_engine/gpu_forward.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>

#include "base/error.h"
#include "cuda/device.h"
#include "cuda/elementwise.h"
#include "cuda/moe_experts.h"
#include "cuda/pinned_host_allocator.h"
#include "cuda/runtime.h"
#include "cuda/token_draw.h"
#include "cuda/v4_attention.h"
#include "cuda/v4_hyper_connection.h"
#include "cuda/v4_moe.h"
#include "cuda/v4_norm_rope.h"
#include "cuda/weight_codecs.h"
#include "engine/layer_groups.h"
#include "gpu_engine/device_group.h"
#include "gpu_engine/gpu_linear.h"
#include "gpu_engine/stage_clock.h"
#include "engine/rope.h"
#include "io/quote_name.h"
#include "io/tensor_prefetcher.h"
#include "models/stored_weight.h"

namespace fp4kit::gpu_engine {

using engine::AttentionKind;
using engine::ModelConfig;

namespace {

// F32 device copy of a host tensor (or vector).
cuda::DeviceBuffer upload(const std::vector<float>& v, const cuda::Stream& s, const std::string& what) {
  cuda::DeviceBuffer d(std::max<size_t>(v.size(), 1) * sizeof(float), what);
  if (!v.empty()) cuda::copy_to_device(d.data(), v.data(), v.size() * sizeof(float), s);
  return d;
}

template <class T>
cuda::DeviceBuffer upload_any(const std::vector<T>& v, const cuda::Stream& s, const std::string& what) {
  cuda::DeviceBuffer d(std::max<size_t>(v.size(), 1) * sizeof(T), what);
  if (!v.empty()) cuda::copy_to_device(d.data(), v.data(), v.size() * sizeof(T), s);
  return d;
}

cuda::DeviceBuffer floats(int64_t n, const std::string& what) {
  return cuda::DeviceBuffer(static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(float), what);
}

// Device bytes one token needs while a layer computes it, besides its hidden streams: the larger of
// the attention's and the mixture's buffers, plus the sublayer input and output, the products' BF16
// input and the sublayer input's own BF16 copy (read by several products). An upper bound of what
// a layer allocates per token (the full-size V4 layers measure 10-15 % under it).
int64_t layer_bytes_per_token(const ModelConfig& cfg) {
  const auto& b = cfg.base;
  const int64_t H = b.hidden_size, hc = cfg.hc(), nh = b.num_attention_heads, D = b.head_dim;
  const int64_t qr = b.q_lora_rank, GR = b.o_groups * b.o_lora_rank, k = b.num_experts_per_tok;
  const int64_t I = b.moe_intermediate_size, Is = I * b.n_shared_experts, E = b.n_routed_experts;
  const int64_t nI = b.index_n_heads, dI = b.index_head_dim, top = b.index_topk;
  const int64_t hc_bytes = 4 * (2 * (2 + hc) * hc + 3 * hc + hc * hc);
  const int64_t sublayer = 2 * H * 4 + hc_bytes + H * 2;
  const int64_t bf16_input = std::max({nh * D, H, GR, qr, I, Is}) * 2;
  const int64_t attention = qr * 4 + 2 * nh * D * 4 + D * 4 + 2 * GR * 4 + nI * dI * 4 + nI * 4 + top * 4 + 4 +
                            2 * 2 * 2 * (D + dI) * 4;
  const int64_t mixture = E * 4 + k * 8 + 4 + H * 4 + k * (5 * 4 + H * 2 + I * 2 + H * 4) + 3 * I * 4 + 2 * Is * 4 +
                          H * 4 + 4;
  return sublayer + bf16_input + std::max(attention, mixture);
}

// The same for the head: the final hidden row, its BF16 copy and the logits.
int64_t head_bytes_per_token(const ModelConfig& cfg) {
  const int64_t H = cfg.hidden(), hc = cfg.hc();
  return H * 4 + H * 2 + cfg.base.vocab_size * 4 + 4 * (2 * hc + hc * hc);
}

// Bytes as GiB, for messages.
std::string gib(size_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f GiB", static_cast<double>(bytes) / double(1ull << 30));
  return b;
}

}  // namespace

// One layer's key-side rows of every sequence of a batch that will be continued: the shared KV
// head's rows and the compressors' projected inputs, [batch, rows, width] each, positions
// 0 .. past-1 filled. The compressed entries are pooled again from these rows at every step: an
// entry is a pure function of its window's rows, so the result is the whole sequence's.
struct LayerCache {
  int64_t rows = 0;  // capacity per sequence
  cuda::DeviceBuffer kv, cmp_kv, cmp_gate, idx_kv, idx_gate;
};

// Tokens of a step that attend as one SequenceBatch: tokens [first_token, first_token + sb.tokens())
// of the step, sequence-major, continuing `cache` (null: none) from its sequence first_sequence on.
struct AttentionRun {
  cuda::SequenceBatch sb;
  LayerCache* cache = nullptr;
  int64_t first_sequence = 0;
  int64_t first_token = 0;
};

struct GpuForward::Impl {
  ModelConfig cfg;
  io::Checkpoint ckpt;
  StoredWeights stored;
  engine::Rope main_rope, compress_rope;
  cuda::Stream stream;
  cuda::DeviceBuffer main_freq, compress_freq;
  DeviceGroup group;  // the stored bytes of the group being computed
  GpuLinear lin;
  engine::LinearObserver* observer = nullptr;
  bool all_experts = false;  // every expert's inputs cover all tokens, for the observer
  bool last_chunk = true;    // no later chunk of the layer that runs shows the observer its inputs again
  cuda::DeviceBuffer amax_out{8, "observer amax"}, amax_scratch;
  StageClock clock;  // the compute of the current step by stage
  // Each hash-routed layer's tid2eid [vocab, k] on the device, read once per pass (6 MB a layer at
  // V4's vocabulary: reading and uploading it again cost more than a decode step's products).
  std::map<int64_t, cuda::DeviceBuffer> hash_tables;
  size_t budget = 0;  // device bytes the pass may hold (--gpu-memory, or what was free at the start)
  // The forward pass's tensor groups (engine/layer_groups.h): embedding, each layer, head.
  std::vector<io::TensorGroup> groups;
  // Resident mode: each group's device copy, kept after its first use; `group` holds the one in use
  // (swapped in and out). Streaming mode: empty, and `group` is reloaded for each group.
  bool keep_resident = false;
  std::vector<DeviceGroup> resident;
  int64_t current_group = -1;  // the index `group` holds, in resident mode

  int64_t decode_once_expert_rows;

  // A layer's routed experts as the grouped kernels read them, built once per upload of its group (a
  // resident group keeps its generation, so later steps reuse them; naming and checking 3·E weights
  // costs more host time than a decode step's products).
  struct RoutedExperts {
    uint64_t generation = 0;
    bool grouped = false;  // false: the experts' storage cannot go through the grouped kernels
    std::vector<cuda::GemmWeight> w1, w3, w2;
    // BF16 copies of weights whose stored form the kernels cannot read (the descriptors point into
    // them): not kept past the call that made them, which would hold a second copy of the experts.
    std::vector<LinearWeight> copies;
    std::unique_ptr<cuda::MoeExpertTable> table;
  };
  std::map<int64_t, RoutedExperts> routed_experts;
  // weight()'s decoded F32 copies, with the generation of the upload each came from.
  std::map<std::string, std::pair<uint64_t, cuda::DeviceBuffer>, std::less<>> decoded_small;
  // The grouped path's workspace for calls of up to kKeptMoeTokens tokens (decode steps), kept: making
  // one costs a pinned host allocation, and dropping it a device synchronisation.
  static constexpr int64_t kKeptMoeTokens = 64;
  std::unique_ptr<cuda::MoeWorkspace> kept_moe_workspace;

  // A step's small host -> device copies (ids, positions, the checks' first values) go from
  // page-locked memory, each to its own part of it: a copy from pageable memory costs the host
  // more and first waits for the stream's work. When the memory runs out the stream is
  // synchronised (every copy from it is done: at a step's start the stream is idle) and it is
  // used again from its start.
  cuda::PinnedBuffer staging;
  size_t staged = 0;
  static constexpr size_t kStagingBytes = size_t{1} << 20;
  void upload_small(void* dst, const void* src, size_t bytes) {
    if (bytes == 0) return;
    if (bytes > staging.bytes() - staged) {
      if (staging.bytes()) stream.synchronize("staged uploads");
      staged = 0;
      if (bytes > staging.bytes()) staging = cuda::PinnedBuffer(std::max(kStagingBytes, 2 * bytes), "staged uploads");
    }
    uint8_t* at = staging.data<uint8_t>() + staged;
    std::memcpy(at, src, bytes);
    cuda::copy_to_device(dst, at, bytes, stream);
    staged += (bytes + 63) / 64 * 64;
  }
  template <class T>
  cuda::DeviceBuffer upload_small(const std::vector<T>& v, const std::string& what) {
    cuda::DeviceBuffer d(std::max<size_t>(v.size(), 1) * sizeof(T), what);
    upload_small(d.data(), v.data(), v.size() * sizeof(T));
    return d;
  }

  // A decode step's checks, read back once at its end instead of where each is made (every read-back
  // is a synchronisation that empties the device's queue of work): the first non-finite value of the
  // embedding's and of each layer's output, and each layer's router's first bad token. Kernels after
  // a bad route stay in bounds (moe_route counts a slot with an id outside the experts among the
  // last expert's rows, computed like any other), so only the error's place is late, not its
  // detection. Active inside advance_together().
  struct StepChecks {
    bool active = false;
    int64_t sites = 0;         // the embedding, then each layer
    int64_t values = 0;        // values per site's output: "no non-finite value" is this index
    std::vector<int64_t> ids;  // the step's tokens, for the routing message
    std::vector<int64_t> pasts;  // each sequence's tokens before the step's, for the message
    int64_t tokens_each = 1;     // new tokens per sequence
    cuda::DeviceBuffer device;  // int64 first non-finite [sites], then int64 bad token + 1 [sites]
    std::vector<int64_t> host;  // the initial values
    cuda::PinnedBuffer read_back;  // the values at the step's end (page-locked: an asynchronous copy)
    // Where site's output is: for messages.
    std::string where(int64_t site) const {
      return site == 0 ? std::string("the token embedding")
                       : "layer " + std::to_string(site - 1) + " (a step of " + std::to_string(pasts.size()) + " sequences)";
    }
  } step_checks;

  void begin_step_checks(int64_t layers, int64_t values, const std::vector<int64_t>& ids, const std::vector<int64_t>& pasts) {
    StepChecks& c = step_checks;
    const int64_t sequences = static_cast<int64_t>(pasts.size());
    c.sites = 1 + layers, c.values = values, c.ids = ids, c.pasts = pasts;
    c.tokens_each = static_cast<int64_t>(ids.size()) / std::max<int64_t>(sequences, 1);
    const size_t bytes = static_cast<size_t>(2 * c.sites) * 8;
    if (c.device.bytes() != bytes) {  // kept: the same size every step
      c.device = cuda::DeviceBuffer(bytes, "step checks");
      c.read_back = cuda::PinnedBuffer(bytes, "step checks");
    }
    c.host.assign(static_cast<size_t>(2 * c.sites), 0);
    std::fill(c.host.begin(), c.host.begin() + c.sites, values);
    upload_small(c.device.data(), c.host.data(), c.host.size() * 8);
    c.active = true;
  }
  int64_t* first_nonfinite_slot(int64_t site) { return step_checks.device.data<int64_t>() + site; }
  int64_t* bad_route_slot(int64_t layer) { return step_checks.device.data<int64_t>() + step_checks.sites + 1 + layer; }
  // Queues the checks' copy to the host, ordered after everything queued before it: the host goes
  // on queueing (the head), and throw_step_check_failures() reads the values once the stream is done.
  void read_step_checks() {
    cuda::copy_to_host(step_checks.read_back.data(), step_checks.device.data(), step_checks.device.bytes(), stream);
  }
  // The first failure in the order the checks would have thrown: each site's routing, then its output.
  void throw_step_check_failures() {
    stream.synchronize("step checks");  // (the step's last read-back waited for it already)
    const StepChecks& c = step_checks;
    const int64_t* values = c.read_back.data<int64_t>();
    const int64_t width = cfg.hc() * cfg.hidden();
    for (int64_t site = 0; site < c.sites; ++site) {
      const int64_t bad = values[c.sites + site], at = values[site];
      if (bad > 0)
        throw InputError(ckpt.dir() + ": tensor 'layers." + std::to_string(site - 1) + ".ffn.gate.tid2eid' routes token " +
                         std::to_string(bad - 1) + " (id " + std::to_string(c.ids[static_cast<size_t>(bad - 1)]) +
                         ") outside the experts or the vocabulary");
      if (at < c.values) {
        const int64_t token = at / width, sequence = token / c.tokens_each;
        throw InputError(ckpt.dir() + ": non-finite activation in the output of " + c.where(site) +
                         " (sequence " + std::to_string(sequence) + ", position " +
                         std::to_string(c.pasts[static_cast<size_t>(sequence)] + token % c.tokens_each) + ")");
      }
    }
  }

  Impl(const std::string& dir, const GpuForwardOptions& o)
      : cfg(ModelConfig::load(dir)),
        ckpt(io::Checkpoint::open(dir)),
        stored(ckpt),
        main_rope(cfg.rope_dim, cfg.rope_theta, engine::YarnParams{}),
        compress_rope(cfg.rope_dim, cfg.compress_rope_theta, cfg.yarn),
        lin(o.precision, group, stored, ckpt.dir(), stream, o.decode_once_rows),
        observer(o.observer),
        all_experts(o.observe_all_experts),
        decode_once_expert_rows(o.decode_once_expert_rows) {
    groups = engine::forward_tensor_groups(ckpt, cfg.layers());
    main_freq = upload(main_rope.inv_freq(), stream, "rope frequencies");
    compress_freq = upload(compress_rope.inv_freq(), stream, "compress rope frequencies");
  }

  // The observer's view of a linear input x [rows, cols] on the device: its amax values, and the
  // rows themselves where it wants them.
  void observe(const std::string& name, const float* x, int64_t rows, int64_t cols, const float* row_weights = nullptr) {
    if (!observer) return;
    if (amax_scratch.bytes() < static_cast<size_t>(std::max<int64_t>(rows, 1)) * 4) amax_scratch = floats(rows, "amax scratch");
    cuda::linear_amax(x, rows, cols, row_weights, amax_out.data<float>(), amax_scratch.data<float>(), stream.get());
    float v[2];
    cuda::copy_to_host(v, amax_out.data(), sizeof v, stream);
    stream.synchronize("observer amax");
    observer->on_linear_amax({name, v[0], v[1], rows});
    if (observer->wants_device_rows()) show_rows(name, x, nullptr, rows, cols, row_weights);
  }

  // The rows of a linear input (F32 or BF16) on the device, for an observer that sums over them there.
  void show_rows(const std::string& name, const float* x, const uint16_t* x_bf16, int64_t rows, int64_t cols,
                 const float* row_weights) {
    engine::DeviceLinearInput in;
    in.name = name;
    in.x = x, in.x_bf16 = x_bf16;
    in.rows = rows, in.cols = cols;
    in.routing_weights = row_weights;
    in.last_chunk = last_chunk;
    in.stream = stream.get();
    // What the observer makes stays its own (sums kept across chunks and layers, a workspace): it may
    // outlive this pass's stream, so it is not taken in that stream's order.
    const cuda::PlainAllocations plain;
    observer->on_linear_device_rows(in);
  }

  // Compressed entries' positions 0, ratio, 2·ratio, ... for `count` entries, kept on the device per
  // ratio (a decode step would otherwise upload them for every compressor: a copy from host memory).
  std::map<int64_t, cuda::DeviceBuffer> kept_entry_positions;
  const int64_t* entry_positions(int64_t ratio, int64_t count) {
    cuda::DeviceBuffer& kept = kept_entry_positions[ratio];
    if (kept.bytes() < static_cast<size_t>(count) * 8) {
      std::vector<int64_t> h(static_cast<size_t>(std::max<int64_t>(2 * count, 256)));
      for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<int64_t>(i) * ratio;
      const cuda::PlainAllocations plain;  // kept past this step's stream-ordered scope
      kept = upload_any(h, stream, "entry positions");
    }
    return kept.data<int64_t>();
  }

  // A (non-linear) weight of the current group decoded to F32 on the device, checked against the
  // shape the config implies. Kept while the upload it came from lasts (a resident group's, for every
  // later step): a decode step would otherwise spend a launch and an allocation on each of them again.
  const float* weight(const std::string& name, const std::vector<int64_t>& shape) {
    auto it = decoded_small.find(name);
    if (it == decoded_small.end() || it->second.first != group.generation) {
      cuda::DeviceBuffer d = decode_weight_f32(group, stored, ckpt.dir(), name, shape, stream);
      it = decoded_small.insert_or_assign(name, std::make_pair(group.generation, std::move(d))).first;
    }
    return it->second.second.data<float>();
  }
  LinearWeight linear_weight(const std::string& name, int64_t n, int64_t k, int64_t row_block = 0) {
    return lin.weight(name, n, k, row_block);
  }
  // y [m, w.n] = x [m, w.k] · Wᵀ, both dense; x_bf16: x rounded to BF16 once for several products, or null.
  void linear(const float* x, const LinearWeight& w, float* y, int64_t m, const uint16_t* x_bf16 = nullptr) {
    lin.apply(x, w.k, w, y, w.n, m, 0, -1, x_bf16);
  }

  // out16: every value of each head (head_stride wide) also rounded to BF16 there, or null.
  void rope(float* v, int64_t rows, int64_t heads, int64_t row_stride, int64_t head_stride, int64_t offset,
            const int64_t* positions, bool compress, bool inverse = false, uint16_t* out16 = nullptr) {
    cuda::RopeRows r;
    r.v = v;
    r.rows = rows, r.heads = heads, r.row_stride = row_stride, r.head_stride = head_stride, r.offset = offset;
    r.positions = positions;
    r.inv_freq = (compress ? compress_freq : main_freq).data<float>();
    r.dim = cfg.rope_dim;
    r.inverse = inverse;
    r.out16 = out16, r.head_width = out16 ? head_stride : 0;
    cuda::rope_rows(r, stream.get());
  }

  // rms_norm_rows of v [rows, n] in place (weight or null), then rope() of each row's last rope_dim
  // values (one head per row, heads_per_position rows a token), in one launch.
  void norm_rope(float* v, int64_t rows, int64_t n, const float* norm_weight, int64_t heads_per_position,
                 const int64_t* positions, bool compress) {
    cuda::NormRopeRows r;
    r.x = v, r.rows = rows, r.n = n, r.weight = norm_weight, r.eps = cfg.rms_eps;
    r.positions = positions, r.rows_per_position = heads_per_position;
    r.inv_freq = (compress ? compress_freq : main_freq).data<float>();
    r.dim = cfg.rope_dim, r.offset = n - cfg.rope_dim;
    cuda::rms_norm_rope_rows(r, stream.get());
  }

  // The new tokens' rows [sb.tokens(), width] into a cache's rows past .. past+seq-1 of each sequence
  // ([batch, sb.kv_rows, width]); the cache then holds the key-side rows the kernels read.
  void keep_rows(float* cache, const float* rows, int64_t width, const cuda::SequenceBatch& sb) {
    const size_t row_bytes = static_cast<size_t>(width) * 4;
    cuda::copy_2d(cache + sb.past * width, row_bytes * static_cast<size_t>(sb.kv_rows), rows,
                  row_bytes * static_cast<size_t>(sb.seq), row_bytes * static_cast<size_t>(sb.seq),
                  static_cast<size_t>(sb.batch), stream);
  }

  // A compressor's projections of the step's tokens [T, rw] and its small weights, decoded once per
  // layer for every run of the step.
  struct CompressorInputs {
    cuda::DeviceBuffer kv_owned, gate_owned;
    float* kv = nullptr;    // [T, rw]: kv_owned, or the cache's rows of a direct step (in_cache)
    float* gate = nullptr;  // the same for the gate
    bool in_cache = false;
    const float* ape = nullptr;
    const float* norm = nullptr;
    int64_t ratio = 4, width = 0, row_width = 0;
    bool overlap = true;
  };
  // Where a compressor's projections of the step's tokens go, and its small weights. kv_rows,
  // gate_rows: the caches' rows of a direct step (direct_rows), or null (buffers of their own).
  CompressorInputs compressor_outputs(int64_t T, const std::string& prefix, int64_t ratio, int64_t width, bool overlap,
                                      float* kv_rows, float* gate_rows) {
    const int64_t rw = overlap ? 2 * width : width;
    CompressorInputs c;
    c.ratio = ratio, c.width = width, c.row_width = rw, c.overlap = overlap;
    c.in_cache = kv_rows && gate_rows;
    if (c.in_cache) {
      c.kv = kv_rows, c.gate = gate_rows;
    } else {
      c.kv_owned = floats(T * rw, prefix + "kv"), c.gate_owned = floats(T * rw, prefix + "gate");
      c.kv = c.kv_owned.data<float>(), c.gate = c.gate_owned.data<float>();
    }
    c.ape = weight(prefix + "ape", {ratio, rw});
    c.norm = weight(prefix + "norm.weight", {width});
    return c;
  }
  // The compressor's two products of a [T, H] into c (*_done: it already ran, in a weight set).
  void compressor_products(const CompressorInputs& c, const float* a, const uint16_t* a16, int64_t T, const std::string& prefix,
                           const LinearWeight& wkv, bool wkv_done, const LinearWeight& wgate, bool wgate_done) {
    const int64_t H = cfg.hidden();
    observe(prefix + "wkv", a, T, H);
    if (!wkv_done) linear(a, wkv, c.kv, T, a16);
    observe(prefix + "wgate", a, T, H);
    if (!wgate_done) linear(a, wgate, c.gate, T, a16);
  }

  // A layer's products of the attention input that go as one weight set (cuda::weight_set_gemm):
  // those stored in the first one's FP4/FP8 format (V4: wq_a and wkv in FP8 blocks; its compressors'
  // and indexer's BF16 weights go on their own), built once per upload of the layer's group.
  struct ProjectionSet {
    uint64_t generation = 0;
    std::unique_ptr<cuda::WeightSet> set;  // null: fewer than two such products
    std::vector<size_t> members;           // their indices among the weights
  };
  std::map<int64_t, ProjectionSet> projection_sets;
  // ys[i] = a16 [T, H] · weights[i]ᵀ (F32) for the weights of the layer's set, in one launch; which
  // ran (none where the set path does not apply: F32 precision, an observer, more rows than it takes).
  std::vector<bool> products_as_set(int64_t layer, const uint16_t* a16, int64_t T,
                                    const std::vector<const LinearWeight*>& weights, const std::vector<float*>& ys) {
    std::vector<bool> done(weights.size(), false);
    if (!a16 || observer || T > cuda::kMaxWeightSetRows) return done;
    ProjectionSet& ps = projection_sets[layer];
    if (ps.generation != group.generation) {
      ps = {};
      ps.generation = group.generation;
      std::vector<cuda::GemmWeight> views;
      for (size_t i = 0; i < weights.size(); ++i) {
        const LinearWeight& w = *weights[i];
        if (!w.f32 && !w.dense && !w.owned.data() && w.stored.format == weights[0]->stored.format)
          ps.members.push_back(i), views.push_back(w.stored);
      }
      if (cuda::weight_set_gemm_takes(views, 1)) {
        const cuda::PlainAllocations plain;  // kept past this step's stream-ordered scope
        ps.set = std::make_unique<cuda::WeightSet>(views);
      }
    }
    if (!ps.set || ps.members.back() >= weights.size()) return done;
    std::vector<void*> y;
    for (size_t i : ps.members) y.push_back(ys[i]), done[i] = true;
    cuda::weight_set_gemm(a16, T, *ps.set, y.data(), cuda::GemmOutput::F32, stream.get());
    return done;
  }

  // Entries of a compressor over one run's sequences so far, normalised and rotated:
  // [batch, total / ratio, width]. With caches (kv_cache, gate_cache: [batch, sb.kv_rows, row width]),
  // the run's new projections join the earlier ones there.
  cuda::DeviceBuffer pool_compressor(const CompressorInputs& in, const AttentionRun& run, const std::string& prefix,
                                     float* kv_cache = nullptr, float* gate_cache = nullptr) {
    const cuda::SequenceBatch& sb = run.sb;
    const int64_t width = in.width, rw = in.row_width, count = sb.total() / in.ratio;
    cuda::DeviceBuffer entries = floats(sb.batch * count * width, prefix + "entries");
    cuda::CompressorPrefill c;
    c.kv = in.kv + run.first_token * rw, c.gate = in.gate + run.first_token * rw;
    c.ape = in.ape;
    if (kv_cache) {
      if (!in.in_cache) {  // (a direct step's projections were written there)
        keep_rows(kv_cache, c.kv, rw, sb);
        keep_rows(gate_cache, c.gate, rw, sb);
      }
      c.kv = kv_cache, c.gate = gate_cache;
    }
    c.ratio = in.ratio, c.width = width, c.overlap = in.overlap, c.entries = entries.data<float>();
    cuda::compressor_prefill(c, sb, stream.get());
    if (count > 0) {
      cuda::rms_norm_rows(entries.data<float>(), sb.batch * count, width, in.norm, cfg.rms_eps,
                          entries.data<float>(), stream.get());
      cuda::DeviceBuffer d_pos;  // a batch of several sequences: each one's entries from position 0 again
      const int64_t* pos = sb.batch == 1 ? entry_positions(in.ratio, count) : nullptr;
      if (!pos) {
        std::vector<int64_t> h(static_cast<size_t>(sb.batch * count));
        for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<int64_t>(i) % count * in.ratio;
        d_pos = upload_small(h, "entry positions");
        pos = d_pos.data<int64_t>();
      }
      rope(entries.data<float>(), sb.batch * count, 1, width, width, width - cfg.rope_dim, pos, true);
    }
    return entries;
  }

  // engine::attention_forward: a [T, H] -> out [T, H] for the step's T new tokens, which form one or
  // more runs (each a SequenceBatch of its own, at its own positions, with its own cache or none).
  // The products run once over all T tokens; compressors, indexer and attention core per run. With a
  // cache (its rows offset to the run's first sequence), a run continues from it and it keeps the new
  // rows; sb.kv_rows is then its capacity.
  void attention(int64_t layer, const float* a, const uint16_t* a16, int64_t T, const std::vector<AttentionRun>& runs,
                 const int64_t* positions, float* out) {
    const auto& b = cfg.base;
    const int64_t H = b.hidden_size, qr = b.q_lora_rank, nh = b.num_attention_heads, D = b.head_dim;
    const int64_t G = b.o_groups, R = b.o_lora_rank, rd = cfg.rope_dim;
    const AttentionKind kind = cfg.attention[static_cast<size_t>(layer)];
    const bool compress_rope_here = kind != AttentionKind::Sliding;
    const std::string p = "layers." + std::to_string(layer) + ".attn.";
    // A run's rows of one of its cache's buffers, of row width w (null without a cache).
    auto cached = [](const AttentionRun& run, cuda::DeviceBuffer LayerCache::*buffer, int64_t w) -> float* {
      return run.cache ? (run.cache->*buffer).data<float>() + run.first_sequence * run.cache->rows * w : nullptr;
    };
    // A step that is one run of one sequence with a cache (a decode step of one sequence, a prompt's
    // chunk): the key-side rows of its tokens are computed straight into the cache's rows past ..
    // past + T - 1, which are contiguous, instead of copied there after.
    const AttentionRun* direct = runs.size() == 1 && runs[0].cache && runs[0].sb.batch == 1 && runs[0].first_token == 0 &&
                                         runs[0].sb.seq == T
                                     ? &runs[0]
                                     : nullptr;
    auto direct_rows = [&](cuda::DeviceBuffer LayerCache::*buffer, int64_t w) -> float* {
      return direct ? cached(*direct, buffer, w) + direct->sb.past * w : nullptr;
    };

    const bool csa = kind == AttentionKind::Csa;
    const int64_t c = csa ? 2 : 1;  // the compressor's rows: two overlapping halves (CSA) or one
    const int64_t m = ModelConfig::ratio(kind);
    const int64_t nI = b.index_n_heads, dI = b.index_head_dim;
    const std::string cp = p + "compressor.", ip = p + "indexer.", icp = p + "indexer.compressor.";
    // The products of a: q_res, kv, and (compressed kinds) the compressor's and (CSA) the indexer's.
    const LinearWeight wq_a = linear_weight(p + "wq_a.weight", qr, H), wkv = linear_weight(p + "wkv.weight", D, H);
    LinearWeight cmp_wkv, cmp_wgate, idx_wproj, idx_wkv, idx_wgate;
    if (kind != AttentionKind::Sliding)
      cmp_wkv = linear_weight(cp + "wkv.weight", c * D, H), cmp_wgate = linear_weight(cp + "wgate.weight", c * D, H);
    if (csa) {
      idx_wproj = linear_weight(ip + "weights_proj.weight", nI, H);
      idx_wkv = linear_weight(icp + "wkv.weight", 2 * dI, H), idx_wgate = linear_weight(icp + "wgate.weight", 2 * dI, H);
    }

    cuda::DeviceBuffer q_res = floats(T * qr, "q_res"), q = floats(T * nh * D, "q");
    cuda::DeviceBuffer kv_owned = direct ? cuda::DeviceBuffer{} : floats(T * D, "kv");
    float* const kv = direct ? direct_rows(&LayerCache::kv, D) : kv_owned.data<float>();
    // q_res rounded to BF16 by its norm, for the products that read it (BF16 precision).
    const cuda::DeviceBuffer q_res16 = a16 ? cuda::DeviceBuffer(static_cast<size_t>(T * qr) * 2, "q_res bf16")
                                           : cuda::DeviceBuffer{};
    CompressorInputs cmp_in, idx_in;
    cuda::DeviceBuffer idx_w;
    if (kind != AttentionKind::Sliding)
      cmp_in = compressor_outputs(T, cp, m, D, csa, direct_rows(&LayerCache::cmp_kv, c * D),
                                  direct_rows(&LayerCache::cmp_gate, c * D));
    if (csa) {
      idx_w = floats(T * nI, "indexer weights");
      idx_in = compressor_outputs(T, icp, 4, dI, true, direct_rows(&LayerCache::idx_kv, 2 * dI),
                                  direct_rows(&LayerCache::idx_gate, 2 * dI));
    }
    // Every product of a in one launch where the set path takes them (a decode step's few rows).
    std::vector<const LinearWeight*> a_weights = {&wq_a, &wkv};
    std::vector<float*> a_outputs = {q_res.data<float>(), kv};
    if (kind != AttentionKind::Sliding) {
      a_weights.insert(a_weights.end(), {&cmp_wkv, &cmp_wgate});
      a_outputs.insert(a_outputs.end(), {cmp_in.kv, cmp_in.gate});
    }
    if (csa) {
      a_weights.insert(a_weights.end(), {&idx_wproj, &idx_wkv, &idx_wgate});
      a_outputs.insert(a_outputs.end(), {idx_w.data<float>(), idx_in.kv, idx_in.gate});
    }
    // Which products of a ran in the set (in a_weights' order: wq_a, wkv, compressor, indexer).
    const std::vector<bool> a_done = products_as_set(layer, a16, T, a_weights, a_outputs);
    const auto done = [&](size_t i) { return a_done[i]; };
    {
      const float* q_norm = weight(p + "q_norm.weight", {qr});
      const LinearWeight wq_b = linear_weight(p + "wq_b.weight", nh * D, qr);
      observe(p + "wq_a", a, T, H);
      if (!done(0)) linear(a, wq_a, q_res.data<float>(), T, a16);
      cuda::rms_norm_rows(q_res.data<float>(), T, qr, q_norm, cfg.rms_eps, q_res.data<float>(), stream.get(),
                          q_res16.data<uint16_t>());
      observe(p + "wq_b", q_res.data<float>(), T, qr);
      linear(q_res.data<float>(), wq_b, q.data<float>(), T, q_res16.data<uint16_t>());
      norm_rope(q.data<float>(), T * nh, D, nullptr, nh, positions, compress_rope_here);
      const float* kv_norm = weight(p + "kv_norm.weight", {D});
      observe(p + "wkv", a, T, H);
      if (!done(1)) linear(a, wkv, kv, T, a16);
      norm_rope(kv, T, D, kv_norm, 1, positions, compress_rope_here);
      clock.mark("attention.projections", stream);
    }

    std::vector<cuda::DeviceBuffer> entries(runs.size());
    if (kind != AttentionKind::Sliding) {
      compressor_products(cmp_in, a, a16, T, cp, cmp_wkv, done(2), cmp_wgate, done(3));
      for (size_t r = 0; r < runs.size(); ++r)
        entries[r] = pool_compressor(cmp_in, runs[r], cp, cached(runs[r], &LayerCache::cmp_kv, c * D),
                                     cached(runs[r], &LayerCache::cmp_gate, c * D));
      clock.mark("attention.compressor", stream);
    }
    cuda::DeviceBuffer picks, pick_count;
    if (csa) {
      const int64_t top_k = b.index_topk;
      cuda::DeviceBuffer idx_q = floats(T * nI * dI, "indexer q");
      const LinearWeight wq_b = linear_weight(ip + "wq_b.weight", nI * dI, qr);
      observe(ip + "wq_b", q_res.data<float>(), T, qr);
      linear(q_res.data<float>(), wq_b, idx_q.data<float>(), T, q_res16.data<uint16_t>());
      rope(idx_q.data<float>(), T, nI, nI * dI, dI, dI - rd, positions, true);
      observe(ip + "weights_proj", a, T, H);
      if (!done(4)) linear(a, idx_wproj, idx_w.data<float>(), T, a16);
      compressor_products(idx_in, a, a16, T, icp, idx_wkv, done(5), idx_wgate, done(6));
      picks = cuda::DeviceBuffer(static_cast<size_t>(T * top_k) * 4, "indexer picks");
      pick_count = cuda::DeviceBuffer(static_cast<size_t>(T) * 4, "indexer pick counts");
      for (const AttentionRun& run : runs) {
        const cuda::DeviceBuffer keys = pool_compressor(idx_in, run, icp, cached(run, &LayerCache::idx_kv, 2 * dI),
                                                        cached(run, &LayerCache::idx_gate, 2 * dI));
        cuda::IndexerSelect s;
        s.q = idx_q.data<float>() + run.first_token * nI * dI, s.head_weights = idx_w.data<float>() + run.first_token * nI;
        s.head_weight_scale = 1.0f / std::sqrt(static_cast<float>(nI));  // on reading: the same product as scaling them first
        s.keys = keys.data<float>();
        s.heads = nI, s.head_dim = dI, s.top_k = top_k;
        s.picks = picks.data<int32_t>() + run.first_token * top_k, s.count = pick_count.data<int32_t>() + run.first_token;
        cuda::indexer_select(s, run.sb, stream.get());
      }
      clock.mark("attention.indexer", stream);
    }

    cuda::DeviceBuffer o = floats(T * nh * D, "attention output");
    // o rounded to BF16 by its inverse rope, for wo_a (BF16 precision).
    const cuda::DeviceBuffer o16 = a16 ? cuda::DeviceBuffer(static_cast<size_t>(T * nh * D) * 2, "attention output bf16")
                                       : cuda::DeviceBuffer{};
    {
      const float* sink = weight(p + "attn_sink", {nh});
      for (size_t r = 0; r < runs.size(); ++r) {
        const AttentionRun& run = runs[r];
        const int64_t t0 = run.first_token;
        cuda::AttentionCore ac;
        ac.q = q.data<float>() + t0 * nh * D, ac.kv = kv + t0 * D, ac.sink = sink;
        if (run.cache) {
          float* rows = cached(run, &LayerCache::kv, D);
          if (!direct) keep_rows(rows, ac.kv, D, run.sb);  // (a direct step's rows are there)
          ac.kv = rows;
        }
        ac.heads = nh, ac.head_dim = D, ac.window = b.sliding_window, ac.ratio = m;
        ac.compressed = kind == AttentionKind::Sliding ? cuda::CompressedKeys::None
                        : kind == AttentionKind::Hca   ? cuda::CompressedKeys::AllCausal
                                                       : cuda::CompressedKeys::Picked;
        if (kind != AttentionKind::Sliding) ac.entries = entries[r].data<float>();
        if (kind == AttentionKind::Csa) {
          ac.picks = picks.data<int32_t>() + t0 * b.index_topk, ac.pick_count = pick_count.data<int32_t>() + t0;
          ac.pick_stride = b.index_topk;
        }
        ac.out = o.data<float>() + t0 * nh * D;
        cuda::attention_core(ac, run.sb, stream.get());
      }
      rope(o.data<float>(), T, nh, nh * D, D, D - rd, positions, compress_rope_here, /*inverse=*/true, o16.data<uint16_t>());
      clock.mark("attention.core", stream);
    }

    // Grouped output projection: heads of group g through rows [g·R, (g+1)·R) of wo_a, then wo_b.
    const int64_t dg = nh * D / G;
    const LinearWeight wo_a = linear_weight(p + "wo_a.weight", G * R, dg, R);
    const LinearWeight wo_b = linear_weight(p + "wo_b.weight", H, G * R);
    observe(p + "wo_a", o.data<float>(), T, nh * D);
    // Without an observer (which sees wo_b's F32 input) wo_a's products come out rounded to BF16,
    // as wo_b reads them: no rounding launch between the two.
    const cuda::DeviceBuffer u16 =
        observer ? cuda::DeviceBuffer{} : cuda::DeviceBuffer(static_cast<size_t>(T * G * R) * 2, "wo_a output bf16");
    if (u16.data() && lin.apply_groups_bf16(o.data<float>(), wo_a, u16.data<uint16_t>(), T, G, R, o16.data<uint16_t>())) {
      lin.apply(nullptr, G * R, wo_b, out, H, T, 0, -1, u16.data<uint16_t>());  // (x is read only as u16)
    } else {
      cuda::DeviceBuffer u = floats(T * G * R, "wo_a output");
      lin.apply_groups(o.data<float>(), wo_a, u.data<float>(), T, G, R, o16.data<uint16_t>());
      observe(p + "wo_b", u.data<float>(), T, G * R);
      linear(u.data<float>(), wo_b, out, T);
    }
    clock.mark("attention.output", stream);
  }

  // engine::moe_forward: x [T, H] -> out [T, H].
  // ids: the T tokens' ids on the host and on the device; `first` numbers the first token in errors.
  // x16: x rounded to BF16 (BF16 precision), or null.
  void moe(int64_t layer, const float* x, const uint16_t* x16, const int64_t* ids, const int64_t* d_ids, int64_t T,
           int64_t first, float* out) {
    const auto& b = cfg.base;
    const int64_t H = b.hidden_size, E = b.n_routed_experts;
    const int64_t k = b.num_experts_per_tok, I = b.moe_intermediate_size;
    const std::string p = "layers." + std::to_string(layer) + ".ffn.";

    cuda::DeviceBuffer scores = floats(T * E, "router scores");
    // The router's F32 product (as DeepSeek's and transformers' routers compute it) on the weight
    // decoded once per group, with the small weights: a resident layer does not decode it per step.
    const float* gate = weight(p + "gate.weight", {E, H});
    observe(p + "gate", x, T, H);
    lin.cublas().f32_gemm(x, H, gate, scores.data<float>(), E, T, E, H, stream.get());
    cuda::DeviceBuffer chosen(static_cast<size_t>(T * k) * 4, "routing experts"), weights = floats(T * k, "routing weights");
    const bool grouped = lin.precision() == Precision::Bf16 && !all_experts && routed_experts_of(layer).grouped;
    // A decode step's routing check goes straight to its slot of the step's checks (zeroed when the
    // step began), read at the step's end; otherwise into a flag read here.
    const bool deferred_check = step_checks.active && grouped && !observer && first == 0;
    cuda::DeviceBuffer bad;
    if (!deferred_check) {
      bad = cuda::DeviceBuffer(8, "routing check");
      cuda::fill_bytes(bad.data(), 0, 8, stream);  // no host memory: a copy from it may wait for the stream
    }
    cuda::RouteTokens r;
    r.scores = scores.data<float>(), r.scores_are_logits = true;  // the scores' transform on reading
    r.tokens = T, r.experts = E, r.k = k, r.vocab = b.vocab_size;
    r.scaling = static_cast<float>(b.routed_scaling_factor);
    r.chosen = chosen.data<int32_t>(), r.weights = weights.data<float>();
    r.bad = deferred_check ? bad_route_slot(layer) : bad.data<int64_t>();
    const float* bias = nullptr;
    if (cfg.hash_routed[static_cast<size_t>(layer)]) {
      cuda::DeviceBuffer& hash_table = hash_tables[layer];
      if (!hash_table.data()) {
        const std::vector<int64_t> t2e = stored.read_i64(p + "gate.tid2eid");
        if (static_cast<int64_t>(t2e.size()) != b.vocab_size * k)
          throw InputError(ckpt.dir() + ": tensor '" + p + "gate.tid2eid' has " + std::to_string(t2e.size()) +
                           " entries, the config implies [" + std::to_string(b.vocab_size) + ", " + std::to_string(k) + "]");
        hash_table = upload_any(t2e, stream, p + "gate.tid2eid");
      }
      r.tid2eid = hash_table.data<int64_t>(), r.ids = d_ids;
    } else {
      bias = weight(p + "gate.bias", {E});
      r.bias = bias;
    }
    cuda::route_tokens(r, stream.get());
    std::vector<int32_t> h_chosen;  // the per-expert loop's routing, on the host
    std::vector<float> h_weights;
    if (!deferred_check) {  // (deferred: the host needs nothing of the routing)
      h_chosen.resize(static_cast<size_t>(T * k));
      h_weights.resize(static_cast<size_t>(T * k));
      int64_t h_bad = 0;
      cuda::copy_to_host(h_chosen.data(), chosen.data(), h_chosen.size() * 4, stream);
      cuda::copy_to_host(h_weights.data(), weights.data(), h_weights.size() * 4, stream);
      cuda::copy_to_host(&h_bad, bad.data(), 8, stream);
      if (step_checks.active) read_step_checks();  // what the step found before this comes first
      stream.synchronize("routing");
      if (step_checks.active) throw_step_check_failures();
      if (h_bad)
        throw InputError(ckpt.dir() + ": tensor '" + p + "gate.tid2eid' routes token " + std::to_string(first + h_bad - 1) +
                         " (id " + std::to_string(ids[h_bad - 1]) + ") outside the experts or the vocabulary");
    }
    clock.mark("moe.routing", stream);

    if (grouped && !observer) {
      // The shared expert first: the routed experts' combine then adds its output (out = routed +
      // shared, the engine's one addition, without a launch of its own).
      const cuda::DeviceBuffer y = shared_expert(p, x, x16, T);
      clock.mark("moe.shared", stream);
      routed_grouped(layer, x, x16, T, chosen, weights, out, y.data<float>());
      clock.mark("moe.routed", stream);
      return;
    }
    cuda::DeviceBuffer routed = floats(T * H, "routed output");
    if (grouped) {
      routed_grouped(layer, x, x16, T, chosen, weights, routed.data<float>());
      clock.mark("moe.routed", stream);
      shared_and_sum(p, x, x16, T, routed, out);
      return;
    }
    // Routed experts in increasing id, each over its tokens in increasing order (the CPU's order of sums).
    std::vector<std::vector<int32_t>> rows_of(static_cast<size_t>(E));
    std::vector<std::vector<float>> weight_of(static_cast<size_t>(E));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < k; ++j) {
        const int32_t e = h_chosen[static_cast<size_t>(t * k + j)];
        rows_of[static_cast<size_t>(e)].push_back(static_cast<int32_t>(t));
        weight_of[static_cast<size_t>(e)].push_back(h_weights[static_cast<size_t>(t * k + j)]);
      }
    cuda::fill_bytes(routed.data(), 0, routed.bytes(), stream);
    cuda::DeviceBuffer all_weights;
    if (all_experts) all_weights = floats(T, "all-token routing weights");
    for (int64_t e = 0; e < E; ++e) {
      const auto& rows = rows_of[static_cast<size_t>(e)];
      if (rows.empty() && !all_experts) continue;
      const int64_t n = static_cast<int64_t>(rows.size());
      const std::string ep = p + "experts." + std::to_string(e) + ".";
      const cuda::DeviceBuffer d_rows = upload_any(rows, stream, "expert rows");
      const cuda::DeviceBuffer d_w = upload(weight_of[static_cast<size_t>(e)], stream, "expert weights");
      cuda::DeviceBuffer h = floats(n * I, "expert hidden");
      if (all_experts) {
        // Every token through w1/w3 for the observer; the routed rows are then taken from the result
        // (each row's arithmetic is independent of the others).
        const cuda::DeviceBuffer h_all = swiglu(x, T, ep, I);
        cuda::fill_bytes(all_weights.data(), 0, all_weights.bytes(), stream);
        const cuda::DeviceBuffer one = ones(n);
        if (n) cuda::scatter_add_rows(all_weights.data<float>(), d_w.data<float>(), d_rows.data<int32_t>(), one.data<float>(), n, 1,
                                      stream.get());
        observe(ep + "w2", h_all.data<float>(), T, I, all_weights.data<float>());
        if (n) cuda::gather_rows(h_all.data<float>(), d_rows.data<int32_t>(), n, I, h.data<float>(), stream.get());
      } else {
        cuda::DeviceBuffer xe = floats(n * H, "expert input");
        cuda::gather_rows(x, d_rows.data<int32_t>(), n, H, xe.data<float>(), stream.get());
        h = swiglu(xe.data<float>(), n, ep, I);
        observe(ep + "w2", h.data<float>(), n, I, d_w.data<float>());
      }
      if (n == 0) continue;
      cuda::DeviceBuffer y = floats(n * H, "expert output");
      const LinearWeight w2 = linear_weight(ep + "w2.weight", H, I);
      linear(h.data<float>(), w2, y.data<float>(), n);
      cuda::scatter_add_rows(routed.data<float>(), y.data<float>(), d_rows.data<int32_t>(), d_w.data<float>(), n, H,
                             stream.get());
    }
    clock.mark("moe.routed", stream);
    shared_and_sum(p, x, nullptr, T, routed, out);
  }

  // out [T, H] = routed + the shared expert's output for x (after the routed experts ran).
  // x16: x rounded to BF16, or null.
  void shared_and_sum(const std::string& p, const float* x, const uint16_t* x16, int64_t T, const cuda::DeviceBuffer& routed,
                      float* out) {
    const int64_t H = cfg.hidden();
    const cuda::DeviceBuffer y = shared_expert(p, x, x16, T);
    if (y.data()) cuda::add_f32(routed.data<float>(), y.data<float>(), T * H, out, stream.get());
    else cuda::copy_on_device(out, routed.data(), static_cast<size_t>(T * H) * 4, stream);
    clock.mark("moe.shared", stream);
  }

  // The shared expert's output for x [T, H] (x16: x rounded to BF16, or null): F32 [T, H], or an
  // empty buffer where the layer has no shared expert.
  cuda::DeviceBuffer shared_expert(const std::string& p, const float* x, const uint16_t* x16, int64_t T) {
    const auto& b = cfg.base;
    const int64_t H = b.hidden_size, shared = b.moe_intermediate_size * b.n_shared_experts;
    if (shared <= 0) return {};
    const std::string sp = p + "shared_experts.";
    // BF16 products read h rounded to BF16: rounded where the SwiGLU writes it, not by a copy after.
    const cuda::DeviceBuffer h16 = lin.precision() == Precision::Bf16
                                       ? cuda::DeviceBuffer(static_cast<size_t>(T * shared) * 2, "shared expert hidden")
                                       : cuda::DeviceBuffer{};
    const cuda::DeviceBuffer h = swiglu(x, T, sp, shared, x16, h16.data<uint16_t>());
    observe(sp + "w2", h.data<float>(), T, shared);
    const LinearWeight w2 = linear_weight(sp + "w2.weight", H, shared);
    cuda::DeviceBuffer y = floats(T * H, "shared expert output");
    linear(h.data<float>(), w2, y.data<float>(), T, h16.data<uint16_t>());
    return y;
  }

  // A layer's routed experts as the grouped kernels read them; `grouped` false where their storage
  // cannot go through them (formats differ, or a weight the grouped GEMM cannot read): the per-expert
  // loop runs then.
  RoutedExperts& routed_experts_of(int64_t layer) {
    RoutedExperts& re = routed_experts[layer];
    if (re.generation == group.generation) return re;
    const auto& b = cfg.base;
    const int64_t H = b.hidden_size, E = b.n_routed_experts, I = b.moe_intermediate_size;
    const std::string p = "layers." + std::to_string(layer) + ".ffn.";
    re = {};
    re.generation = group.generation;
    for (int64_t e = 0; e < E; ++e) {
      const std::string ep = p + "experts." + std::to_string(e) + ".";
      for (const char* m : {"w1", "w3", "w2"}) {
        const bool down = m[1] == '2';
        LinearWeight w = linear_weight(ep + m + ".weight", down ? H : I, down ? I : H);
        if (w.dense || (!re.w1.empty() && w.stored.format != re.w1.front().format)) return re;
        (down ? re.w2 : m[1] == '1' ? re.w1 : re.w3).push_back(w.stored);
        if (w.owned.data()) re.copies.push_back(std::move(w));  // w.stored points into it
      }
    }
    re.table = std::make_unique<cuda::MoeExpertTable>(re.w1, re.w3, re.w2);
    re.grouped = true;
    return re;
  }

  // The routed experts of a layer whose experts are `grouped` through the grouped kernels
  // (cuda/moe_experts.h: tokens sorted by expert, w1/w3 with the fused clamped SwiGLU, w2, the weighted
  // combine), the observer shown each expert's inputs from the kernels' intermediates: routed [T, H].
  // add: F32 [T, H] added to the sum (moe_combine), or null.
  void routed_grouped(int64_t layer, const float* x, const uint16_t* x16, int64_t T, const cuda::DeviceBuffer& chosen,
                      const cuda::DeviceBuffer& weights, float* routed, const float* add = nullptr) {
    const auto& b = cfg.base;
    const int64_t H = b.hidden_size, E = b.n_routed_experts, k = b.num_experts_per_tok, I = b.moe_intermediate_size;
    const std::string p = "layers." + std::to_string(layer) + ".ffn.";
    RoutedExperts& re = routed_experts_of(layer);
    if (!re.grouped) throw Error("GPU forward: layer " + std::to_string(layer) + "'s routed experts cannot take the grouped path");
    // Copies made for this call go once it has queued its work (in stream order), the table with them.
    struct DropCopies {
      RoutedExperts& re;
      ~DropCopies() {
        if (!re.copies.empty()) re = {};
      }
    } drop_copies{re};
    const std::vector<cuda::GemmWeight>&w1 = re.w1, &w3 = re.w3, &w2 = re.w2;
    const cuda::MoeExpertTable& table = *re.table;
    std::unique_ptr<cuda::MoeWorkspace> own;
    if (T > kKeptMoeTokens) own = std::make_unique<cuda::MoeWorkspace>(T, k, static_cast<int32_t>(E), H, I);
    else if (!kept_moe_workspace) kept_moe_workspace = std::make_unique<cuda::MoeWorkspace>(kKeptMoeTokens, k, static_cast<int32_t>(E), H, I);
    cuda::MoeWorkspace& ws = own ? *own : *kept_moe_workspace;
    cuda::MoeRouting r;
    r.experts_i32 = chosen.data<int32_t>(), r.weights = weights.data<float>(), r.tokens = T, r.top_k = k;
    const uint16_t* xb = x16 ? x16 : lin.to_bf16(x, H, T, H);
    std::vector<int32_t> offsets(static_cast<size_t>(E + 1));
    bool decoded = false;
    if (T * k >= E * decode_once_expert_rows) {  // many rows per expert: cuBLASLt on decoded weights
      cuda::moe_route_rows(xb, r, ws, stream.get());
      cuda::copy_to_host(offsets.data(), ws.expert_offsets(), offsets.size() * 4, stream);
      stream.synchronize("expert offsets");
      decoded = cuda::moe_expert_products_decoded(w1, w3, w2, offsets, cfg.swiglu_limit, ws, lin.cublas(), stream.get());
      if (decoded) {
        cuda::moe_combine(r, ws, routed, cuda::GemmOutput::F32, stream.get(), add);
        stream.synchronize("routed experts");
        ws.throw_if_bad_routing();
      }
    }
    if (!decoded)
      // Asynchronous: moe() already refused ids outside the experts (the router's check), which is
      // all the workspace's own check would find.
      cuda::moe_routed_experts_async(xb, r, table.view(), cfg.swiglu_limit, routed, cuda::GemmOutput::F32, ws,
                                     stream.get(), add);
    if (!observer) return;
    if (!decoded) cuda::copy_to_host(offsets.data(), ws.expert_offsets(), offsets.size() * 4, stream);
    cuda::DeviceBuffer amax = floats(4 * E, "expert input amax"), scratch = floats(T * k, "expert amax scratch");
    cuda::moe_expert_input_amax(ws, r, cuda::MoeExpertInput::Gate, amax.data<float>(), scratch.data<float>(), stream.get());
    cuda::moe_expert_input_amax(ws, r, cuda::MoeExpertInput::Down, amax.data<float>() + 2 * E, scratch.data<float>(),
                                stream.get());
    std::vector<float> h_amax(static_cast<size_t>(4 * E));
    cuda::copy_to_host(h_amax.data(), amax.data(), h_amax.size() * 4, stream);
    stream.synchronize("expert input amax");
    const bool rows_wanted = observer->wants_device_rows();
    // Each sorted row's routing weight (its slot's), for w2's rows.
    cuda::DeviceBuffer row_weights = floats(rows_wanted ? T * k : 0, "expert row weights");
    if (rows_wanted && T * k > 0)
      cuda::gather_rows(weights.data<float>(), ws.slot_of_row(), T * k, 1, row_weights.data<float>(), stream.get());
    for (int64_t e = 0; e < E; ++e) {
      const int64_t first = offsets[static_cast<size_t>(e)], rows = offsets[static_cast<size_t>(e + 1)] - first;
      if (rows == 0) continue;  // as the per-expert loop: an expert without tokens is not observed
      const std::string ep = p + "experts." + std::to_string(e) + ".";
      const float gate = h_amax[static_cast<size_t>(2 * e)];
      observer->on_linear_amax({ep + "w1", gate, gate, rows});
      observer->on_linear_amax({ep + "w3", gate, gate, rows});
      observer->on_linear_amax({ep + "w2", h_amax[static_cast<size_t>(2 * (E + e))], h_amax[static_cast<size_t>(2 * (E + e) + 1)], rows});
      if (!rows_wanted) continue;
      // The rows the grouped products read: the expert's slice of the sorted BF16 x and h.
      show_rows(ep + "w1", nullptr, ws.sorted_x() + first * H, rows, H, nullptr);
      show_rows(ep + "w3", nullptr, ws.sorted_x() + first * H, rows, H, nullptr);
      show_rows(ep + "w2", nullptr, ws.hidden_act() + first * I, rows, I, row_weights.data<float>() + first);
    }
    stream.synchronize("expert input rows");  // the workspace and the row weights die here
  }

  // n ones on the device.
  cuda::DeviceBuffer ones(int64_t n) {
    return upload(std::vector<float>(static_cast<size_t>(std::max<int64_t>(n, 1)), 1.0f), stream, "ones");
  }

  // silu(min(x·w1ᵀ, limit)) · clamp(x·w3ᵀ) [n, I] of the expert at `prefix`, the observer shown x
  // (x16: x rounded to BF16, or null).
  // g16: where given, the result also rounded to BF16 there ([n, I], for the next product's x_bf16).
  // With g16 and x16, no observer, and weights the fused decode kernel takes, both products and the
  // SwiGLU run as one launch that writes g16 only: the returned buffer is then empty.
  cuda::DeviceBuffer swiglu(const float* x, int64_t n, const std::string& prefix, int64_t I, const uint16_t* x16 = nullptr,
                            uint16_t* g16 = nullptr) {
    const int64_t H = cfg.hidden();
    const LinearWeight w1 = linear_weight(prefix + "w1.weight", I, H), w3 = linear_weight(prefix + "w3.weight", I, H);
    if (g16 && x16 && !observer && lin.apply_swiglu(x16, w1, w3, n, cfg.swiglu_limit, g16)) return {};
    cuda::DeviceBuffer g = floats(n * I, "expert gate"), u = floats(n * I, "expert up");
    observe(prefix + "w1", x, n, H);
    observe(prefix + "w3", x, n, H);
    linear(x, w1, g.data<float>(), n, x16);
    linear(x, w3, u.data<float>(), n, x16);
    cuda::swiglu_clamped(g.data<float>(), u.data<float>(), n * I, cfg.swiglu_limit, stream.get(), g16);
    return g;
  }

  // `site` (the embedding 0, layer l at l + 1): where a decode step's deferred check goes.
  void check_finite(const cuda::DeviceBuffer& streams, int64_t T, int64_t seq, int64_t past, const std::string& where,
                    int64_t site = -1) {
    const int64_t width = cfg.hc() * cfg.hidden(), n = T * width;
    if (step_checks.active && site >= 0 && n == step_checks.values) {
      cuda::first_nonfinite(streams.data<float>(), n, first_nonfinite_slot(site), stream.get());
      return;
    }
    cuda::DeviceBuffer first(8, "non-finite check");
    cuda::copy_to_device(first.data(), &n, 8, stream);
    cuda::first_nonfinite(streams.data<float>(), n, first.data<int64_t>(), stream.get());
    int64_t at = n;
    cuda::copy_to_host(&at, first.data(), 8, stream);
    stream.synchronize("non-finite check");
    if (at < n)
      throw InputError(ckpt.dir() + ": non-finite activation in the output of " + where + " (sequence " +
                       std::to_string(at / width / seq) + ", position " + std::to_string(past + at / width % seq) + ")");
  }
};

// The checkpoint's stored bytes, tensor by tensor (what keeping it resident costs).
uint64_t stored_bytes(const io::Checkpoint& ckpt, const std::vector<io::TensorGroup>& groups) {
  uint64_t total = 0;
  for (const io::TensorGroup& g : groups)
    for (const std::string& name : g.tensors) {
      const auto [file, info] = ckpt.find(name);
      if (info) total += (info->nbytes() + 255) / 256 * 256;
    }
  return total;
}

// The batch between layers: the hc streams on the device and what every layer needs of the ids.
struct GpuForward::Batch {
  int64_t batch = 0, seq = 0;  // this step's tokens: seq new ones of each sequence
  int64_t past = 0;            // tokens of each sequence before them (a continuation)
  bool continued = false;      // the attention caches are kept for embed_next()
  int64_t cache_hint = 0;      // tokens per sequence the caches are first sized for
  std::vector<LayerCache> caches;  // per layer, when continued
  std::vector<int64_t> ids;
  cuda::DeviceBuffer streams;
  // The step's positions [T], token ids [T] (int64) and the ids again as int32 (the embedding's
  // rows), in one buffer: one upload.
  cuda::DeviceBuffer inputs;
  const int64_t* positions() const { return inputs.data<int64_t>(); }
  const int64_t* d_ids() const { return inputs.data<int64_t>() + tokens(); }
  const int32_t* rows32() const { return reinterpret_cast<const int32_t*>(inputs.data<int64_t>() + 2 * tokens()); }
  // The groups still to come that are not resident, in order; next_group_index is the index (in
  // Impl::groups) of the group the next step uses.
  std::unique_ptr<io::TensorPrefetcher> prefetcher;
  int64_t next_group_index = 0;
  int64_t next_layer = 0;
  int64_t tokens() const { return batch * seq; }
};

// Tokens of a step that go through a layer's products together: [first_token, first_token + tokens)
// of the batch, attending as `runs`.
struct GpuForward::StepChunk {
  int64_t first_token = 0, tokens = 0;
  std::vector<AttentionRun> runs;
};

GpuForward::SavedBatch::SavedBatch() = default;
GpuForward::SavedBatch::~SavedBatch() = default;
GpuForward::SavedBatch::SavedBatch(SavedBatch&&) noexcept = default;
GpuForward::SavedBatch& GpuForward::SavedBatch::operator=(SavedBatch&&) noexcept = default;

GpuForward::SavedBatch GpuForward::save_batch() {
  if (!batch_ || !batch_->continued || batch_->next_layer != impl_->cfg.layers())
    throw Error("save_batch: no continued batch whose step has run every layer");
  SavedBatch saved;
  saved.batch_ = std::move(batch_);
  saved.batch_->prefetcher.reset();  // a streaming pass reads the groups again on the next step
  // The step's streams are spent (the next step embeds its own): a waiting sequence keeps its caches only.
  saved.batch_->streams = {}, saved.batch_->inputs = {};
  return saved;
}

void GpuForward::restore_batch(SavedBatch saved) {
  if (!saved.batch_) throw Error("restore_batch: an empty saved batch");
  park_group();
  batch_ = std::move(saved.batch_);
}

std::vector<float> GpuForward::advance_together(std::vector<SavedBatch>& saved, const std::vector<int64_t>& ids) {
  std::vector<float> logits;
  step_together(saved, ids, [&] { logits = head(true); });
  return logits;
}

std::vector<engine::DrawnToken> GpuForward::advance_together_draw(std::vector<SavedBatch>& saved,
                                                                 const std::vector<int64_t>& ids,
                                                                 const std::vector<engine::TokenDraw>& draws) {
  if (draws.size() != saved.size())
    throw Error("advance_together_draw: " + std::to_string(draws.size()) + " draws for " + std::to_string(saved.size()) +
                " batches");
  std::vector<engine::DrawnToken> drawn;
  step_together(saved, ids, [&] { drawn = head_draw(draws); });
  return drawn;
}

GpuForward::SavedBatch GpuForward::new_sequence(int64_t max_tokens) {
  SavedBatch saved;
  saved.batch_ = std::make_unique<Batch>();
  Batch& b = *saved.batch_;
  b.batch = 1, b.continued = true, b.cache_hint = std::max<int64_t>(max_tokens, 1);
  b.caches.resize(static_cast<size_t>(impl_->cfg.layers()));
  b.next_layer = impl_->cfg.layers();  // as a saved batch whose step ran: advance_together takes it
  return saved;
}

void GpuForward::step_together(std::vector<SavedBatch>& saved, const std::vector<int64_t>& ids,
                               const std::function<void()>& head_step) {
  const ModelConfig& cfg = impl_->cfg;
  const int64_t N = static_cast<int64_t>(saved.size()), V = cfg.base.vocab_size;
  if (N == 0 || ids.empty() || ids.size() % saved.size() != 0)
    throw Error("advance_together: " + std::to_string(ids.size()) + " ids for " + std::to_string(N) + " batches");
  const int64_t n = static_cast<int64_t>(ids.size()) / N;  // new tokens of each sequence
  std::vector<Batch*> members;
  std::vector<int64_t> positions, pasts;
  for (int64_t i = 0; i < N; ++i) {
    Batch* b = saved[static_cast<size_t>(i)].batch_.get();
    if (!b || b->batch != 1) throw Error("advance_together: each saved batch must hold one sequence");
    const int64_t past = b->past + b->seq;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t id = ids[static_cast<size_t>(i * n + j)];
      if (id < 0 || id >= V)
        throw InputError("token id " + std::to_string(id) + " (sequence " + std::to_string(i) + ", position " +
                         std::to_string(past + j) + ") is outside the vocabulary of " + impl_->ckpt.dir() + " (vocab_size " +
                         std::to_string(V) + ")");
      positions.push_back(past + j);
    }
    members.push_back(b);
    pasts.push_back(past);
  }
  // Each sequence moves on by its new tokens; the step itself runs as one batch of N · n tokens
  // whose attention runs per sequence, on that sequence's caches.
  for (int64_t i = 0; i < N; ++i) {
    Batch& b = *members[static_cast<size_t>(i)];
    b.past += b.seq;
    b.seq = n;
    b.ids.assign(ids.begin() + i * n, ids.begin() + (i + 1) * n);
  }
  park_group();
  batch_ = std::make_unique<Batch>();
  batch_->batch = N;
  Impl& m = *impl_;
  struct EndChecks {
    Impl& m;
    ~EndChecks() { m.step_checks.active = false; }
  } end_checks{m};
  m.begin_step_checks(cfg.layers(), N * n * cfg.hc() * cfg.hidden(), ids, pasts);
  embed_tokens(ids, positions);
  for (int64_t layer = 0; layer < cfg.layers(); ++layer) {
    next_group();
    // The sequences in chunks that fit the memory budget (one chunk for a decode step).
    const int64_t per_chunk = n == 1 ? N : sequences_per_chunk(layer_bytes_per_token(cfg), "layer " + std::to_string(layer));
    std::vector<StepChunk> chunks;
    for (int64_t s0 = 0; s0 < N; s0 += per_chunk) {
      StepChunk chunk;
      chunk.first_token = s0 * n;
      for (int64_t i = s0; i < std::min(N, s0 + per_chunk); ++i) {
        Batch& b = *members[static_cast<size_t>(i)];
        reserve_cache(b, layer);
        LayerCache& c = b.caches[static_cast<size_t>(layer)];
        chunk.runs.push_back(AttentionRun{cuda::SequenceBatch{1, n, b.past, c.rows}, &c, 0, (i - s0) * n});
        chunk.tokens += n;
      }
      chunks.push_back(std::move(chunk));
    }
    // One chunk: the layer's last kernel (hc_post) checks its output for non-finite values itself.
    const bool checked_in_layer = chunks.size() == 1;
    compute_chunks(layer, batch_->streams.data<float>(), chunks, checked_in_layer ? m.first_nonfinite_slot(layer + 1) : nullptr);
    if (!checked_in_layer)
      m.check_finite(batch_->streams, N * n, n, 0, m.step_checks.where(layer + 1), layer + 1);
    m.clock.mark("checks", m.stream);
    ++batch_->next_layer;
    finish_timing();
  }
  m.read_step_checks();  // head() throws the first failure read before its own check
  head_step();
  batch_.reset();
}

GpuForward::GpuForward(const std::string& model_dir, const GpuForwardOptions& options) {
  cuda::require_device(0);
  cuda::release_pooled_device_memory();  // what an earlier pass left in the pool counts as free here
  const cuda::DeviceInfo dev = cuda::require_device(0);
  impl_ = std::make_unique<Impl>(model_dir, options);
  previous_budget_ = cuda::device_bytes_budget();
  max_chunk_sequences_ = options.max_chunk_sequences;
  if (options.gpu_memory.set()) {
    impl_->budget = options.gpu_memory.resolve(dev.total_memory);
    cuda::set_device_bytes_budget(impl_->budget);
  } else {
    impl_->budget = dev.free_memory + cuda::device_bytes_in_use();
  }
  Impl& m = *impl_;
  m.keep_resident = options.keep_resident && stored_bytes(m.ckpt, m.groups) <= m.budget / 2;
  if (m.keep_resident) m.resident.resize(m.groups.size());
}

bool GpuForward::resident() const { return impl_->keep_resident; }

GpuForward::~GpuForward() {
  // The pass's memory goes back to the device, not only to its pool (which keeps what is freed into
  // it): another pass or process sizes itself from the free memory. The batch first (its buffers
  // follow the pass's stream), then the pass.
  batch_.reset();
  impl_.reset();
  try {
    cuda::release_pooled_device_memory();
  } catch (const std::exception&) {  // a device already failed: nothing to give back
  }
  cuda::set_device_bytes_budget(previous_budget_);
}

const engine::ModelConfig& GpuForward::config() const { return impl_->cfg; }

void GpuForward::start_groups(int64_t first_layer) {
  Impl& m = *impl_;
  // Groups: [embedding, layer 0 .. layer L-1, head]; a batch that starts at a later layer skips ahead.
  const int64_t first = first_layer > 0 ? 1 + first_layer : 0;
  std::vector<io::TensorGroup> to_read;
  for (size_t i = static_cast<size_t>(first); i < m.groups.size(); ++i)
    if (!m.keep_resident || !m.resident[i].loaded()) to_read.push_back(m.groups[i]);
  batch_->prefetcher.reset();
  if (!to_read.empty()) {
    io::PrefetchOptions po;
    po.allocator = cuda::pinned_host_allocator();
    batch_->prefetcher = std::make_unique<io::TensorPrefetcher>(m.ckpt, std::move(to_read), po);
  }
  batch_->next_group_index = first;
  batch_->next_layer = first_layer;
}

// Resident mode: the group in use goes back to its place.
void GpuForward::park_group() {
  Impl& m = *impl_;
  if (!m.keep_resident || m.current_group < 0) return;
  std::swap(m.group, m.resident[static_cast<size_t>(m.current_group)]);
  m.current_group = -1;
}

// Starts the timing of a step: the wait for the reader and the copy are measured here, the
// rest of the step is compute (finish_timing).
void GpuForward::next_group() {
  const auto t0 = std::chrono::steady_clock::now();
  timing_ = {};
  Impl& m = *impl_;
  park_group();
  if (m.keep_resident) m.group = {};  // a group that was not kept goes (a parked one left an empty object)
  else m.decoded_small.clear();       // streaming: no group comes back, neither do its small weights
  const int64_t index = batch_->next_group_index++;
  if (m.keep_resident && m.resident[static_cast<size_t>(index)].loaded()) {
    std::swap(m.group, m.resident[static_cast<size_t>(index)]);  // nothing to read
    m.current_group = index;
    cuda::reset_device_bytes_peak();
    step_start_ = std::chrono::steady_clock::now();
    m.clock.start(m.stream, !m.step_checks.active);
    return;
  }
  cuda::reset_device_bytes_peak();
  std::optional<io::PrefetchedGroup> g;
  if (batch_->prefetcher) g = batch_->prefetcher->next();
  if (!g) throw Error("GPU forward: the checkpoint's groups ended early");
  const auto t1 = std::chrono::steady_clock::now();
  m.group.load(*g, m.stream);
  for (const io::PrefetchedTensor& t : g->tensors()) timing_.bytes += t.bytes.size();
  // The last group read: the reader and its pinned slots go now, at the end of this pass, not at
  // the start of the next one (measured: ~300 ms added to the first decode step).
  if (batch_->next_group_index == static_cast<int64_t>(m.groups.size())) {
    g.reset();
    batch_->prefetcher.reset();
  }
  // Kept while the resident groups take at most half the budget (another pass may share the device:
  // eval runs two models side by side); a group past that streams on every pass.
  if (m.keep_resident && cuda::device_bytes_in_use() <= m.budget / 2) m.current_group = index;
  const auto t2 = std::chrono::steady_clock::now();
  timing_.read_wait_seconds = std::chrono::duration<double>(t1 - t0).count();
  timing_.copy_seconds = std::chrono::duration<double>(t2 - t1).count();
  step_start_ = t2;
  m.clock.start(m.stream, !m.step_checks.active);
}

void GpuForward::finish_timing() {
  timing_.compute_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start_).count();
  timing_.device_peak_bytes = cuda::device_bytes_peak();
  // Inside a decode step the stage split would cost a synchronisation per layer (host time only then).
  if (impl_->step_checks.active) timing_.stage_seconds.clear();
  else timing_.stage_seconds = impl_->clock.seconds();
  timing_.host_stage_seconds = impl_->clock.host_seconds();
}

// As many of the batch's sequences as fit the budget beside what the device holds now (the hidden
// streams, the group's bytes), leaving room for a decoded weight, the products' workspaces and
// small buffers; InputError naming `what` where not even one sequence fits.
int64_t GpuForward::sequences_per_chunk(int64_t bytes_per_token, const std::string& what) const {
  const Impl& m = *impl_;
  const auto& b = m.cfg.base;
  const int64_t H = b.hidden_size, I = b.moe_intermediate_size;
  const int64_t widest = std::max({b.num_attention_heads * b.head_dim * std::max<int64_t>(b.q_lora_rank, 1),
                                   b.o_groups * b.o_lora_rank * H, 3 * I * H, H * H});
  const size_t reserve = static_cast<size_t>(widest) * 2 + (size_t{1} << 30);  // decoded weights; 1 GiB slack
  const size_t in_use = cuda::device_bytes_in_use();
  const size_t per_sequence = static_cast<size_t>(bytes_per_token * batch_->seq);
  const size_t room = m.budget > in_use + reserve ? m.budget - in_use - reserve : 0;
  const int64_t fit = static_cast<int64_t>(room / std::max<size_t>(per_sequence, 1));
  if (fit < 1)
    throw InputError(what + ": one sequence of " + std::to_string(batch_->seq) + " tokens needs about " +
                     gib(per_sequence + reserve) + " of GPU memory beside the " + gib(in_use) +
                     " held (this group's weights and the hidden streams); the budget is " + gib(m.budget) +
                     " (--gpu-memory)");
  const int64_t cap = max_chunk_sequences_ > 0 ? max_chunk_sequences_ : batch_->batch;
  return std::min({fit, batch_->batch, cap});
}

void GpuForward::embed(const std::vector<int64_t>& ids, int64_t batch) {
  check_ids(ids, batch, 0, "form");
  batch_ = std::make_unique<Batch>();
  batch_->batch = batch;
  embed_tokens(ids);
}

void GpuForward::embed_continued(const std::vector<int64_t>& ids, int64_t batch, int64_t max_tokens) {
  check_ids(ids, batch, 0, "form");
  batch_ = std::make_unique<Batch>();
  batch_->batch = batch;
  batch_->continued = true;
  batch_->cache_hint = max_tokens;
  batch_->caches.resize(static_cast<size_t>(impl_->cfg.layers()));
  embed_tokens(ids);
}

void GpuForward::embed_next(const std::vector<int64_t>& ids) {
  if (!batch_ || !batch_->continued) throw Error("embed_next: no batch to continue (start it with embed_continued)");
  if (batch_->next_layer != impl_->cfg.layers())
    throw Error("embed_next: layer " + std::to_string(batch_->next_layer) + " of the last step has not run");
  check_ids(ids, batch_->batch, batch_->past + batch_->seq, "continue");
  batch_->past += batch_->seq;
  embed_tokens(ids);
}

// InputError unless ids make `batch` sequences of equal, non-zero length (their first token at
// position `past`) of ids in the vocabulary.
void GpuForward::check_ids(const std::vector<int64_t>& ids, int64_t batch, int64_t past, const char* verb) const {
  if (batch < 1 || ids.empty() || ids.size() % static_cast<size_t>(batch) != 0)
    throw InputError("token ids: " + std::to_string(ids.size()) + " ids do not " + verb + " " + std::to_string(batch) +
                     " sequences of equal, non-zero length");
  const int64_t T = static_cast<int64_t>(ids.size()), seq = T / batch, V = impl_->cfg.base.vocab_size;
  for (int64_t i = 0; i < T; ++i) {
    const int64_t id = ids[static_cast<size_t>(i)];
    if (id < 0 || id >= V)
      throw InputError("token id " + std::to_string(id) + " (sequence " + std::to_string(i / seq) + ", position " +
                       std::to_string(past + i % seq) + ") is outside the vocabulary of " + impl_->ckpt.dir() +
                       " (vocab_size " + std::to_string(V) + ")");
  }
}

// The batch's new tokens (after its `past` ones): their embedding rows in every hc stream, the
// checkpoint's groups started again from the embedding.
void GpuForward::embed_tokens(const std::vector<int64_t>& ids, std::vector<int64_t> pos) {
  const auto t0 = std::chrono::steady_clock::now();
  Impl& m = *impl_;
  const ModelConfig& cfg = m.cfg;
  const int64_t batch = batch_->batch, past = batch_->past;
  const int64_t T = static_cast<int64_t>(ids.size()), seq = T / batch, H = cfg.hidden(), hc = cfg.hc();
  const int64_t V = cfg.base.vocab_size;
  batch_->seq = seq, batch_->ids = ids;
  if (pos.empty()) {
    pos.resize(static_cast<size_t>(T));
    for (int64_t i = 0; i < T; ++i) pos[static_cast<size_t>(i)] = past + i % seq;
  }
  {
    // The batch's buffers follow the stream's order too (used on it alone, and dropped with the
    // batch or by save_batch()): a cudaMalloc and a cudaFree each, every decode step, cost the host
    // more than the small kernels they feed, and each free waits for the device. (Not what the
    // groups' loading below makes: it is kept beyond the step.)
    const cuda::StreamOrderedAllocations ordered(m.stream);
    std::vector<int64_t> inputs(static_cast<size_t>(2 * T + (T + 1) / 2));
    std::copy(pos.begin(), pos.end(), inputs.begin());
    std::copy(ids.begin(), ids.end(), inputs.begin() + T);
    auto* rows = reinterpret_cast<int32_t*>(inputs.data() + 2 * T);
    for (int64_t i = 0; i < T; ++i) rows[i] = static_cast<int32_t>(ids[static_cast<size_t>(i)]);
    batch_->inputs = m.upload_small(inputs, "positions and token ids");
    batch_->streams = floats(T * hc * H, "hidden streams");
  }
  const auto t1 = std::chrono::steady_clock::now();
  // The groups stream in (disk -> pinned slots, one reader thread) while the previous one computes.
  start_groups(0);
  const auto t2 = std::chrono::steady_clock::now();
  next_group();
  const auto t3 = std::chrono::steady_clock::now();
  const cuda::StreamOrderedAllocations ordered(m.stream);
  // Embedding rows (only the tokens' rows are decoded), copied into each of the hc streams, a chunk
  // of sequences at a time.
  const int64_t per_chunk = sequences_per_chunk(H * 4 + 4, "the embedding");
  cuda::DeviceBuffer x = floats(per_chunk * seq * H, "embedding rows");
  for (int64_t s0 = 0; s0 < batch; s0 += per_chunk) {
    const int64_t first = s0 * seq, Tc = std::min(per_chunk, batch - s0) * seq;
    gather_weight_rows_f32(m.group, m.stored, m.ckpt.dir(), "embed.weight", {V, H}, batch_->rows32() + first, Tc,
                           x.data<float>(), m.stream);
    cuda::repeat_rows(x.data<float>(), Tc, H, hc, batch_->streams.data<float>() + first * hc * H, m.stream.get());
  }
  m.clock.mark("embed.gather", m.stream);
  m.check_finite(batch_->streams, T, seq, past, "the token embedding", 0);
  m.clock.mark("embed.check", m.stream);
  finish_timing();
  // Host time before the clock started: the batch's inputs, the reader, the group.
  const auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  timing_.host_stage_seconds.insert(timing_.host_stage_seconds.begin(),
                                    {{"embed.inputs", secs(t0, t1)}, {"embed.reader", secs(t1, t2)}, {"embed.group", secs(t2, t3)}});
}

// Room in layer `layer`'s caches for every token of this step (the earlier rows kept).
void GpuForward::reserve_cache(Batch& continued, int64_t layer) {
  Impl& m = *impl_;
  const auto& b = m.cfg.base;
  LayerCache& c = continued.caches[static_cast<size_t>(layer)];
  const int64_t batch = continued.batch, past = continued.past, need = past + continued.seq;
  if (need <= c.rows) return;
  const int64_t rows = std::max({need, 2 * c.rows, continued.cache_hint});
  const AttentionKind kind = m.cfg.attention[static_cast<size_t>(layer)];
  const int64_t D = b.head_dim, dI = b.index_head_dim;
  const int64_t cmp = kind == AttentionKind::Sliding ? 0 : kind == AttentionKind::Csa ? 2 * D : D;
  const int64_t idx = kind == AttentionKind::Csa ? 2 * dI : 0;
  const std::string what = "layer " + std::to_string(layer) + " attention cache";
  auto grow = [&](cuda::DeviceBuffer& buffer, int64_t width) {
    if (width == 0) return;
    cuda::DeviceBuffer bigger = floats(batch * rows * width, what);
    if (past > 0)
      cuda::copy_2d(bigger.data(), static_cast<size_t>(rows * width) * 4, buffer.data(),
                    static_cast<size_t>(c.rows * width) * 4, static_cast<size_t>(past * width) * 4,
                    static_cast<size_t>(batch), m.stream);
    m.stream.synchronize(what.c_str());
    buffer = std::move(bigger);
  };
  grow(c.kv, D);
  grow(c.cmp_kv, cmp);
  grow(c.cmp_gate, cmp);
  grow(c.idx_kv, idx);
  grow(c.idx_gate, idx);
  c.rows = rows;
}

void GpuForward::run_layer(int64_t layer) {
  if (!batch_) throw Error("run_layer: no batch (call embed first)");
  if (layer != batch_->next_layer)
    throw Error("run_layer: layer " + std::to_string(layer) + " asked, the GPU pass streams layer " +
                std::to_string(batch_->next_layer) + " next");
  next_group();
  if (batch_->continued) reserve_cache(*batch_, layer);
  compute_layer(layer, batch_->streams.data<float>(), batch_->continued);
  impl_->check_finite(batch_->streams, batch_->tokens(), batch_->seq, batch_->past, "layer " + std::to_string(layer));
  impl_->clock.mark("checks", impl_->stream);
  ++batch_->next_layer;
  finish_timing();
}

void GpuForward::rerun_layer(int64_t layer, std::vector<float>& streams) {
  if (!batch_ || layer != batch_->next_layer - 1 || layer < 0)
    throw Error("rerun_layer: layer " + std::to_string(layer) + " is not the layer the GPU pass ran last");
  if (batch_->past > 0) throw Error("rerun_layer: the batch continues earlier tokens (whole sequences only)");
  if (streams.size() * sizeof(float) != batch_->streams.bytes())
    throw InputError("streams of " + std::to_string(streams.size()) + " values do not fit this batch (" +
                     std::to_string(batch_->streams.bytes() / sizeof(float)) + ")");
  Impl& m = *impl_;
  engine::LinearObserver* const observer = m.observer;
  m.observer = nullptr;  // the observer sees the model's own pass only
  struct Restore {
    Impl& m;
    engine::LinearObserver* o;
    ~Restore() { m.observer = o; }
  } restore{m, observer};
  cuda::DeviceBuffer other(batch_->streams.bytes(), "other hidden streams");
  cuda::copy_to_device(other.data(), streams.data(), other.bytes(), m.stream);
  compute_layer(layer, other.data<float>(), /*use_cache=*/false);
  m.check_finite(other, batch_->tokens(), batch_->seq, 0, "layer " + std::to_string(layer) + " (on other streams)");
  cuda::copy_to_host(streams.data(), other.data(), other.bytes(), m.stream);
  m.stream.synchronize("other hidden streams");
}

// The loaded layer on the batch's streams laid out at `streams` ([tokens, hc, hidden]), in place;
// with `use_cache`, the sequences continue from the layer's caches, which keep the new rows.
void GpuForward::compute_layer(int64_t layer, float* all_streams, bool use_cache) {
  const int64_t seq = batch_->seq;
  // The layer's sequences in chunks that fit the memory budget (one chunk where all fit).
  const int64_t per_chunk = sequences_per_chunk(layer_bytes_per_token(impl_->cfg), "layer " + std::to_string(layer));
  std::vector<StepChunk> chunks;
  for (int64_t s0 = 0; s0 < batch_->batch; s0 += per_chunk) {
    const int64_t n = std::min(per_chunk, batch_->batch - s0);
    LayerCache* cache = use_cache ? &batch_->caches[static_cast<size_t>(layer)] : nullptr;
    const cuda::SequenceBatch sb{n, seq, cache ? batch_->past : 0, cache ? cache->rows : 0};
    chunks.push_back({s0 * seq, n * seq, {AttentionRun{sb, cache, s0, 0}}});
  }
  compute_chunks(layer, all_streams, chunks);
}

void GpuForward::compute_chunks(int64_t layer, float* all_streams, const std::vector<StepChunk>& chunks,
                                int64_t* first_nonfinite) {
  Impl& m = *impl_;
  const ModelConfig& cfg = m.cfg;
  const int64_t H = cfg.hidden(), hc = cfg.hc(), rows = (2 + hc) * hc;
  const std::string p = "layers." + std::to_string(layer) + ".";
  const cuda::StreamOrderedAllocations ordered(m.stream);
  timing_.chunks = static_cast<int64_t>(chunks.size());
  int64_t most = 1;
  for (const StepChunk& c : chunks) most = std::max(most, c.tokens);
  cuda::HcShape shape;
  shape.tokens = most, shape.hc = hc, shape.hidden = H, shape.hc_eps = cfg.hc_eps, shape.rms_eps = cfg.rms_eps;
  shape.sinkhorn_iters = cfg.hc_sinkhorn_iters;
  cuda::DeviceBuffer x = floats(most * H, "sublayer input"), y = floats(most * H, "sublayer output");
  // The sublayer input rounded to BF16 by its norm, for every product that reads it (BF16 precision).
  const cuda::DeviceBuffer x16 = m.lin.precision() == Precision::Bf16
                                     ? cuda::DeviceBuffer(static_cast<size_t>(most * H) * 2, "sublayer input bf16")
                                     : cuda::DeviceBuffer{};
  cuda::DeviceBuffer post = floats(most * hc, "hc post"), comb = floats(most * hc * hc, "hc comb");
  cuda::DeviceBuffer scratch = floats(cuda::hc_scratch_floats(shape), "hc scratch");
  std::vector<const float*> hc_weights;  // fn, base, scale, norm of each site
  for (const char* site : {"attn", "ffn"}) {
    hc_weights.push_back(m.weight(p + "hc_" + site + "_fn", {rows, hc * H}));
    hc_weights.push_back(m.weight(p + "hc_" + site + "_base", {rows}));
    hc_weights.push_back(m.weight(p + "hc_" + site + "_scale", {3}));
    hc_weights.push_back(m.weight(p + site + "_norm.weight", {H}));
  }
  for (const StepChunk& chunk : chunks) {
    const int64_t first = chunk.first_token, Tc = chunk.tokens;
    m.last_chunk = &chunk == &chunks.back();
    shape.tokens = Tc;
    float* streams = all_streams + first * hc * H;
    for (int site = 0; site < 2; ++site) {
      const float* const* w = &hc_weights[static_cast<size_t>(4 * site)];
      // The collapsed rows come out through the sublayer's input norm (w[3], eps shape.rms_eps).
      cuda::hc_pre(streams, shape, {w[0], w[1], w[2]}, x.data<float>(), post.data<float>(), comb.data<float>(),
                   scratch.data<float>(), m.stream.get(), w[3], x16.data<uint16_t>());
      m.clock.mark("hc", m.stream);
      if (site == 0)
        m.attention(layer, x.data<float>(), x16.data<uint16_t>(), Tc, chunk.runs, batch_->positions() + first,
                    y.data<float>());
      else
        m.moe(layer, x.data<float>(), x16.data<uint16_t>(), batch_->ids.data() + first, batch_->d_ids() + first,
              Tc, first, y.data<float>());
      cuda::hc_post(streams, y.data<float>(), post.data<float>(), comb.data<float>(), shape, m.stream.get(),
                    site == 1 ? first_nonfinite : nullptr);
      m.clock.mark("hc", m.stream);
    }
  }
}

std::vector<float> GpuForward::hidden() const {
  if (!batch_) throw Error("hidden: no batch");
  std::vector<float> out(batch_->streams.bytes() / sizeof(float));
  cuda::copy_to_host(out.data(), batch_->streams.data(), out.size() * sizeof(float), impl_->stream);
  impl_->stream.synchronize("hidden streams");
  return out;
}

void GpuForward::set_hidden(const std::vector<float>& streams, int64_t after_layer) {
  if (!batch_) throw Error("set_hidden: no batch (call embed first)");
  if (streams.size() * sizeof(float) != batch_->streams.bytes())
    throw InputError("saved streams of " + std::to_string(streams.size()) + " values do not fit this batch (" +
                     std::to_string(batch_->streams.bytes() / sizeof(float)) + ")");
  if (after_layer < -1 || after_layer >= impl_->cfg.layers())
    throw InputError("saved streams after layer " + std::to_string(after_layer) + ": no such layer");
  cuda::copy_to_device(batch_->streams.data(), streams.data(), batch_->streams.bytes(), impl_->stream);
  impl_->stream.synchronize("hidden streams");
  park_group();
  start_groups(after_layer + 1);  // the reader was ahead at the wrong groups
}

std::vector<float> GpuForward::head(bool last_only) {
  const int64_t V = impl_->cfg.base.vocab_size;
  std::vector<float> out;
  run_head(last_only, [&](const float* logits, int64_t first, int64_t rows) {
    const int64_t rows_each = last_only ? 1 : batch_->seq;
    if (out.empty()) out.resize(static_cast<size_t>(batch_->batch * rows_each * V));
    cuda::copy_to_host(out.data() + first * rows_each * V, logits, static_cast<size_t>(rows * V) * 4, impl_->stream);
    impl_->stream.synchronize("head");
  });
  for (size_t i = 0; i < out.size(); ++i)
    if (!std::isfinite(out[i]))
      throw InputError(impl_->ckpt.dir() + ": non-finite logit (row " + std::to_string(i / static_cast<size_t>(V)) +
                       ", token " + std::to_string(i % static_cast<size_t>(V)) + ")");
  return out;
}

std::vector<engine::DrawnToken> GpuForward::head_draw(const std::vector<engine::TokenDraw>& draws) {
  if (!batch_ || static_cast<int64_t>(draws.size()) != batch_->batch)
    throw Error("head_draw: " + std::to_string(draws.size()) + " draws for a batch of " +
                std::to_string(batch_ ? batch_->batch : 0) + " sequences");
  const int64_t V = impl_->cfg.base.vocab_size;
  std::vector<cuda::TokenDrawResult> results;
  run_head(true, [&](const float* logits, int64_t first, int64_t rows) {
    std::vector<cuda::TokenDrawRow> asked;
    for (int64_t s = first; s < first + rows; ++s) {
      const engine::TokenDraw& d = draws[static_cast<size_t>(s)];
      cuda::TokenDrawRow r;
      r.temperature = d.temperature, r.top_p = d.top_p, r.min_p = d.min_p, r.uniform = d.uniform, r.top_k = d.top_k;
      r.top_logprobs = static_cast<int32_t>(std::clamp<int64_t>(d.top_logprobs, 0, V));
      r.logprobs = d.logprobs;
      asked.push_back(r);
    }
    for (cuda::TokenDrawResult& r : cuda::draw_tokens(logits, V, asked, impl_->stream.get())) results.push_back(std::move(r));
  });
  std::vector<engine::DrawnToken> out(results.size());
  for (size_t i = 0; i < results.size(); ++i) {
    cuda::TokenDrawResult& r = results[i];
    if (r.first_non_finite >= 0)
      throw InputError(impl_->ckpt.dir() + ": non-finite logit (row " + std::to_string(i) + ", token " +
                       std::to_string(r.first_non_finite) + ")");
    out[i].token = r.token, out[i].logprob = r.logprob;
    out[i].top_ids = std::move(r.top_ids), out[i].top_logprobs = std::move(r.top_logprobs);
  }
  return out;
}

void GpuForward::run_head(bool last_only, const std::function<void(const float*, int64_t, int64_t)>& consume) {
  Impl& m = *impl_;
  const ModelConfig& cfg = m.cfg;
  if (!batch_ || batch_->next_layer != cfg.layers())
    throw Error("head: run every layer first");
  if (!batch_->streams.data())  // a restored batch: save_batch() let its last step's streams go
    throw Error("head: the restored batch has no step to give logits for (embed_next first)");
  const int64_t H = cfg.hidden(), hc = cfg.hc(), V = cfg.base.vocab_size, seq = batch_->seq;
  // Rows per sequence: every token, or its last (a prompt's logits are a long way from the host and
  // unused when only the next token is wanted: T x vocab floats).
  const int64_t rows_each = last_only ? 1 : seq;
  next_group();
  const cuda::StreamOrderedAllocations ordered(m.stream);
  const int64_t per_chunk = sequences_per_chunk(head_bytes_per_token(cfg), "the head");
  cuda::HcShape shape;
  shape.tokens = per_chunk * seq, shape.hc = hc, shape.hidden = H, shape.hc_eps = cfg.hc_eps, shape.rms_eps = cfg.rms_eps;
  cuda::DeviceBuffer x = floats(shape.tokens * H, "final hidden"), scratch = floats(cuda::hc_scratch_floats(shape), "hc scratch");
  const float* fn = m.weight("hc_head_fn", {hc, hc * H});
  const float* base = m.weight("hc_head_base", {hc});
  const float* scale = m.weight("hc_head_scale", {1});
  const float* norm = m.weight("norm.weight", {H});
  const LinearWeight head = m.linear_weight("head.weight", V, H);
  cuda::DeviceBuffer logits = floats(per_chunk * rows_each * V, "logits");
  // The head's product reads the normed rows rounded to BF16 by the norm (BF16 precision).
  const cuda::DeviceBuffer x16 = m.lin.precision() == Precision::Bf16
                                     ? cuda::DeviceBuffer(static_cast<size_t>(shape.tokens * H) * 2, "final hidden bf16")
                                     : cuda::DeviceBuffer{};
  const float* streams = batch_->streams.data<float>();
  for (int64_t s0 = 0; s0 < batch_->batch; s0 += per_chunk) {
    const int64_t n = std::min(per_chunk, batch_->batch - s0), rows = n * rows_each;
    if (last_only && seq > 1) {  // (one token a sequence: its rows are the chunk's, one call below)
      shape.tokens = 1;
      for (int64_t s = 0; s < n; ++s)
        cuda::hc_head(streams + ((s0 + s) * seq + seq - 1) * hc * H, shape, {fn, base, scale}, x.data<float>() + s * H,
                      scratch.data<float>(), m.stream.get());
    } else {
      shape.tokens = rows;
      cuda::hc_head(streams + s0 * seq * hc * H, shape, {fn, base, scale}, x.data<float>(), scratch.data<float>(),
                    m.stream.get());
    }
    cuda::rms_norm_rows(x.data<float>(), rows, H, norm, cfg.rms_eps, x.data<float>(), m.stream.get(), x16.data<uint16_t>());
    m.linear(x.data<float>(), head, logits.data<float>(), rows, x16.data<uint16_t>());
    consume(logits.data<float>(), s0, rows);
  }
  finish_timing();
  park_group();
  m.group = {};  // the last group's device memory goes now (unless it is resident)
  if (m.step_checks.active) m.throw_step_check_failures();
}

std::vector<float> GpuForward::forward(const std::vector<int64_t>& ids, int64_t batch, std::vector<double>* layer_seconds) {
  embed(ids, batch);
  for (int64_t layer = 0; layer < impl_->cfg.layers(); ++layer) {
    const auto start = std::chrono::steady_clock::now();
    run_layer(layer);
    if (layer_seconds)
      layer_seconds->push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return head();
}

}  // namespace fp4kit::gpu_engine
