#pragma once
// The token ids a command runs a model on, as `--data`, `--data-format`, `--tokenizer`, `--samples`
// and `--seq-len` describe them (calibrate, eval): the file's ids, or its text tokenized with the
// model's tokenizer (MODEL/tokenizer.json unless given), or the built-in corpus without `--data`,
// checked against the model's vocabulary and max_position_embeddings. InputError naming the file for
// an unknown format or text without a tokenizer (calib_data.h lists the other errors).
#include <cstdint>
#include <string>

#include "calib/calib_data.h"

namespace fp4kit::calib {

struct ModelDataRequest {
  std::string model;  // checkpoint directory
  std::string data;   // "" = the built-in corpus
  std::string format = "auto";
  std::string tokenizer;  // "" = MODEL/tokenizer.json
  int64_t samples = 0, seq_len = 0;
  // Whether the user gave them: token ids come in the shape they were made with unless the flags say
  // otherwise (every stored sequence at its stored length).
  bool samples_given = true, seq_len_given = true;
};

CalibBatch load_model_data(const ModelDataRequest& request);

}  // namespace fp4kit::calib
