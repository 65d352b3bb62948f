// DeepSeek V3 / R1 / V3.1 tool-call blocks read back into calls: both call forms, several calls,
// the text around a block, blocks that do not follow the format kept as text, and the same result
// whatever pieces the text streams in.
#include <gtest/gtest.h>

#include "serve/deepseek_v3_tool_calls.h"
#include "serve/tool_call_stream.h"

namespace fp4kit::serve {
namespace {

const std::string kBegin = kToolCallsBegin, kEnd = kToolCallsEnd;
const std::string kCall = "<\uff5ctool\u2581call\u2581begin\uff5c>", kCallEnd = "<\uff5ctool\u2581call\u2581end\uff5c>";
const std::string kSep = "<\uff5ctool\u2581sep\uff5c>";

std::string v3_call(const std::string& name, const std::string& args) {
  return kCall + "function" + kSep + name + "\n```json\n" + args + "\n```" + kCallEnd;
}
std::string v31_call(const std::string& name, const std::string& args) { return kCall + name + kSep + args + kCallEnd; }

TEST(DeepSeekV3ToolCalls, ReadsBothCallForms) {
  auto calls = parse_deepseek_v3_tool_calls(v3_call("get_weather", "{\"city\": \"Paris\"}") + "\n" +
                                            v3_call("search", "{\"q\": \"\u00e9\", \"n\": [1, 2]}") + kEnd);
  ASSERT_TRUE(calls);
  ASSERT_EQ(calls->size(), 2u);
  EXPECT_EQ((*calls)[0].name, "get_weather");
  EXPECT_EQ((*calls)[0].arguments, "{\"city\": \"Paris\"}");
  EXPECT_EQ((*calls)[1].name, "search");
  EXPECT_EQ((*calls)[1].arguments, "{\"q\": \"\u00e9\", \"n\": [1, 2]}");

  calls = parse_deepseek_v3_tool_calls(v31_call("get_weather", "{\"city\":\"Oslo\"}") + v31_call("f", "{}") + kEnd);
  ASSERT_TRUE(calls);
  ASSERT_EQ(calls->size(), 2u);
  EXPECT_EQ((*calls)[0].name, "get_weather");
  EXPECT_EQ((*calls)[0].arguments, "{\"city\":\"Oslo\"}");
  EXPECT_EQ((*calls)[1].arguments, "{}");
}

TEST(DeepSeekV3ToolCalls, RefusesWhatDoesNotFollowTheFormat) {
  EXPECT_FALSE(parse_deepseek_v3_tool_calls(kEnd));                                           // no call
  EXPECT_FALSE(parse_deepseek_v3_tool_calls(v3_call("f", "{\"a\": 1}")));                     // not closed
  EXPECT_FALSE(parse_deepseek_v3_tool_calls(v3_call("f", "[1, 2]") + kEnd));                  // not an object
  EXPECT_FALSE(parse_deepseek_v3_tool_calls(v3_call("f", "{\"a\": ") + kEnd));                // not JSON
  EXPECT_FALSE(parse_deepseek_v3_tool_calls(v31_call("", "{}") + kEnd));                      // no name
  EXPECT_FALSE(parse_deepseek_v3_tool_calls("text" + v31_call("f", "{}") + kEnd));            // stray text
  EXPECT_FALSE(parse_deepseek_v3_tool_calls(kCall + "f{}" + kCallEnd + kEnd));                 // no separator
  EXPECT_FALSE(parse_deepseek_v3_tool_calls(kCall + "function" + kSep + "f\n```json\n{}" + kCallEnd + kEnd));  // no fence end
}

struct Read {
  std::string text;
  std::vector<ParsedToolCall> calls;
};

Read read(const std::string& output, size_t piece) {
  ToolCallStream stream(ToolCallSyntax::DeepSeekV3);
  Read r;
  const auto take = [&](const ToolCallDelta& d) {
    r.text += d.text;
    r.calls.insert(r.calls.end(), d.calls.begin(), d.calls.end());
  };
  for (size_t at = 0; at < output.size(); at += piece) take(stream.push(output.substr(at, piece)));
  take(stream.finish());
  return r;
}

TEST(DeepSeekV3ToolCalls, StreamsInPiecesOfEverySize) {
  const std::string with_calls = "Let me look.\n\n" + kBegin + v3_call("get_weather", "{\"city\": \"Paris\"}") + kEnd + " after";
  const std::string malformed = "Text " + kBegin + v3_call("f", "not json") + kEnd;
  const std::string cut = "Text " + kBegin + v31_call("f", "{}");
  for (size_t piece = 1; piece <= with_calls.size(); ++piece) {
    const Read r = read(with_calls, piece);
    EXPECT_EQ(r.text, "Let me look.\n\n after") << piece;  // no blank line is dropped before V3 blocks
    ASSERT_EQ(r.calls.size(), 1u) << piece;
    EXPECT_EQ(r.calls[0].name, "get_weather");
    EXPECT_EQ(r.calls[0].arguments, "{\"city\": \"Paris\"}");
    EXPECT_EQ(read(malformed, piece).text, malformed) << piece;
    EXPECT_TRUE(read(malformed, piece).calls.empty());
    EXPECT_EQ(read(cut, piece).text, cut) << piece;
  }
  EXPECT_EQ(read("plain <\uff5ctool text", 3).text, "plain <\uff5ctool text");
}

}  // namespace
}  // namespace fp4kit::serve
