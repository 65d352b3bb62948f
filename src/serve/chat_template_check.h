#pragma once
// Which chat format a model's own files ask for, decided before serving it. A Jinja template the
// model ships (MODEL/chat_template.jinja, else tokenizer_config.json's "chat_template") is
// recognized by what it writes:
//   - none: V4 shipped none at release; DeepSeek V4's encoder rules apply (chat_template.h);
//   - a template writing V4's tool format (the "｜DSML｜tool_calls" block and <tool_result>): the
//     template DeepSeek later added to the V4 repositories "equivalent to the reference encoder";
//     the encoder's rules apply;
//   - any other (DeepSeek V3 / R1 / V3.1 and other transformers-style templates): rendered with
//     fp4kit's Jinja engine (jinja_template.h), with bos_token and eos_token from
//     tokenizer_config.json (DeepSeek's when it names none); a template outside the engine's subset
//     is refused, naming the file, the line and the construct.
// `force_v4` (serve --chat-format deepseek-v4) uses the V4 rules whatever the files hold.
#include <memory>
#include <optional>
#include <string>

#include "serve/jinja_chat_prompt.h"
#include "serve/jinja_template.h"
#include "serve/tool_call_stream.h"

namespace fp4kit::serve {

struct ChatFormat {
  std::string description;                       // which rules apply and why, one line
  std::shared_ptr<const JinjaTemplate> jinja;    // null: DeepSeek V4's encoder rules
  TemplateSpecialTokens tokens;                  // with a template: its bos_token and eos_token
  // How the model writes tool calls: V4's DSML with the encoder; DeepSeek V3's with a template that
  // writes <｜tool▁calls▁begin｜>; none is read with any other template (calls stay text).
  std::optional<ToolCallSyntax> tool_calls = ToolCallSyntax::DeepSeekV4;
};

// InputError for a template that cannot be served, or a tokenizer_config.json that is not JSON.
ChatFormat resolve_chat_format(const std::string& model_dir, bool force_v4);

}  // namespace fp4kit::serve
