#pragma once
// A byte-level BPE tokenizer read from a Hugging Face tokenizer.json, as DeepSeek V3/V4 and GPT-2-like
// models ship it. Encodes exactly as the `tokenizers` library does for the parts of the format it
// supports; everything else is refused at load with a message naming the file and the field:
//   normalizer      none, or an empty Sequence
//   pre_tokenizer   ByteLevel, or a Sequence of Split (behavior Isolated, a regex we have a scanner
//                   for: DeepSeek V3's three, GPT-2's) ending in one ByteLevel
//   model           BPE (merges as "a b" strings or [a, b] pairs; ignore_merges; unk_token), no dropout,
//                   no subword prefix/suffix, no byte_fallback
//   added_tokens    matched before BPE (lstrip, rstrip, normalized; not single_word)
//   post_processor  none, ByteLevel, TemplateProcessing, BertProcessing, RobertaProcessing, Sequence
//   decoder         ByteLevel or none (decode() refuses others)
// The special tokens added around a text (BOS...) come from tokenizer_config.json beside the file when
// it has add_bos_token/add_eos_token (as transformers' Llama tokenizers do, DeepSeek's included), else
// from the post_processor's single-sequence template.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace fp4kit::calib {

class Tokenizer {
 public:
  // `path`: a tokenizer.json, or a model directory holding one. InputError for a missing file, JSON
  // that does not parse (with its line and column) and every unsupported or inconsistent field.
  static Tokenizer load(const std::string& path);
  // From the text of a tokenizer.json; `config` is tokenizer_config.json's content (or null);
  // `label` names the source in messages.
  static Tokenizer from_json(std::string_view tokenizer_json, const nlohmann::json& config, const std::string& label);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Token ids of `text` (UTF-8; InputError otherwise), with the special prefix/suffix when asked.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;
  // The text of `ids` (ByteLevel decoder; added tokens as their content). InputError for an unknown
  // id or a tokenizer without a ByteLevel decoder.
  std::string decode(std::span<const int32_t> ids) const;
  // The pre-tokenized pieces of `text` in the vocabulary's ByteLevel spelling (added tokens are not
  // looked for): what `tokenizers`' pre_tokenize_str returns.
  std::vector<std::string> pre_tokenize(std::string_view text) const;

  // The vocabulary's spelling of a token ("" for an unused id).
  std::string token_text(int32_t id) const;
  std::optional<int32_t> token_id(std::string_view token) const;
  // One past the largest id of the vocabulary and the added tokens.
  int32_t vocab_size() const;
  // Put before / after every encoded text when add_special_tokens is set (e.g. {BOS} / {}).
  const std::vector<int32_t>& special_prefix() const;
  const std::vector<int32_t>& special_suffix() const;
  // Where the special prefix/suffix rule came from, for reports: "tokenizer_config.json add_bos_token",
  // "post_processor TemplateProcessing", "none".
  const std::string& special_tokens_source() const;
  const std::string& label() const;

  struct Impl;  // opaque; public so that the loader's helpers can fill it

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fp4kit::calib
