#pragma once
// Which chat format a model's own files ask for, checked before serving it. fp4kit renders prompts
// by DeepSeek V4's encoder rules (chat_template.h) and runs no Jinja engine, so a Jinja template the
// model ships (MODEL/chat_template.jinja, else tokenizer_config.json's "chat_template") is
// recognized by what it writes:
//   - none: V4 shipped none at release; the encoder's rules apply;
//   - a template writing V4's tool format (the "｜DSML｜tool_calls" block and <tool_result>): the
//     template DeepSeek later added to the V4 repositories "equivalent to the reference encoder";
//     the encoder's rules apply;
//   - a DeepSeek V3 / R1 / V3.1 template (its <｜tool▁calls▁begin｜> tokens): a different format than
//     V4 was trained on: refused, naming it;
//   - anything else: refused, naming the file.
// `force_v4` (serve --chat-format deepseek-v4) uses the V4 rules whatever the files hold.
#include <string>

namespace fp4kit::serve {

// A line saying which rules apply and why; InputError for a template that is refused.
std::string check_chat_template(const std::string& model_dir, bool force_v4);

}  // namespace fp4kit::serve
