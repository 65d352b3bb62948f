#include "models/deepseek_v4.h"

#include <charconv>
#include <regex>

#include "base/error.h"

namespace fp4kit {

namespace {

int64_t get_int(const nlohmann::json& j, const char* key, const std::string& label, std::optional<int64_t> fallback = {}) {
  if (!j.contains(key)) {
    if (fallback) return *fallback;
    throw InputError(label + ": config field '" + key + "' is missing");
  }
  const auto& v = j[key];
  if (!v.is_number_integer() || v.get<int64_t>() < 0)
    throw InputError(label + ": config field '" + key + "' must be a non-negative integer, got " + v.dump());
  return v.get<int64_t>();
}

}  // namespace

DeepseekV4Config DeepseekV4Config::from_json(const nlohmann::json& j, const std::string& label) {
  if (!j.is_object()) throw InputError(label + ": config is not a JSON object");
  DeepseekV4Config c;
  c.raw = j;
  c.vocab_size = get_int(j, "vocab_size", label);
  c.hidden_size = get_int(j, "hidden_size", label);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", label);
  c.num_attention_heads = get_int(j, "num_attention_heads", label);
  c.head_dim = get_int(j, "head_dim", label);
  c.qk_rope_head_dim = get_int(j, "qk_rope_head_dim", label, 64);
  c.q_lora_rank = get_int(j, "q_lora_rank", label);
  c.o_groups = get_int(j, "o_groups", label);
  c.o_lora_rank = get_int(j, "o_lora_rank", label);
  c.n_routed_experts = get_int(j, "n_routed_experts", label);
  c.num_experts_per_tok = get_int(j, "num_experts_per_tok", label);
  c.n_shared_experts = get_int(j, "n_shared_experts", label, 1);
  c.moe_intermediate_size = get_int(j, "moe_intermediate_size", label);
  c.index_n_heads = get_int(j, "index_n_heads", label);
  c.index_head_dim = get_int(j, "index_head_dim", label);
  c.index_topk = get_int(j, "index_topk", label, 0);
  c.num_hash_layers = get_int(j, "num_hash_layers", label, 0);
  c.num_nextn_predict_layers = get_int(j, "num_nextn_predict_layers", label, 0);
  c.hc_mult = get_int(j, "hc_mult", label, 4);
  c.sliding_window = get_int(j, "sliding_window", label, 128);
  if (j.contains("routed_scaling_factor") && j["routed_scaling_factor"].is_number())
    c.routed_scaling_factor = j["routed_scaling_factor"].get<double>();
  if (!j.contains("compress_ratios") || !j["compress_ratios"].is_array())
    throw InputError(label + ": config field 'compress_ratios' is missing or not a list");
  for (const auto& r : j["compress_ratios"]) {
    if (!r.is_number_integer()) throw InputError(label + ": config field 'compress_ratios' holds a non-integer");
    c.compress_ratios.push_back(r.get<int64_t>());
  }
  if (static_cast<int64_t>(c.compress_ratios.size()) < c.num_hidden_layers)
    throw InputError(label + ": config field 'compress_ratios' has " + std::to_string(c.compress_ratios.size()) +
                     " entries for " + std::to_string(c.num_hidden_layers) + " layers");
  c.expert_dtype = j.value("expert_dtype", std::string("fp4"));
  if (c.expert_dtype != "fp4" && c.expert_dtype != "fp8")
    throw InputError(label + ": config field 'expert_dtype' must be \"fp4\" or \"fp8\", got \"" + c.expert_dtype + "\"");
  if (c.o_groups == 0 || c.num_attention_heads * c.head_dim % c.o_groups != 0)
    throw InputError(label + ": config field 'o_groups' must divide num_attention_heads * head_dim");
  return c;
}

int64_t DeepseekV4Config::compress_ratio(int64_t layer) const {
  return layer < static_cast<int64_t>(compress_ratios.size()) ? compress_ratios[layer] : 0;
}

nlohmann::json DeepseekV4Config::to_json() const {
  nlohmann::json j = raw.is_object() ? raw : nlohmann::json::object();
  j["architectures"] = {"DeepseekV4ForCausalLM"};
  j["model_type"] = "deepseek_v4";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = 1;
  j["head_dim"] = head_dim;
  j["qk_rope_head_dim"] = qk_rope_head_dim;
  j["q_lora_rank"] = q_lora_rank;
  j["o_groups"] = o_groups;
  j["o_lora_rank"] = o_lora_rank;
  j["n_routed_experts"] = n_routed_experts;
  j["num_experts_per_tok"] = num_experts_per_tok;
  j["n_shared_experts"] = n_shared_experts;
  j["moe_intermediate_size"] = moe_intermediate_size;
  j["index_n_heads"] = index_n_heads;
  j["index_head_dim"] = index_head_dim;
  j["index_topk"] = index_topk;
  j["num_hash_layers"] = num_hash_layers;
  j["num_nextn_predict_layers"] = num_nextn_predict_layers;
  j["hc_mult"] = hc_mult;
  j["sliding_window"] = sliding_window;
  j["routed_scaling_factor"] = routed_scaling_factor;
  j["compress_ratios"] = compress_ratios;
  j["expert_dtype"] = expert_dtype;
  if (!j.contains("quantization_config"))
    j["quantization_config"] = {{"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"quant_method", "fp8"},
                                {"scale_fmt", "ue8m0"}, {"weight_block_size", {128, 128}}};
  return j;
}

namespace {

// The fields both official models share (deepseek-v4-checkpoint.md §1a).
nlohmann::json common_fields() {
  return {{"attention_bias", false}, {"attention_dropout", 0.0}, {"bos_token_id", 0}, {"eos_token_id", 1},
          {"compress_rope_theta", 160000}, {"hc_eps", 1e-6}, {"hc_sinkhorn_iters", 20}, {"hidden_act", "silu"},
          {"initializer_range", 0.02}, {"max_position_embeddings", 1048576}, {"norm_topk_prob", true},
          {"rms_norm_eps", 1e-6},
          {"rope_scaling", {{"beta_fast", 32}, {"beta_slow", 1}, {"factor", 16}, {"original_max_position_embeddings", 65536}, {"type", "yarn"}}},
          {"rope_theta", 10000}, {"scoring_func", "sqrtsoftplus"}, {"swiglu_limit", 10.0}, {"tie_word_embeddings", false},
          {"topk_method", "noaux_tc"}, {"torch_dtype", "bfloat16"}, {"use_cache", true}};
}

std::vector<int64_t> alternating_ratios(int64_t layers, int64_t first, int64_t second) {
  std::vector<int64_t> r;
  for (int64_t i = 0; i < layers; ++i) r.push_back(i < 2 ? (i == 0 ? first : second) : (i % 2 == 0 ? 4 : 128));
  r.push_back(0);  // MTP
  return r;
}

DeepseekV4Config flash() {
  DeepseekV4Config c;
  c.raw = common_fields();
  c.compress_ratios = alternating_ratios(c.num_hidden_layers, 0, 0);
  return c;
}

DeepseekV4Config pro() {
  DeepseekV4Config c;
  c.raw = common_fields();
  c.hidden_size = 7168;
  c.num_hidden_layers = 61;
  c.num_attention_heads = 128;
  c.q_lora_rank = 1536;
  c.o_groups = 16;
  c.n_routed_experts = 384;
  c.moe_intermediate_size = 3072;
  c.routed_scaling_factor = 2.5;
  c.index_topk = 1024;
  c.compress_ratios = alternating_ratios(c.num_hidden_layers, 128, 128);
  return c;
}

DeepseekV4Config tiny() {
  DeepseekV4Config c;
  c.raw = common_fields();
  c.raw["sliding_window"] = 64;
  c.vocab_size = 1024;
  c.hidden_size = 128;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.head_dim = 192;
  c.q_lora_rank = 128;
  c.o_groups = 2;
  c.o_lora_rank = 128;
  c.n_routed_experts = 8;
  c.num_experts_per_tok = 2;
  c.moe_intermediate_size = 128;
  c.index_n_heads = 8;
  c.index_head_dim = 128;
  c.index_topk = 8;
  c.num_hash_layers = 2;
  c.sliding_window = 64;
  c.compress_ratios = {0, 4, 128, 4, 0};
  return c;
}

}  // namespace

std::vector<std::string> deepseek_v4_preset_names() { return {"v4-flash", "v4-pro", "tiny"}; }

std::optional<DeepseekV4Config> deepseek_v4_preset(std::string_view spec) {
  const size_t colon = spec.find(':');
  const std::string_view name = spec.substr(0, colon);
  DeepseekV4Config c;
  if (name == "v4-flash") c = flash();
  else if (name == "v4-pro") c = pro();
  else if (name == "tiny") c = tiny();
  else return std::nullopt;
  if (colon == std::string_view::npos) return c;
  std::string_view rest = spec.substr(colon + 1);
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    const size_t eq = item.find('=');
    int64_t value = 0;
    const std::string_view key = item.substr(0, eq);
    const std::string_view text = eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1);
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (eq == std::string_view::npos || ec != std::errc{} || ptr != text.data() + text.size() || value < 0)
      throw InputError("preset '" + std::string(spec) + "': expected key=N, got '" + std::string(item) + "'");
    if (key == "layers") {
      // Keep the preset's pattern for the first layers, then the MTP entry.
      std::vector<int64_t> ratios(c.compress_ratios.begin(), c.compress_ratios.end() - c.num_nextn_predict_layers);
      ratios.resize(static_cast<size_t>(value), 4);
      for (int64_t i = c.num_hidden_layers; i < value; ++i) ratios[i] = (i % 2 == 0) ? 4 : 128;
      for (int64_t m = 0; m < c.num_nextn_predict_layers; ++m) ratios.push_back(0);
      c.num_hidden_layers = value;
      c.compress_ratios = ratios;
    } else if (key == "experts") {
      c.n_routed_experts = value;
      c.num_experts_per_tok = std::min(c.num_experts_per_tok, value);
    } else if (key == "mtp") {
      c.compress_ratios.resize(static_cast<size_t>(c.num_hidden_layers));
      for (int64_t m = 0; m < value; ++m) c.compress_ratios.push_back(0);
      c.num_nextn_predict_layers = value;
    } else if (key == "hash_layers") {
      c.num_hash_layers = value;
    } else if (key == "vocab") {
      c.vocab_size = value;
    } else {
      throw InputError("preset '" + std::string(spec) + "': unknown key '" + std::string(key) +
                       "' (known: layers, experts, mtp, hash_layers, vocab)");
    }
  }
  return c;
}

std::string_view role_name(TensorRole r) {
  switch (r) {
    case TensorRole::Embedding: return "embedding";
    case TensorRole::Head: return "head";
    case TensorRole::Norm: return "norm";
    case TensorRole::HyperConnection: return "mhc";
    case TensorRole::AttentionProjection: return "attention";
    case TensorRole::AttentionSink: return "attention_sink";
    case TensorRole::CompressorProjection: return "compressor";
    case TensorRole::CompressorApe: return "compressor_ape";
    case TensorRole::IndexerProjection: return "indexer";
    case TensorRole::IndexerWeightsProj: return "indexer_weights_proj";
    case TensorRole::Router: return "router";
    case TensorRole::RouterBias: return "router_bias";
    case TensorRole::HashTable: return "hash_table";
    case TensorRole::RoutedExpert: return "routed_expert";
    case TensorRole::SharedExpert: return "shared_expert";
    case TensorRole::MtpProjection: return "mtp_projection";
    case TensorRole::Unknown: return "unknown";
  }
  return "unknown";
}

std::string_view storage_name(Storage s) {
  switch (s) {
    case Storage::Plain: return "plain";
    case Storage::Fp8BlockE8M0: return "fp8-block128/e8m0";
    case Storage::Fp8BlockF32: return "fp8-block128/f32";
    case Storage::Mxfp4: return "mxfp4/e8m0x32";
    case Storage::Nvfp4: return "nvfp4/e4m3x16";
  }
  return "?";
}

TensorRole deepseek_v4_role(std::string_view name) {
  auto has = [&](std::string_view s) { return name.find(s) != std::string_view::npos; };
  auto ends = [&](std::string_view s) { return name.size() >= s.size() && name.substr(name.size() - s.size()) == s; };
  if (name == "embed.weight") return TensorRole::Embedding;
  if (name == "head.weight") return TensorRole::Head;
  if (has(".experts.")) return TensorRole::RoutedExpert;
  if (has(".shared_experts.")) return TensorRole::SharedExpert;
  if (has("hc_")) return TensorRole::HyperConnection;
  if (ends("attn_sink")) return TensorRole::AttentionSink;
  if (ends(".ape")) return TensorRole::CompressorApe;
  if (has(".compressor.") && !ends("norm.weight")) return TensorRole::CompressorProjection;
  if (has(".indexer.weights_proj")) return TensorRole::IndexerWeightsProj;
  if (has(".indexer.wq_b")) return TensorRole::IndexerProjection;
  if (ends("ffn.gate.tid2eid")) return TensorRole::HashTable;
  if (ends("ffn.gate.bias")) return TensorRole::RouterBias;
  if (ends("ffn.gate.weight")) return TensorRole::Router;
  if (has("norm")) return TensorRole::Norm;
  if (has(".attn.w")) return TensorRole::AttentionProjection;
  if (has("e_proj") || has("h_proj")) return TensorRole::MtpProjection;
  return TensorRole::Unknown;
}

namespace {

class SpecBuilder {
 public:
  explicit SpecBuilder(std::vector<TensorSpec>& out) : out_(out) {}
  void plain(std::string name, DType dtype, std::vector<int64_t> shape) {
    const TensorRole role = deepseek_v4_role(name);
    out_.push_back({std::move(name), dtype, std::move(shape), role, Storage::Plain, false});
  }
  // FP8 weight [rows, cols] + E8M0 scale [ceil(rows/128), ceil(cols/128)]
  void fp8(const std::string& module, int64_t rows, int64_t cols) {
    const TensorRole role = deepseek_v4_role(module + ".weight");
    out_.push_back({module + ".weight", DType::F8_E4M3, {rows, cols}, role, Storage::Fp8BlockE8M0, false});
    out_.push_back({module + ".scale", DType::F8_E8M0, {(rows + 127) / 128, (cols + 127) / 128}, role, Storage::Fp8BlockE8M0, true});
  }
  // MXFP4 weight I8 [rows, cols/2] + E8M0 scale [rows, cols/32]
  void fp4(const std::string& module, int64_t rows, int64_t cols) {
    const TensorRole role = deepseek_v4_role(module + ".weight");
    out_.push_back({module + ".weight", DType::I8, {rows, cols / 2}, role, Storage::Mxfp4, false});
    out_.push_back({module + ".scale", DType::F8_E8M0, {rows, cols / 32}, role, Storage::Mxfp4, true});
  }

 private:
  std::vector<TensorSpec>& out_;
};

void block_tensors(const DeepseekV4Config& c, SpecBuilder& b, const std::string& p, int64_t layer, bool mtp) {
  const int64_t H = c.hidden_size, hc = c.hc_mult, mix = (2 + hc) * hc;
  b.plain(p + "attn_norm.weight", DType::BF16, {H});
  b.plain(p + "ffn_norm.weight", DType::BF16, {H});
  for (const char* k : {"attn", "ffn"}) {
    b.plain(p + "hc_" + k + "_fn", DType::F32, {mix, hc * H});
    b.plain(p + "hc_" + k + "_base", DType::F32, {mix});
    b.plain(p + "hc_" + k + "_scale", DType::F32, {3});
  }
  const std::string a = p + "attn.";
  const int64_t qdim = c.num_attention_heads * c.head_dim;
  b.fp8(a + "wq_a", c.q_lora_rank, H);
  b.plain(a + "q_norm.weight", DType::BF16, {c.q_lora_rank});
  b.fp8(a + "wq_b", qdim, c.q_lora_rank);
  b.fp8(a + "wkv", c.head_dim, H);
  b.plain(a + "kv_norm.weight", DType::BF16, {c.head_dim});
  b.fp8(a + "wo_a", c.o_groups * c.o_lora_rank, qdim / c.o_groups);
  b.fp8(a + "wo_b", H, c.o_groups * c.o_lora_rank);
  b.plain(a + "attn_sink", DType::F32, {c.num_attention_heads});
  const int64_t ratio = c.compress_ratio(layer);
  if (ratio != 0) {
    const int64_t coff = ratio == 4 ? 2 : 1;
    b.plain(a + "compressor.wkv.weight", DType::BF16, {coff * c.head_dim, H});
    b.plain(a + "compressor.wgate.weight", DType::BF16, {coff * c.head_dim, H});
    b.plain(a + "compressor.norm.weight", DType::BF16, {c.head_dim});
    b.plain(a + "compressor.ape", DType::F32, {ratio, coff * c.head_dim});
    if (ratio == 4) {
      b.fp8(a + "indexer.wq_b", c.index_n_heads * c.index_head_dim, c.q_lora_rank);
      b.plain(a + "indexer.weights_proj.weight", DType::BF16, {c.index_n_heads, H});
      b.plain(a + "indexer.compressor.wkv.weight", DType::BF16, {coff * c.index_head_dim, H});
      b.plain(a + "indexer.compressor.wgate.weight", DType::BF16, {coff * c.index_head_dim, H});
      b.plain(a + "indexer.compressor.norm.weight", DType::BF16, {c.index_head_dim});
      b.plain(a + "indexer.compressor.ape", DType::F32, {ratio, coff * c.index_head_dim});
    }
  }
  const std::string f = p + "ffn.";
  b.plain(f + "gate.weight", DType::BF16, {c.n_routed_experts, H});
  if (!mtp && layer < c.num_hash_layers) b.plain(f + "gate.tid2eid", DType::I64, {c.vocab_size, c.num_experts_per_tok});
  else b.plain(f + "gate.bias", DType::F32, {c.n_routed_experts});
  const int64_t I = c.moe_intermediate_size;
  for (int64_t e = 0; e < c.n_routed_experts; ++e) {
    const std::string x = f + "experts." + std::to_string(e) + ".";
    if (c.expert_dtype == "fp8") {
      b.fp8(x + "w1", I, H);
      b.fp8(x + "w2", H, I);
      b.fp8(x + "w3", I, H);
    } else {
      b.fp4(x + "w1", I, H);
      b.fp4(x + "w2", H, I);
      b.fp4(x + "w3", I, H);
    }
  }
  const int64_t S = I * c.n_shared_experts;
  b.fp8(f + "shared_experts.w1", S, H);
  b.fp8(f + "shared_experts.w2", H, S);
  b.fp8(f + "shared_experts.w3", S, H);
  if (mtp) {
    b.fp8(p + "e_proj", H, H);
    b.fp8(p + "h_proj", H, H);
    b.plain(p + "enorm.weight", DType::BF16, {H});
    b.plain(p + "hnorm.weight", DType::BF16, {H});
    b.plain(p + "norm.weight", DType::BF16, {H});
    b.plain(p + "hc_head_fn", DType::F32, {hc, hc * H});
    b.plain(p + "hc_head_base", DType::F32, {hc});
    b.plain(p + "hc_head_scale", DType::F32, {1});
  }
}

}  // namespace

std::vector<TensorSpec> deepseek_v4_tensors(const DeepseekV4Config& c) {
  std::vector<TensorSpec> out;
  SpecBuilder b(out);
  b.plain("embed.weight", DType::BF16, {c.vocab_size, c.hidden_size});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) block_tensors(c, b, "layers." + std::to_string(l) + ".", l, false);
  for (int64_t m = 0; m < c.num_nextn_predict_layers; ++m)
    block_tensors(c, b, "mtp." + std::to_string(m) + ".", c.num_hidden_layers + m, true);
  b.plain("norm.weight", DType::BF16, {c.hidden_size});
  b.plain("head.weight", DType::BF16, {c.vocab_size, c.hidden_size});
  b.plain("hc_head_fn", DType::F32, {c.hc_mult, c.hc_mult * c.hidden_size});
  b.plain("hc_head_base", DType::F32, {c.hc_mult});
  b.plain("hc_head_scale", DType::F32, {1});
  return out;
}

}  // namespace fp4kit
