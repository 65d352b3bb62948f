// The text side of `fp4kit serve`: stop strings across token boundaries, UTF-8 held back until a
// character is complete, the reasoning/answer split at </think>, SSE framing, DeepSeek V4 chat
// prompts against those DeepSeek's own encoder rendered, and the Prometheus page.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "calib/tokenizer.h"
#include "serve/api_error.h"
#include "serve/chat_template.h"
#include "serve/metrics.h"
#include "serve/reply_text.h"
#include "serve/sse.h"
#include "serve/stop_matcher.h"
#include "test_data.h"

namespace fp4kit::serve {
namespace {

std::string feed(StopMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (const std::string& p : pieces) out += m.push(p);
  return out + m.flush();
}

TEST(StopMatcher, StopsBeforeAStopStringSplitAcrossPieces) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.push("abc E"), "abc ");  // "E" may start END: held back
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.push("N"), "");
  EXPECT_EQ(m.push("Dxyz"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.push("more"), "");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, ReleasesHeldTextThatTurnsOutNotToBeAStop) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.push("xE"), "x");
  EXPECT_EQ(m.push("NX"), "ENX");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.push("EN"), "");
  EXPECT_EQ(m.flush(), "EN");  // generation ended: nothing to wait for
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"world", "lo w"});
  EXPECT_EQ(feed(m, {"hel", "lo wor", "ld"}), "hel");
  EXPECT_TRUE(m.stopped());
  StopMatcher none({});
  EXPECT_EQ(feed(none, {"a", "b"}), "ab");
}

TEST(Utf8, CompletePrefixHoldsBackAnUnfinishedCharacter) {
  const std::string e_acute = "\xC3\xA9", han = "\xE6\xB1\x89", emoji = "\xF0\x9F\x98\x80";
  EXPECT_EQ(complete_utf8_prefix("ab"), 2u);
  EXPECT_EQ(complete_utf8_prefix("a" + e_acute.substr(0, 1)), 1u);
  EXPECT_EQ(complete_utf8_prefix("a" + e_acute), 3u);
  EXPECT_EQ(complete_utf8_prefix(han.substr(0, 2)), 0u);
  EXPECT_EQ(complete_utf8_prefix(emoji.substr(0, 3)), 0u);
  EXPECT_EQ(complete_utf8_prefix(emoji), 4u);
  EXPECT_EQ(complete_utf8_prefix("a\x80"), 2u);  // a stray continuation byte is passed on, not held forever
}

const calib::Tokenizer& tiny_tokenizer() {
  static const calib::Tokenizer t = calib::Tokenizer::load(testing::test_data("serve/tokenizer.json"));
  return t;
}

TEST(ReplyText, SplitsReasoningAtThinkEndAndAppliesStopsToTheAnswerOnly) {
  const calib::Tokenizer& tok = tiny_tokenizer();
  const int32_t think_end = *tok.token_id(kThinkEnd);
  const std::vector<int32_t> reasoning = tok.encode("Let me see STOP", false);
  const std::vector<int32_t> answer = tok.encode("The answer STOP here", false);
  ReplyText text(tok, {"STOP"}, think_end);
  ReplyDelta all;
  for (int32_t id : reasoning) {
    const ReplyDelta d = text.push(id);
    all.reasoning += d.reasoning;
    all.content += d.content;
  }
  const ReplyDelta at_end = text.push(think_end);
  all.reasoning += at_end.reasoning;
  for (int32_t id : answer) {
    const ReplyDelta d = text.push(id);
    all.content += d.content;
    EXPECT_TRUE(d.reasoning.empty());
  }
  EXPECT_TRUE(text.stopped());
  all.content += text.finish().content;
  EXPECT_EQ(all.reasoning, "Let me see STOP");
  EXPECT_EQ(all.content, "The answer ");
}

TEST(ReplyText, ChatModeHasNoReasoningAndUnknownIdsAreEmpty) {
  const calib::Tokenizer& tok = tiny_tokenizer();
  ReplyText text(tok, {}, std::nullopt);
  std::string content;
  for (int32_t id : tok.encode("plain answer", false)) content += text.push(id).content;
  content += text.push(5000).content;  // beyond the tokenizer (models pad their vocabulary)
  content += text.finish().content;
  EXPECT_EQ(content, "plain answer");
  EXPECT_EQ(token_bytes(tok, 5000), "");
  EXPECT_EQ(token_bytes(tok, -1), "");
}

// A template's prompt that leaves <think> to the model (DeepSeek R1's): a first <think> token opens
// the reasoning; <think> anywhere later, or a reply that starts otherwise, is answer text.
TEST(ReplyText, AFirstThinkTokenOpensTheReasoning) {
  const calib::Tokenizer& tok = tiny_tokenizer();
  const int32_t think_start = *tok.token_id(kThinkStart), think_end = *tok.token_id(kThinkEnd);
  const auto run = [&](const std::vector<int32_t>& ids) {
    ReplyText text(tok, {}, think_end, false, think_start);
    ReplyDelta all;
    for (int32_t id : ids) {
      const ReplyDelta d = text.push(id);
      all.reasoning += d.reasoning;
      all.content += d.content;
    }
    const ReplyDelta end = text.finish();
    all.reasoning += end.reasoning;
    all.content += end.content;
    return all;
  };
  std::vector<int32_t> ids = {think_start};
  for (int32_t id : tok.encode("hmm", false)) ids.push_back(id);
  ids.push_back(think_end);
  for (int32_t id : tok.encode("yes", false)) ids.push_back(id);
  ReplyDelta d = run(ids);
  EXPECT_EQ(d.reasoning, "hmm");
  EXPECT_EQ(d.content, "yes");
  ids.erase(ids.begin());  // no <think> first: all of it is the answer
  d = run(ids);
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "hmm</think>yes");
}

TEST(Sse, FramesEventsAndReplacesInvalidUtf8) {
  EXPECT_EQ(sse_event({{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
  EXPECT_EQ(json_text({{"t", std::string("x\xC3")}}), "{\"t\":\"x\xEF\xBF\xBD\"}");
}

// Each conversation goes in as a client's request body (messages, tools, thinking switch), through
// the request parser, and must come out as the prompt DeepSeek's encoder rendered.
TEST(ChatTemplate, MatchesDeepSeeksReferenceEncoder) {
  std::ifstream in(testing::test_data("serve/chat_prompts.json"));
  const nlohmann::ordered_json cases = nlohmann::ordered_json::parse(in);
  ASSERT_GE(cases.size(), 20u);
  size_t with_tools = 0;
  for (const nlohmann::ordered_json& c : cases) {
    nlohmann::ordered_json body = {{"messages", c["messages"]}, {"chat_template_kwargs", {{"thinking", c["thinking"]}}}};
    if (c.contains("tools")) body["tools"] = c["tools"];
    with_tools += c.contains("tools");
    const ChatRequest r = parse_chat_request(body);
    EXPECT_EQ(render_deepseek_v4_chat(r.messages, r.thinking, r.tools), c["prompt"].get<std::string>())
        << c["name"] << (c["thinking"] ? " (thinking)" : " (chat)");
  }
  EXPECT_GE(with_tools, 6u);
}

TEST(ChatTemplate, ToolChoiceNoneLeavesTheToolsOutAndBadToolInputIsRefused) {
  const auto body = [](const std::string& extra) {
    return nlohmann::ordered_json::parse(R"({"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}])" +
                                         extra + "}");
  };
  EXPECT_EQ(parse_chat_request(body("")).tools.size(), 1u);
  const ChatRequest none = parse_chat_request(body(R"(,"tool_choice":"none")"));
  EXPECT_TRUE(none.tools.empty());
  EXPECT_EQ(render_deepseek_v4_chat(none.messages, false, none.tools), std::string(kBosToken) + kUserToken + "hi" + kAssistantToken + kThinkEnd);
  for (const std::string bad : {R"(,"tool_choice":"required")", R"(,"tool_choice":{"type":"function","function":{"name":"f"}})",
                                R"(,"tool_choice":3)", R"(,"parallel_tool_calls":"yes")"}) {
    try {
      parse_chat_request(body(bad));
      ADD_FAILURE() << "accepted " << bad;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 400) << bad;
    }
  }
  for (const std::string bad : {R"({"messages":[{"role":"user","content":"x"}],"tools":{"name":"f"}})",
                                R"({"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":""}}]})",
                                R"({"messages":[{"role":"user","content":"x"}],"tools":[{"type":"retrieval"}]})",
                                R"({"messages":[{"role":"user","content":"x"},{"role":"tool"}]})",
                                R"({"messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"[1]"}}]},{"role":"user","content":"y"}]})",
                                R"({"messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},{"role":"user","content":"y"}]})",
                                R"({"messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}]})"}) {
    try {
      parse_chat_request(nlohmann::ordered_json::parse(bad));
      ADD_FAILURE() << "accepted " << bad;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 400) << bad;
    }
  }
}

TEST(ChatTemplate, SpecialTokensEncodeAsSingleIds) {
  const calib::Tokenizer& tok = tiny_tokenizer();
  const std::vector<int32_t> ids = tok.encode(render_deepseek_v4_chat({{"user", "hi", "", {}, ""}}, true), false);
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids.front(), 0);  // BOS, as the tiny config's bos_token_id
  EXPECT_EQ(ids[1], *tok.token_id(kUserToken));
  EXPECT_EQ(ids[ids.size() - 2], *tok.token_id(kAssistantToken));
  EXPECT_EQ(ids.back(), *tok.token_id(kThinkStart));
}

TEST(Metrics, RendersCumulativeHistogramsAndGauges) {
  ServeMetrics m;
  m.time_to_first_token.observe(0.003);
  m.time_to_first_token.observe(0.3);
  m.time_to_first_token.observe(1000.0);
  m.prompt_tokens += 7;
  const std::string page = m.render(2, 5);
  EXPECT_NE(page.find("fp4kit:num_requests_running 2\n"), std::string::npos);
  EXPECT_NE(page.find("fp4kit:num_requests_waiting 5\n"), std::string::npos);
  EXPECT_NE(page.find("fp4kit:prompt_tokens_total 7\n"), std::string::npos);
  EXPECT_NE(page.find("fp4kit:time_to_first_token_seconds_bucket{le=\"0.001\"} 0\n"), std::string::npos);
  EXPECT_NE(page.find("fp4kit:time_to_first_token_seconds_bucket{le=\"0.005\"} 1\n"), std::string::npos);
  EXPECT_NE(page.find("fp4kit:time_to_first_token_seconds_bucket{le=\"0.5\"} 2\n"), std::string::npos);
  EXPECT_NE(page.find("fp4kit:time_to_first_token_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(page.find("fp4kit:time_to_first_token_seconds_count 3\n"), std::string::npos);
  EXPECT_NE(page.find("# TYPE fp4kit:inter_token_latency_seconds histogram"), std::string::npos);
}

}  // namespace
}  // namespace fp4kit::serve
