#include "calib/model_data.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/error.h"
#include "calib/tokenizer.h"
#include "engine/model_config.h"

namespace fp4kit::calib {

CalibBatch load_model_data(const ModelDataRequest& a) {
  const engine::ModelConfig cfg = engine::ModelConfig::load(a.model);
  CalibDataOptions d;
  d.vocab_size = cfg.base.vocab_size;
  {
    std::ifstream in(a.model + "/config.json");
    const auto j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_object() && j.contains("max_position_embeddings") && j["max_position_embeddings"].is_number_integer())
      d.max_seq_len = j["max_position_embeddings"].get<int64_t>();
  }
  const auto format = parse_data_format(a.format);
  if (!format) throw InputError("--data-format " + a.format + ": unknown (auto, text, jsonl, ids, safetensors)");
  const DataFormat resolved =
      a.data.empty() ? DataFormat::Text : (*format == DataFormat::Auto ? detect_data_format(a.data) : *format);
  // Token ids come in the shape they were made with unless the flags say otherwise (0 tells the
  // loader "as stored").
  const bool ids = resolved == DataFormat::TokenIds || resolved == DataFormat::Safetensors;
  d.samples = a.samples_given || !ids ? a.samples : 0;
  d.seq_len = a.seq_len_given || !ids ? a.seq_len : 0;
  std::optional<Tokenizer> tokenizer;
  if (resolved == DataFormat::Text || resolved == DataFormat::JsonLines) {
    const std::string path = a.tokenizer.empty() ? a.model + "/tokenizer.json" : a.tokenizer;
    if (!std::filesystem::exists(path))
      throw InputError(path +
                       ": no tokenizer for text data; pass --tokenizer FILE, or --data with token ids "
                       "(a .safetensors input_ids tensor or an .ids text file)");
    tokenizer.emplace(Tokenizer::load(path));
  }
  return a.data.empty() ? default_calib_data(*tokenizer, d)
                        : load_calib_data(a.data, *format, tokenizer ? &*tokenizer : nullptr, d);
}

}  // namespace fp4kit::calib
