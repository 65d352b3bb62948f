// Request bodies: what is accepted, and that every refusal is a 400 naming the field at fault.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "serve/api_error.h"
#include "serve/openai_request.h"

namespace fp4kit::serve {
namespace {

using nlohmann::json;

// The field a refusal names, or "accepted".
std::string refused_field(const std::string& body, bool chat = false) {
  try {
    const json j = parse_json_body(body);
    if (chat) parse_chat_request(j);
    else parse_completion_request(j);
    return "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400) << body;
    EXPECT_EQ(e.type(), "invalid_request_error") << body;
    return e.param().empty() ? e.code() : e.param();
  }
}

TEST(ServeRequest, ParsesACompletionWithEverySamplingField) {
  const CompletionRequest r = parse_completion_request(json::parse(
      R"({"model":"m","prompt":"hi","max_tokens":5,"temperature":0.5,"top_p":0.9,"top_k":40,"min_p":0.05,
          "seed":-3,"stop":["a","bc"],"stream":true,"logprobs":2,"unknown_field":{"x":1}})"));
  EXPECT_EQ(r.prompt, "hi");
  EXPECT_FALSE(r.prompt_is_ids);
  EXPECT_EQ(r.generation.model, "m");
  EXPECT_EQ(r.generation.max_tokens, 5);
  EXPECT_DOUBLE_EQ(r.generation.sampling.temperature, 0.5);
  EXPECT_DOUBLE_EQ(r.generation.sampling.top_p, 0.9);
  EXPECT_EQ(r.generation.sampling.top_k, 40);
  EXPECT_DOUBLE_EQ(r.generation.sampling.min_p, 0.05);
  EXPECT_EQ(r.generation.sampling.seed, static_cast<uint64_t>(int64_t{-3}));
  EXPECT_EQ(r.generation.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_TRUE(r.generation.stream);
  EXPECT_TRUE(r.generation.logprobs);
  EXPECT_TRUE(r.generation.sampling.logprobs);
  EXPECT_EQ(r.generation.sampling.top_logprobs, 2);
  const CompletionRequest ids = parse_completion_request(json::parse(R"({"prompt":[0,15,7],"stop":"x"})"));
  EXPECT_TRUE(ids.prompt_is_ids);
  EXPECT_EQ(ids.prompt_ids, (std::vector<int32_t>{0, 15, 7}));
  EXPECT_EQ(ids.generation.stop, (std::vector<std::string>{"x"}));
  EXPECT_FALSE(ids.generation.max_tokens.has_value());
  // A request that reports no logprobs does not have the draw compute them.
  EXPECT_FALSE(ids.generation.logprobs);
  EXPECT_FALSE(ids.generation.sampling.logprobs);
}

TEST(ServeRequest, ParsesChatMessagesAndTheThinkingSwitch) {
  const ChatRequest r = parse_chat_request(json::parse(
      R"({"messages":[{"role":"developer","content":"s"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
          "max_completion_tokens":3,"logprobs":true,"top_logprobs":2,"chat_template_kwargs":{"enable_thinking":false}})"));
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_FALSE(r.thinking);
  EXPECT_EQ(r.generation.max_tokens, 3);
  EXPECT_EQ(r.generation.sampling.top_logprobs, 2);
  EXPECT_TRUE(parse_chat_request(json::parse(R"({"messages":[{"role":"user","content":"x"}]})")).thinking);
  EXPECT_FALSE(parse_chat_request(json::parse(R"({"messages":[{"role":"user","content":"x"}],"chat_template_kwargs":{"thinking":false}})")).thinking);
}

TEST(ServeRequest, RefusalsNameTheField) {
  EXPECT_EQ(refused_field(R"({"prompt": "x",)"), "invalid_json");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "max_tokens": 1e400})"), "invalid_json");
  EXPECT_EQ(refused_field(R"([1, 2])"), "invalid_value");
  EXPECT_EQ(refused_field(R"({})"), "prompt");
  EXPECT_EQ(refused_field(R"({"prompt": ""})"), "prompt");
  EXPECT_EQ(refused_field(R"({"prompt": 5})"), "prompt");
  EXPECT_EQ(refused_field(R"({"prompt": [1, -2]})"), "prompt");
  EXPECT_EQ(refused_field(R"({"prompt": ["a", "b"]})"), "prompt");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "max_tokens": -1})"), "max_tokens");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "max_tokens": 0})"), "max_tokens");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "max_tokens": 2.5})"), "max_tokens");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "max_tokens": 18446744073709551615})"), "max_tokens");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "max_tokens": "5"})"), "max_tokens");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "temperature": -0.1})"), "temperature");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "temperature": "hot"})"), "temperature");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "top_p": 0})"), "top_p");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "top_p": 1.5})"), "top_p");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "top_k": -2})"), "top_k");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "min_p": 2})"), "min_p");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "seed": "s"})"), "seed");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "n": 2})"), "n");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "stream": "yes"})"), "stream");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "stop": [1]})"), "stop");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "stop": ""})"), "stop");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "logprobs": 21})"), "logprobs");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "echo": true})"), "echo");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "model": 3})"), "model");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "presence_penalty": 1})"), "presence_penalty");
  EXPECT_EQ(refused_field(R"({"prompt": "x", "temperature": null, "n": null})"), "accepted");
  EXPECT_EQ(refused_field(R"({"messages": []})", true), "messages");
  EXPECT_EQ(refused_field(R"({"messages": "hi"})", true), "messages");
  EXPECT_EQ(refused_field(R"({"messages": [{"role": "function", "content": "x"}]})", true), "messages[0].role");
  EXPECT_EQ(refused_field(R"({"messages": [{"role": "tool", "content": "x"}]})", true), "accepted");
  EXPECT_EQ(refused_field(R"({"messages": [{"role": "user", "content": "x"}, {"role": "tool"}]})", true), "messages[1].content");
  EXPECT_EQ(refused_field(R"({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"})", true), "tool_choice");
  EXPECT_EQ(refused_field(R"({"messages": [{"content": "x"}]})", true), "messages[0].role");
  EXPECT_EQ(refused_field(R"({"messages": [{"role": "user", "content": 5}]})", true), "messages[0].content");
  EXPECT_EQ(refused_field(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", true), "messages[0].content");
  EXPECT_EQ(refused_field(R"({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]})", true), "messages");
  EXPECT_EQ(refused_field(R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})", true), "top_logprobs");
  EXPECT_EQ(refused_field(R"({"messages": [{"role": "user", "content": "x"}], "tools": [{}]})", true), "tools[0]");
  EXPECT_EQ(refused_field(R"({"messages": [{"role": "user", "content": "x"}], "tools": {}})", true), "tools");
  EXPECT_EQ(refused_field(R"({"messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": {"thinking": 1}})", true), "thinking");
}

TEST(ServeRequest, ErrorBodyHasOpenAIsShape) {
  const json body = error_body(invalid_request("max_tokens", "bad"));
  EXPECT_EQ(body["error"]["message"], "bad");
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_EQ(body["error"]["param"], "max_tokens");
  EXPECT_TRUE(body["error"]["code"].is_string());
  EXPECT_EQ(unauthorized("k").status(), 401);
  EXPECT_EQ(not_found("model_not_found", "m").status(), 404);
  EXPECT_EQ(payload_too_large("b").status(), 413);
  EXPECT_EQ(unavailable("l").status(), 503);
  EXPECT_TRUE(error_body(unavailable("l"))["error"]["param"].is_null());
}

}  // namespace
}  // namespace fp4kit::serve
