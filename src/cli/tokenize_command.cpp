// fp4kit tokenize: the token ids the model's tokenizer gives a text (for checking calibration input).
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "calib/tokenizer.h"
#include "cli/commands.h"

namespace fp4kit::cli {

// Named, not anonymous: the command files compile as one unit (unity build).
namespace tokenize_command {
struct TokenizeArgs {
  std::string tokenizer;
  std::string text;
  bool json = false;
  bool no_special = false;
  bool tokens = false;
};

void run(const TokenizeArgs& a) {
  const calib::Tokenizer tok = calib::Tokenizer::load(a.tokenizer);
  const std::vector<int32_t> ids = tok.encode(a.text, !a.no_special);
  if (a.json) {
    nlohmann::json tokens = nlohmann::json::array();
    for (int32_t id : ids) tokens.push_back(tok.token_text(id));
    const nlohmann::json report = {{"tokenizer", tok.label()},
                                   {"special_tokens", a.no_special ? "off" : tok.special_tokens_source()},
                                   {"count", ids.size()},
                                   {"ids", ids},
                                   {"tokens", tokens}};
    std::printf("%s\n", report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  if (a.tokens) {
    for (int32_t id : ids) std::printf("%8d  %s\n", id, tok.token_text(id).c_str());
    return;
  }
  for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
  std::printf("\n");
}

void add_command(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  auto* cmd = app.add_subcommand("tokenize",
                                 "Print the token ids of TEXT with a model's byte-level BPE tokenizer.json, the ids "
                                 "calibration feeds the model (special tokens such as BOS included unless --no-special).");
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer.json, or the model directory holding it")->required();
  cmd->add_option("TEXT", args->text, "The text to encode")->required();
  cmd->add_flag("--json", args->json, "Print one JSON document: ids, token spellings, count");
  cmd->add_flag("--tokens", args->tokens, "One line per token: id and its vocabulary spelling");
  cmd->add_flag("--no-special", args->no_special, "Leave out the special tokens the tokenizer adds (BOS)");
  cmd->callback([args] { run(*args); });
}

const CommandRegistration kRegistration(92, add_command);

}  // namespace tokenize_command

}  // namespace fp4kit::cli
