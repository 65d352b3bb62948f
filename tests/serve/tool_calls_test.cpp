// Tool calls read back from model output: DeepSeek V4 completions (crafted, read by DeepSeek's own
// parser into tests/data/serve/tool_call_outputs.json) fed to the streaming reader in pieces of
// every size must give the encoder's content and calls; malformed blocks stay text. The calls in
// OpenAI's reply shapes (streamed and not), and Python's JSON text for the prompt.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "calib/tokenizer.h"
#include "serve/chat_template.h"
#include "serve/dsml.h"
#include "serve/openai_reply.h"
#include "serve/python_json.h"
#include "serve/tool_call_stream.h"
#include "test_data.h"

namespace fp4kit::serve {
namespace {

using nlohmann::json;

const std::string kEos = kEosToken;

std::string without_eos(const std::string& s) {
  return s.size() >= kEos.size() && s.compare(s.size() - kEos.size(), kEos.size(), kEos) == 0 ? s.substr(0, s.size() - kEos.size()) : s;
}

TEST(ToolCallStream, MatchesDeepSeeksParserInPiecesOfEverySize) {
  std::ifstream in(testing::test_data("serve/tool_call_outputs.json"));
  const json cases = json::parse(in);
  ASSERT_GE(cases.size(), 8u);
  size_t refused = 0, with_calls = 0;
  for (const json& c : cases) {
    const std::string text = without_eos(c["completion"]);
    for (size_t piece : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, text.size()}) {
      ToolCallStream stream;
      std::string got;
      std::vector<ParsedToolCall> calls;
      const auto take = [&](const ToolCallDelta& d) {
        got += d.text;
        calls.insert(calls.end(), d.calls.begin(), d.calls.end());
      };
      for (size_t at = 0; at < text.size(); at += piece) take(stream.push(text.substr(at, piece)));
      take(stream.finish());
      const std::string where = c["name"].get<std::string>() + " in pieces of " + std::to_string(piece);
      if (c["error"]) {
        EXPECT_EQ(got, text) << where << ": a block DeepSeek's parser refuses stays text";
        EXPECT_TRUE(calls.empty()) << where;
        continue;
      }
      EXPECT_EQ(got, c["content"].get<std::string>()) << where;
      ASSERT_EQ(calls.size(), c["tool_calls"].size()) << where;
      for (size_t i = 0; i < calls.size(); ++i) {
        EXPECT_EQ(calls[i].name, c["tool_calls"][i]["name"].get<std::string>()) << where;
        EXPECT_EQ(calls[i].arguments, c["tool_calls"][i]["arguments"].get<std::string>()) << where;
        EXPECT_TRUE(json::accept(calls[i].arguments)) << where << ": " << calls[i].arguments;
      }
      EXPECT_EQ(stream.found_calls(), !calls.empty()) << where;
    }
    refused += c["error"].get<bool>();
    with_calls += !c["error"].get<bool>() && !c["tool_calls"].empty();
  }
  EXPECT_GE(refused, 3u);
  EXPECT_GE(with_calls, 4u);
}

TEST(ToolCallStream, TextAfterTheBlockAndAnUnclosedBlockAreText) {
  ToolCallStream a;
  const std::string block = std::string("\n\n") + kDsmlToolCallsStart + "\n<\uff5cDSML\uff5cinvoke name=\"f\">\n</\uff5cDSML\uff5cinvoke>\n" + kDsmlToolCallsEnd;
  const ToolCallDelta d = a.push("x" + block + " tail");
  EXPECT_EQ(d.text, "x tail");
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.calls[0].arguments, "{}");
  ToolCallStream b;
  const std::string unclosed = std::string("y\n\n") + kDsmlToolCallsStart + "\n<\uff5cDSML\uff5cinvoke name=\"f\">";
  std::string got = b.push(unclosed).text;
  EXPECT_EQ(got, "y");  // held back: the block may still close
  got += b.finish().text;
  EXPECT_EQ(got, unclosed);
  // A lone "\n\n<" that does not grow into the marker is released.
  ToolCallStream c;
  EXPECT_EQ(c.push("a\n\n<").text, "a");
  EXPECT_EQ(c.push("b>").text, "\n\n<b>");
}

// A string="false" value that is JSON followed by a NUL byte and more is not JSON (Python's
// json.loads refuses it: "Extra data"): it becomes a string, and the arguments stay JSON.
TEST(ToolCallStream, AValueWithANulByteAfterItsJsonIsAString) {
  const std::string value = std::string("{\"x\": null}") + std::string(3, '\0') + "tail";
  const std::string block = std::string("\n\n") + kDsmlToolCallsStart + "\n<\uff5cDSML\uff5cinvoke name=\"f\">\n" +
                            "<\uff5cDSML\uff5cparameter name=\"a\" string=\"false\">" + value + "</\uff5cDSML\uff5cparameter>\n" +
                            "</\uff5cDSML\uff5cinvoke>\n" + kDsmlToolCallsEnd;
  ToolCallStream stream;
  ToolCallDelta d = stream.push(block);
  const ToolCallDelta end = stream.finish();
  d.calls.insert(d.calls.end(), end.calls.begin(), end.calls.end());
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_TRUE(json::accept(d.calls[0].arguments)) << d.calls[0].arguments;
  EXPECT_EQ(json::parse(d.calls[0].arguments).at("a"), value);
}

TEST(PythonJson, WritesWhatPythonsJsonDumpsWrites) {
  // Expected texts as Python 3's json.dumps(json.loads(s), ensure_ascii=False) prints them.
  const auto dumps = [](const char* s) { return python_json_dumps(nlohmann::ordered_json::parse(s)); };
  EXPECT_EQ(dumps(R"({"b":1,"a":[1.0,2.5e-5,1e16,1e15,-0.0,0.0001,123456.789,1e-5,-7]})"),
            R"({"b": 1, "a": [1.0, 2.5e-05, 1e+16, 1000000000000000.0, -0.0, 0.0001, 123456.789, 1e-05, -7]})");
  EXPECT_EQ(dumps(R"({"s":"q\" b\\ n\n t\t \u0001 \u001f é 東 \u007f /","e":{},"l":[],"n":null,"t":true,"f":false})"),
            "{\"s\": \"q\\\" b\\\\ n\\n t\\t \\u0001 \\u001f \xC3\xA9 \xE6\x9D\xB1 \x7F /\", \"e\": {}, \"l\": [], \"n\": null, "
            "\"t\": true, \"f\": false}");
  EXPECT_EQ(dumps("0.1"), "0.1");
  EXPECT_EQ(dumps("1e300"), "1e+300");
  EXPECT_EQ(dumps("18446744073709551615"), "18446744073709551615");
}

TEST(Dsml, InvokeWritesParametersAsTheEncoderDoes) {
  EXPECT_EQ(render_dsml_invoke("f", R"({"s":"a\"b","n":2,"o":{"k":[1,"x"]}})"),
            "<\uff5cDSML\uff5cinvoke name=\"f\">\n"
            "<\uff5cDSML\uff5cparameter name=\"s\" string=\"true\">a\"b</\uff5cDSML\uff5cparameter>\n"
            "<\uff5cDSML\uff5cparameter name=\"n\" string=\"false\">2</\uff5cDSML\uff5cparameter>\n"
            "<\uff5cDSML\uff5cparameter name=\"o\" string=\"false\">{\"k\": [1, \"x\"]}</\uff5cDSML\uff5cparameter>\n"
            "</\uff5cDSML\uff5cinvoke>");
  EXPECT_THROW(render_dsml_invoke("f", "[1]"), std::invalid_argument);
  // A long value must not exhaust the stack of the reader.
  const std::string big(1 << 20, 'v');
  const auto calls = parse_dsml_tool_calls(">\n<\uff5cDSML\uff5cinvoke name=\"f\">\n<\uff5cDSML\uff5cparameter name=\"a\" string=\"true\">" + big +
                                           "</\uff5cDSML\uff5cparameter>\n</\uff5cDSML\uff5cinvoke>\n" + kDsmlToolCallsEnd);
  ASSERT_TRUE(calls.has_value());
  ASSERT_EQ(calls->size(), 1u);
  EXPECT_EQ((*calls)[0].arguments, "{\"a\": \"" + big + "\"}");
  // Bytes that are not UTF-8 in a value: replaced, so that the arguments stay JSON.
  const auto bad = parse_dsml_tool_calls(">\n<\uff5cDSML\uff5cinvoke name=\"f\">\n<\uff5cDSML\uff5cparameter name=\"a\" string=\"true\">x\xFF\xC3</\uff5cDSML\uff5cparameter>\n</\uff5cDSML\uff5cinvoke>\n" +
                                         std::string(kDsmlToolCallsEnd));
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ((*bad)[0].arguments, "{\"a\": \"x\uFFFD\uFFFD\"}");
  EXPECT_TRUE(json::accept((*bad)[0].arguments));
}

// A reply whose tokens spell content and a call block, as the model would write them.
struct ToolReply {
  const calib::Tokenizer& tok = tiny();
  static const calib::Tokenizer& tiny() {
    static const calib::Tokenizer t = calib::Tokenizer::load(testing::test_data("serve/tokenizer.json"));
    return t;
  }
  std::shared_ptr<OpenAIReply> run(bool stream, const std::string& text, FinishReason reason) {
    ReplyFormat f;
    f.chat = true;
    f.stream = stream;
    f.tools = true;
    f.id = "chatcmpl-abc";
    f.model = "tiny";
    auto reply = std::make_shared<OpenAIReply>(f, tok, std::vector<std::string>{}, std::nullopt, 1, 5);
    if (stream) reply->open_stream();
    for (int32_t id : tok.encode(text, false)) reply->on_token({id, 0.0, {}});
    if (reason == FinishReason::Stop) reply->on_token({1, 0.0, {}});  // EOS
    reply->on_finish(reason, "");
    return reply;
  }
};

const std::string kCallText = std::string("Sure.\n\n") + kDsmlToolCallsStart + "\n<\uff5cDSML\uff5cinvoke name=\"get_weather\">\n" +
                              "<\uff5cDSML\uff5cparameter name=\"city\" string=\"true\">Paris</\uff5cDSML\uff5cparameter>\n</\uff5cDSML\uff5cinvoke>\n" +
                              "<\uff5cDSML\uff5cinvoke name=\"now\">\n</\uff5cDSML\uff5cinvoke>\n" + kDsmlToolCallsEnd;

TEST(ToolCallReply, WholeReplyHasToolCallsAndFinishesWithToolCalls) {
  ToolReply t;
  const json body = json::parse(t.run(false, kCallText, FinishReason::Stop)->channel().collect());
  const json& choice = body["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_EQ(choice["message"]["content"], "Sure.");
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 2u);
  EXPECT_EQ(choice["message"]["tool_calls"][0]["type"], "function");
  EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["arguments"], "{\"city\": \"Paris\"}");
  EXPECT_EQ(choice["message"]["tool_calls"][1]["function"]["arguments"], "{}");
  EXPECT_NE(choice["message"]["tool_calls"][0]["id"], choice["message"]["tool_calls"][1]["id"]);
  // Cut off inside the block by max_tokens: no call, the text kept, reason length.
  const std::string unclosed = kCallText.substr(0, kCallText.rfind("</"));
  const json cut = json::parse(t.run(false, unclosed, FinishReason::Length)->channel().collect());
  EXPECT_EQ(cut["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(cut["choices"][0]["message"].contains("tool_calls"));
  EXPECT_EQ(cut["choices"][0]["message"]["content"], unclosed);
}

TEST(ToolCallReply, StreamedDeltasCarryIndexedCalls) {
  ToolReply t;
  const std::string all = t.run(true, kCallText, FinishReason::Stop)->channel().collect();
  std::string content;
  json calls = json::array();
  std::string finish;
  for (size_t at = 0; at < all.size();) {
    const size_t end = all.find("\n\n", at);
    ASSERT_NE(end, std::string::npos);
    const std::string data = all.substr(at + 6, end - at - 6);
    at = end + 2;
    if (data == "[DONE]") break;
    const json e = json::parse(data);
    const json& delta = e["choices"][0]["delta"];
    content += delta.value("content", "");
    if (delta.contains("tool_calls"))
      for (const json& c : delta["tool_calls"]) calls.push_back(c);
    if (!e["choices"][0]["finish_reason"].is_null()) finish = e["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(content, "Sure.");
  EXPECT_EQ(finish, "tool_calls");
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0]["index"], 0);
  EXPECT_EQ(calls[1]["index"], 1);
  EXPECT_EQ(calls[1]["function"]["name"], "now");
  EXPECT_TRUE(calls[0]["id"].is_string());
}

}  // namespace
}  // namespace fp4kit::serve
