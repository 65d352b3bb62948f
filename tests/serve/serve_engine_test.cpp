// The scheduler and the OpenAI service over the tiny V4 checkpoint, without HTTP: greedy tokens equal
// transformers' greedy generation (tests/data/dsv4-tiny/reference.safetensors) also when requests
// share decode steps; queue limits, cancellation, stop strings, usage, seeds, the API key, streaming.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "../engine/engine_test_util.h"
#include "base/error.h"
#include "checkpoint_edit.h"
#include "serve/openai_service.h"
#include "serve/scheduler.h"

namespace fp4kit::serve {
namespace {

using nlohmann::json;
using testing::Reference;
using testing::test_data;
using testing::tiny_dir;

engine::EngineOptions two_threads() {
  engine::EngineOptions o;
  o.threads = 2;
  return o;
}

// A job that records its tokens and how it finished.
struct RecordedJob {
  std::shared_ptr<GenerationJob> job = std::make_shared<GenerationJob>();
  std::vector<int64_t> tokens;
  FinishReason reason = FinishReason::Error;
  bool finished = false;
  std::mutex mutex;
  std::condition_variable done;

  RecordedJob(std::vector<int64_t> prompt, int64_t max_tokens, std::function<TokenVerdict(int64_t)> verdict = {}) {
    job->prompt = std::move(prompt);
    job->max_tokens = max_tokens;
    job->sampling.temperature = 0;
    job->on_token = [this, verdict](const SampledToken& t) {
      tokens.push_back(t.token);
      return verdict ? verdict(static_cast<int64_t>(tokens.size())) : TokenVerdict::Continue;
    };
    job->on_finish = [this](FinishReason r, const std::string&) {
      std::lock_guard lock(mutex);
      reason = r;
      finished = true;
      done.notify_all();
    };
  }
  void wait() {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(done.wait_for(lock, std::chrono::seconds(60), [&] { return finished; }));
  }
};

TEST(ServeScheduler, GreedyTokensEqualTransformersAlsoInABatchAndInChunks) {
  const Reference ref;
  const std::vector<int64_t> prompt = ref.i64("gen.prompt_ids");
  const std::vector<int64_t> output = ref.i64("gen.output_ids");
  const std::vector<int64_t> expected(output.begin() + static_cast<ptrdiff_t>(prompt.size()), output.end());
  ASSERT_EQ(expected.size(), 16u);
  const auto eng = engine::make_cpu_sequence_model(tiny_dir(), two_threads());
  ServeMetrics metrics;
  // Prompts in chunks of 7 tokens; two other requests of other lengths run beside it and share
  // its decode steps.
  Scheduler scheduler(*eng, {3, 8, 7}, metrics);
  RecordedJob a(prompt, 16), b({0, 5, 9, 33}, 20), c(std::vector<int64_t>(prompt.begin(), prompt.begin() + 50), 12);
  ASSERT_TRUE(scheduler.submit(a.job));
  ASSERT_TRUE(scheduler.submit(b.job));
  ASSERT_TRUE(scheduler.submit(c.job));
  a.wait();
  b.wait();
  c.wait();
  EXPECT_EQ(a.tokens, expected);
  EXPECT_EQ(a.reason, FinishReason::Length);
  EXPECT_EQ(b.tokens.size(), 20u);
  EXPECT_GE(scheduler.largest_batch(), 2);
  EXPECT_EQ(metrics.generation_tokens, 48u);
  EXPECT_EQ(metrics.prompt_tokens, prompt.size() + 4 + 50);
  // Every decode step's engine call and its draws are timed once each.
  const std::string page = metrics.render(0, 0);
  const std::string steps = " " + std::to_string(scheduler.steps()) + "\n";
  EXPECT_GT(scheduler.steps(), 0);
  EXPECT_NE(page.find("fp4kit:decode_step_seconds_count" + steps), std::string::npos) << page;
  EXPECT_NE(page.find("fp4kit:sampling_seconds_count" + steps), std::string::npos) << page;
  // b alone gives the same tokens as b beside the others.
  RecordedJob b_alone({0, 5, 9, 33}, 20);
  ASSERT_TRUE(scheduler.submit(b_alone.job));
  b_alone.wait();
  EXPECT_EQ(b_alone.tokens, b.tokens);
}

TEST(ServeScheduler, FullQueueRefusesAtOnceAndCancelledOrStoppedJobsEnd) {
  const auto eng = engine::make_cpu_sequence_model(tiny_dir(), two_threads());
  ServeMetrics metrics;
  Scheduler scheduler(*eng, {1, 1}, metrics);
  std::atomic<bool> release{false};
  // Runs until its client "goes away" (cancelled after 3 tokens, once released).
  RecordedJob running({0, 1, 2}, 1000);
  running.job->on_token = [&](const SampledToken& t) {
    running.tokens.push_back(t.token);
    if (running.tokens.size() >= 3 && release) running.job->cancelled = true;
    return TokenVerdict::Continue;
  };
  ASSERT_TRUE(scheduler.submit(running.job));
  for (int i = 0; i < 2000 && scheduler.running() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(scheduler.running(), 1);
  RecordedJob queued({0, 7}, 4, [](int64_t n) { return n == 2 ? TokenVerdict::Stop : TokenVerdict::Continue; });
  RecordedJob refused({0, 8}, 4);
  ASSERT_TRUE(scheduler.submit(queued.job));
  EXPECT_EQ(scheduler.waiting(), 1);
  EXPECT_FALSE(scheduler.submit(refused.job));
  release = true;
  running.wait();
  EXPECT_EQ(running.reason, FinishReason::Abort);
  EXPECT_LT(running.tokens.size(), 1000u);
  queued.wait();
  EXPECT_EQ(queued.reason, FinishReason::Stop);
  EXPECT_EQ(queued.tokens.size(), 2u);
  EXPECT_EQ(metrics.finished_abort, 1u);
  EXPECT_EQ(metrics.finished_stop, 1u);
}

TEST(ServeScheduler, ABurstFillsTheFreeSlotsEvenWithNoQueue) {
  const auto eng = engine::make_cpu_sequence_model(tiny_dir(), two_threads());
  ServeMetrics metrics;
  Scheduler scheduler(*eng, {2, 0}, metrics);
  // Submitted at once, before the scheduler thread can admit them: the free slots take them.
  RecordedJob a({0, 1}, 30), b({0, 2}, 30), c({0, 3}, 30);
  EXPECT_TRUE(scheduler.submit(a.job));
  EXPECT_TRUE(scheduler.submit(b.job));
  EXPECT_FALSE(scheduler.submit(c.job));
  a.wait();
  b.wait();
  EXPECT_EQ(a.tokens.size(), 30u);
  EXPECT_EQ(b.tokens.size(), 30u);
}

// The CPU engine behind a wrapper that records each call's shape, holds its first call until
// opened (so that the requests submitted meanwhile are admitted together) and fails any prompt call
// (more than one token per sequence) whose ids hold `poison`.
class RecordingModel : public engine::SequenceModel {
 public:
  RecordingModel(engine::SequenceModel& inner, int64_t poison) : inner_(inner), poison_(poison) {}
  const engine::ModelConfig& config() const override { return inner_.config(); }
  std::unique_ptr<Sequence> start() override { return inner_.start(); }
  std::vector<float> advance(const std::vector<Sequence*>& sequences, const std::vector<int64_t>& ids) override {
    {
      std::unique_lock lock(mutex_);
      ++arrived_;
      arrival_.notify_all();
      gate_.wait(lock, [&] { return open_; });
      calls_.emplace_back(sequences.size(), ids.size() / sequences.size());
    }
    if (ids.size() > sequences.size() && std::find(ids.begin(), ids.end(), poison_) != ids.end())
      throw InputError("poisoned prompt");
    return inner_.advance(sequences, ids);
  }
  // Until the first call waits at the gate.
  void wait_for_the_first_call() {
    std::unique_lock lock(mutex_);
    ASSERT_TRUE(arrival_.wait_for(lock, std::chrono::seconds(60), [&] { return arrived_ > 0; }));
  }
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    gate_.notify_all();
  }
  // (sequences, new tokens each) of every call so far.
  std::vector<std::pair<size_t, size_t>> calls() {
    std::lock_guard lock(mutex_);
    return calls_;
  }

 private:
  engine::SequenceModel& inner_;
  int64_t poison_;
  std::mutex mutex_;
  std::condition_variable gate_, arrival_;
  bool open_ = false;
  int arrived_ = 0;
  std::vector<std::pair<size_t, size_t>> calls_;
};

// Greedy tokens of one request alone.
std::vector<int64_t> alone(engine::SequenceModel& model, const std::vector<int64_t>& prompt, int64_t max_tokens) {
  ServeMetrics metrics;
  Scheduler scheduler(model, {1, 1, 4}, metrics);
  RecordedJob j(prompt, max_tokens);
  EXPECT_TRUE(scheduler.submit(j.job));
  j.wait();
  return j.tokens;
}

TEST(ServeScheduler, PromptChunksOfOneLengthShareAModelCall) {
  const auto eng = engine::make_cpu_sequence_model(tiny_dir(), two_threads());
  RecordingModel model(*eng, -1);
  ServeMetrics metrics;
  Scheduler scheduler(model, {3, 8, 4}, metrics);
  RecordedJob a({0, 11, 12, 13, 14, 15, 16, 17, 18, 19}, 6), b({0, 21, 22, 23, 24, 25, 26, 27, 28, 29}, 6),
      c({0, 31, 32, 33}, 6);
  ASSERT_TRUE(scheduler.submit(a.job));
  model.wait_for_the_first_call();  // a's first chunk, alone
  ASSERT_TRUE(scheduler.submit(b.job));
  ASSERT_TRUE(scheduler.submit(c.job));
  model.open();
  a.wait();
  b.wait();
  c.wait();
  // a's second chunk, b's first and c's only one: 4 tokens each, one call.
  const auto calls = model.calls();
  EXPECT_NE(std::find(calls.begin(), calls.end(), std::pair<size_t, size_t>{3, 4}), calls.end());
  EXPECT_EQ(metrics.prompt_tokens, 24u);
  // Each request's tokens are those it gets alone.
  EXPECT_EQ(a.tokens, alone(*eng, a.job->prompt, 6));
  EXPECT_EQ(b.tokens, alone(*eng, b.job->prompt, 6));
  EXPECT_EQ(c.tokens, alone(*eng, c.job->prompt, 6));
  EXPECT_EQ(a.tokens.size(), 6u);
}

TEST(ServeScheduler, AFailedPromptCallFailsOnlyTheRequestThatCausedIt) {
  const auto eng = engine::make_cpu_sequence_model(tiny_dir(), two_threads());
  RecordingModel model(*eng, 77);
  ServeMetrics metrics;
  Scheduler scheduler(model, {3, 8, 8}, metrics);
  RecordedJob first({0, 1, 2, 3}, 3), good({0, 5, 6, 7}, 5), bad({0, 77, 8, 9}, 5);
  ASSERT_TRUE(scheduler.submit(first.job));
  model.wait_for_the_first_call();  // first's prompt, alone: good and bad are admitted together
  ASSERT_TRUE(scheduler.submit(good.job));
  ASSERT_TRUE(scheduler.submit(bad.job));
  model.open();
  first.wait();
  good.wait();
  bad.wait();
  EXPECT_EQ(bad.reason, FinishReason::Error);
  EXPECT_TRUE(bad.tokens.empty());
  EXPECT_EQ(good.reason, FinishReason::Length);
  EXPECT_EQ(good.tokens, alone(*eng, good.job->prompt, 5));
  // The call of both prompts failed; good's prompt ran again alone, bad's alone and failed again.
  const auto calls = model.calls();
  EXPECT_NE(std::find(calls.begin(), calls.end(), std::pair<size_t, size_t>{2, 4}), calls.end());
  EXPECT_EQ(metrics.finished_error, 1u);
}

// The CPU engine behind a wrapper that draws its own tokens (as the GPU pass does, where its logits
// are), here by the CPU sampler's own rules on the CPU engine's logits.
class DrawingModel : public engine::SequenceModel {
 public:
  explicit DrawingModel(engine::SequenceModel& inner) : inner_(inner) {}
  const engine::ModelConfig& config() const override { return inner_.config(); }
  std::unique_ptr<Sequence> start() override { return inner_.start(); }
  std::vector<float> advance(const std::vector<Sequence*>&, const std::vector<int64_t>&) override {
    ADD_FAILURE() << "the scheduler asked a drawing model for logits";
    throw Error("no logits here");
  }
  bool draws_tokens() const override { return true; }
  std::vector<engine::DrawnToken> advance_and_draw(const std::vector<Sequence*>& sequences, const std::vector<int64_t>& ids,
                                                   const std::vector<engine::TokenDraw>& draws) override {
    EXPECT_EQ(draws.size(), sequences.size());
    const std::vector<float> logits = inner_.advance(sequences, ids);
    const int64_t V = config().base.vocab_size;
    std::vector<engine::DrawnToken> out;
    for (size_t i = 0; i < draws.size(); ++i) {
      const SampledToken t = draw_token(logits.data() + i * static_cast<size_t>(V), V, draws[i]);
      engine::DrawnToken d;
      d.token = t.token, d.logprob = t.logprob;
      for (const TokenLogprob& x : t.top) d.top_ids.push_back(x.token), d.top_logprobs.push_back(x.logprob);
      out.push_back(d);
    }
    ++calls;
    return out;
  }
  int calls = 0;

 private:
  engine::SequenceModel& inner_;
};

// Every token of three seeded requests (one with a prompt in chunks) with their logprobs, through a
// scheduler over `model`.
std::vector<std::vector<SampledToken>> seeded_run(engine::SequenceModel& model) {
  ServeMetrics metrics;
  Scheduler scheduler(model, {3, 8, 5}, metrics);
  std::vector<std::unique_ptr<RecordedJob>> jobs;
  std::vector<std::vector<SampledToken>> tokens(3);
  const std::vector<std::vector<int64_t>> prompts = {{0, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21}, {0, 5, 9}, {0, 40}};
  for (size_t j = 0; j < prompts.size(); ++j) {
    jobs.push_back(std::make_unique<RecordedJob>(prompts[j], 9));
    SamplingParams& s = jobs.back()->job->sampling;
    s.temperature = 0.7 + 0.2 * static_cast<double>(j), s.top_p = j == 1 ? 0.8 : 1.0, s.top_k = j == 2 ? 30 : 0;
    s.min_p = j == 0 ? 0.01 : 0.0, s.seed = 1000 + j, s.top_logprobs = 2, s.logprobs = true;
    jobs.back()->job->on_token = [&tokens, j](const SampledToken& t) {
      tokens[j].push_back(t);
      return TokenVerdict::Continue;
    };
    EXPECT_TRUE(scheduler.submit(jobs.back()->job));
  }
  for (auto& j : jobs) j->wait();
  return tokens;
}

TEST(ServeScheduler, AModelThatDrawsItsOwnTokensGivesTheSameTokensAndLogprobs) {
  const auto eng = engine::make_cpu_sequence_model(tiny_dir(), two_threads());
  const auto on_host = seeded_run(*eng);
  DrawingModel drawing(*eng);
  const auto drawn = seeded_run(drawing);
  EXPECT_GT(drawing.calls, 0);
  ASSERT_EQ(drawn.size(), on_host.size());
  for (size_t j = 0; j < drawn.size(); ++j) {
    ASSERT_EQ(drawn[j].size(), 9u) << "request " << j;
    ASSERT_EQ(on_host[j].size(), 9u) << "request " << j;
    for (size_t t = 0; t < drawn[j].size(); ++t) {
      EXPECT_EQ(drawn[j][t].token, on_host[j][t].token) << "request " << j << " token " << t;
      EXPECT_EQ(drawn[j][t].logprob, on_host[j][t].logprob) << "request " << j << " token " << t;
      ASSERT_EQ(drawn[j][t].top.size(), 2u);
      EXPECT_EQ(drawn[j][t].top[1].token, on_host[j][t].top[1].token);
      EXPECT_TRUE(std::isfinite(drawn[j][t].logprob));
    }
  }
}

struct Reply {
  int status;
  json body;
};

class ServeService : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ServiceOptions o;
    o.model_name = "tiny";
    o.ctx_size = 256;
    o.api_key = "sekret";
    o.scheduler = {2, 4};
    service_ = new OpenAIService(o);
    service_->load(tiny_dir(), test_data("serve/tokenizer.json"), two_threads());
  }
  static void TearDownTestSuite() { delete service_; }
  static HttpReply raw(const std::string& path, const json& body, const std::string& key = "sekret") {
    return service_->handle(body.is_null() ? "GET" : "POST", path, key.empty() ? "" : "Bearer " + key, body.is_null() ? "" : body.dump());
  }
  static Reply call(const std::string& path, const json& body = nullptr, const std::string& key = "sekret") {
    const HttpReply r = raw(path, body, key);
    EXPECT_FALSE(r.stream);
    return {r.status, json::parse(r.body)};
  }
  static OpenAIService* service_;
};
OpenAIService* ServeService::service_ = nullptr;

TEST_F(ServeService, HealthIs503UntilTheModelIsLoaded) {
  OpenAIService loading(ServiceOptions{});
  const HttpReply h = loading.handle("GET", "/health", "", "");
  EXPECT_EQ(h.status, 503);
  EXPECT_EQ(json::parse(h.body)["error"]["type"], "unavailable_error");
  EXPECT_EQ(loading.handle("POST", "/v1/completions", "", R"({"prompt":"x"})").status, 503);
  EXPECT_EQ(call("/health").status, 200);
}

TEST_F(ServeService, ApiKeyUnknownModelAndRoutes) {
  EXPECT_EQ(call("/v1/models", nullptr, "").status, 401);
  EXPECT_EQ(call("/v1/models", nullptr, "wrong").body["error"]["type"], "authentication_error");
  EXPECT_EQ(call("/health", nullptr, "").status, 200);
  const Reply models = call("/v1/models");
  EXPECT_EQ(models.body["data"][0]["id"], "tiny");
  const Reply unknown = call("/v1/completions", {{"model", "gpt-4"}, {"prompt", "x"}});
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.body["error"]["code"], "model_not_found");
  EXPECT_EQ(call("/v1/nothing").status, 404);
}

TEST_F(ServeService, UsageEqualsTheTokenizersCountsAndContextIsEnforced) {
  const Reply tok = call("/tokenize", {{"prompt", "Hello world, again"}});
  const Reply r = call("/v1/completions", {{"model", "tiny"}, {"prompt", "Hello world, again"}, {"max_tokens", 5}, {"temperature", 0}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body["usage"]["prompt_tokens"], tok.body["count"]);
  EXPECT_EQ(r.body["usage"]["completion_tokens"], 5);
  EXPECT_EQ(r.body["usage"]["total_tokens"], tok.body["count"].get<int>() + 5);
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "length");
  const json messages = json::array({{{"role", "user"}, {"content", "Hi"}}});
  const Reply chat_tok = call("/tokenize", {{"messages", messages}});
  const Reply chat = call("/v1/chat/completions", {{"messages", messages}, {"max_tokens", 3}});
  ASSERT_EQ(chat.status, 200) << chat.body;
  EXPECT_EQ(chat.body["usage"]["prompt_tokens"], chat_tok.body["count"]);
  EXPECT_EQ(chat.body["choices"][0]["message"]["role"], "assistant");
  // Detokenizing the tokens gives the text back.
  EXPECT_EQ(call("/detokenize", {{"tokens", tok.body["tokens"]}}).body["prompt"], "<\uff5cbegin\u2581of\u2581sentence\uff5c>Hello world, again");
  // Context 256: a longer prompt, or a completion that does not fit, is refused.
  const Reply too_long = call("/v1/completions", {{"prompt", std::vector<int>(300, 5)}});
  EXPECT_EQ(too_long.status, 400);
  EXPECT_EQ(too_long.body["error"]["code"], "context_length_exceeded");
  EXPECT_EQ(call("/v1/completions", {{"prompt", "x"}, {"max_tokens", 255}}).body["error"]["param"], "max_tokens");
  EXPECT_EQ(call("/v1/completions", {{"prompt", "x"}, {"max_tokens", 254}}).status, 200);
}

TEST_F(ServeService, SameSeedSameTextAndStopStringsAreNotEmitted) {
  const json req = {{"prompt", "Hello world"}, {"max_tokens", 16}, {"temperature", 1.0}, {"seed", 42}, {"logprobs", 1}};
  const Reply a = call("/v1/completions", req), b = call("/v1/completions", req);
  json other = req;
  other["seed"] = 43;
  const Reply c = call("/v1/completions", other);
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.body["choices"][0]["text"], b.body["choices"][0]["text"]);
  EXPECT_NE(a.body["choices"][0]["logprobs"]["tokens"], c.body["choices"][0]["logprobs"]["tokens"]);
  for (const json& lp : a.body["choices"][0]["logprobs"]["token_logprobs"]) {
    EXPECT_TRUE(lp.is_number()) << lp;  // NaN would be written as null
    EXPECT_LE(lp.get<double>(), 0.0);
  }
  // A stop string: the text of a later token (lowercase letters, a space before them or not). The
  // reply ends just before its first occurrence.
  const std::string text = a.body["choices"][0]["text"];
  std::string stop;
  for (size_t i = 2; i < a.body["choices"][0]["logprobs"]["tokens"].size() && stop.empty(); ++i) {
    const std::string t = a.body["choices"][0]["logprobs"]["tokens"][i];
    const size_t letters = t.rfind(' ', 0) == 0 ? 1 : 0;  // after a leading space
    if (t.size() >= letters + 2 &&
        std::all_of(t.begin() + static_cast<ptrdiff_t>(letters), t.end(), [](char ch) { return ch >= 'a' && ch <= 'z'; }))
      stop = t;
  }
  ASSERT_FALSE(stop.empty()) << text;
  json with_stop = req;
  with_stop["stop"] = {stop};
  const Reply s = call("/v1/completions", with_stop);
  EXPECT_EQ(s.body["choices"][0]["text"], text.substr(0, text.find(stop)));
  EXPECT_EQ(s.body["choices"][0]["finish_reason"], "stop");
}

// A non-streaming request whose client leaves: the service asks its probe while it waits, and the
// generation ends (abort) long before max_tokens; a client that stays gets the whole reply.
TEST_F(ServeService, NonStreamingGenerationStopsWhenItsClientIsGone) {
  const json req = {{"prompt", "Hello world"}, {"max_tokens", 240}, {"temperature", 0}, {"ignore_eos", true}};
  const uint64_t aborted_before = service_->metrics().finished_abort;
  int asked = 0;
  const auto start = std::chrono::steady_clock::now();
  const HttpReply left = service_->handle("POST", "/v1/completions", "Bearer sekret", req.dump(), [&asked] { return ++asked >= 2; });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(left.status, 200) << left.body;
  const json body = json::parse(left.body);
  EXPECT_EQ(body["choices"][0]["finish_reason"], "abort");
  EXPECT_GE(asked, 2);
  EXPECT_LT(body["usage"]["completion_tokens"].get<int64_t>(), 240);
  EXPECT_LT(seconds, 30.0);
  EXPECT_EQ(service_->metrics().finished_abort, aborted_before + 1);

  json few = req;
  few["max_tokens"] = 6;
  const HttpReply stayed = service_->handle("POST", "/v1/completions", "Bearer sekret", few.dump(), [] { return false; });
  ASSERT_EQ(stayed.status, 200) << stayed.body;
  EXPECT_EQ(json::parse(stayed.body)["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(json::parse(stayed.body)["usage"]["completion_tokens"], 6);
}

// The SSE events of a streamed reply, without the "data: " framing; checks the framing on the way.
std::vector<std::string> sse_events(const HttpReply& r) {
  EXPECT_EQ(r.content_type, "text/event-stream");
  std::string all, piece;
  while (r.stream->channel().next(piece)) all += piece;
  std::vector<std::string> events;
  for (size_t at = 0; at < all.size();) {
    const size_t end = all.find("\n\n", at);
    EXPECT_NE(end, std::string::npos);
    if (end == std::string::npos) break;
    EXPECT_EQ(all.compare(at, 6, "data: "), 0);
    events.push_back(all.substr(at + 6, end - at - 6));
    at = end + 2;
  }
  return events;
}

TEST_F(ServeService, StreamedChatEqualsTheWholeReplyWithReasoningApart) {
  const json messages = json::array({{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}});
  json req = {{"messages", messages}, {"max_tokens", 24}, {"temperature", 0.9}, {"seed", 5}};
  const Reply whole = call("/v1/chat/completions", req);
  ASSERT_EQ(whole.status, 200) << whole.body;
  req["stream"] = true;
  const std::vector<std::string> events = sse_events(raw("/v1/chat/completions", req));
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  const json first = json::parse(events.front()), last = json::parse(events[events.size() - 2]);
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(last["choices"][0]["finish_reason"], whole.body["choices"][0]["finish_reason"]);
  EXPECT_EQ(last["usage"], whole.body["usage"]);
  std::string content, reasoning;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const json e = json::parse(events[i]);
    EXPECT_EQ(e["object"], "chat.completion.chunk");
    content += e["choices"][0]["delta"].value("content", "");
    reasoning += e["choices"][0]["delta"].value("reasoning_content", "");
  }
  const json& message = whole.body["choices"][0]["message"];
  EXPECT_EQ(content, message["content"].get<std::string>());
  EXPECT_EQ(reasoning, message.value("reasoning_content", ""));
  // The tiny model never writes </think>: in thinking mode everything is reasoning; chat mode has none.
  EXPECT_EQ(content, "");
  EXPECT_FALSE(reasoning.empty());
  req["stream"] = false;
  req["chat_template_kwargs"] = {{"thinking", false}};
  const Reply chat_mode = call("/v1/chat/completions", req);
  EXPECT_FALSE(chat_mode.body["choices"][0]["message"].contains("reasoning_content"));
  EXPECT_NE(chat_mode.body["usage"]["prompt_tokens"], nullptr);
}

// A checkpoint whose layer 2 turns activations into NaN: every request that reaches the engine ends
// with a 500 naming the layer (streamed: an error event, then [DONE]), and the server serves on.
TEST(ServeEngineError, NonFiniteActivationsAre500sNamingTheLayer) {
  const std::string dir = testing::copy_tiny_checkpoint("serve-nan");
  const std::vector<uint16_t> nan_bf16(128, 0x7FC0);
  testing::put_tensor(dir, "layers.2.ffn_norm.weight", "layers.2.ffn_norm.weight", DType::BF16, {128},
                      std::as_bytes(std::span(nan_bf16)));
  OpenAIService service(ServiceOptions{});
  service.load(dir, test_data("serve/tokenizer.json"), two_threads());
  const HttpReply r = service.handle("POST", "/v1/completions", "", R"({"prompt":"Hello","max_tokens":4})");
  EXPECT_EQ(r.status, 500);
  const json body = json::parse(r.body);
  EXPECT_EQ(body["error"]["type"], "server_error");
  EXPECT_NE(body["error"]["message"].get<std::string>().find("non-finite activation in the output of layer 2"),
            std::string::npos) << body;
  const HttpReply streamed = service.handle("POST", "/v1/completions", "", R"({"prompt":"Hello","max_tokens":4,"stream":true})");
  ASSERT_TRUE(streamed.stream);
  std::string all, piece;
  while (streamed.stream->channel().next(piece)) all += piece;
  EXPECT_EQ(all.rfind("data: {\"error\":", 0), 0u) << all;
  EXPECT_TRUE(all.ends_with("\n\ndata: [DONE]\n\n")) << all;
  EXPECT_EQ(service.handle("GET", "/health", "", "").status, 200);
  EXPECT_EQ(service.metrics().finished_error, 2u);
}

// Records the new tokens per sequence of each call.
class CountingModel : public engine::SequenceModel {
 public:
  CountingModel(std::unique_ptr<engine::SequenceModel> inner, std::vector<int64_t>& calls)
      : inner_(std::move(inner)), calls_(calls) {}
  const engine::ModelConfig& config() const override { return inner_->config(); }
  std::unique_ptr<Sequence> start() override { return inner_->start(); }
  std::vector<float> advance(const std::vector<Sequence*>& sequences, const std::vector<int64_t>& ids) override {
    calls_.push_back(static_cast<int64_t>(ids.size() / sequences.size()));
    return inner_->advance(sequences, ids);
  }

 private:
  std::unique_ptr<engine::SequenceModel> inner_;
  std::vector<int64_t>& calls_;
};

TEST(ServeWarmup, APromptAndADecodeStepRunBeforeTheServerIsReadyUnlessTurnedOff) {
  std::string text[2];
  for (const bool warmup : {true, false}) {
    std::vector<int64_t> calls;
    const engine::SequenceModelFactory factory = [&](const std::string& dir, const engine::EngineOptions& o, int64_t) {
      return std::make_unique<CountingModel>(engine::make_cpu_sequence_model(dir, o), calls);
    };
    ServiceOptions so;
    so.warmup = warmup;
    so.ctx_size = 20;  // the warm-up prompt takes ctx_size - 1 tokens when that is under 32
    OpenAIService service(so);
    service.load(tiny_dir(), test_data("serve/tokenizer.json"), two_threads(), factory);
    const std::vector<int64_t> want = warmup ? std::vector<int64_t>{19, 1} : std::vector<int64_t>{};
    EXPECT_EQ(calls, want) << "warm-up " << warmup;
    EXPECT_EQ(service.metrics().prompt_tokens.load(), 0u);  // not a request
    EXPECT_EQ(service.metrics().generation_tokens.load(), 0u);
    calls.clear();
    const HttpReply r = service.handle("POST", "/v1/completions", "", R"({"prompt":"Hello","max_tokens":3,"temperature":0})");
    ASSERT_EQ(r.status, 200) << r.body;
    text[warmup ? 0 : 1] = json::parse(r.body)["choices"][0]["text"].get<std::string>();
    EXPECT_FALSE(calls.empty());
  }
  EXPECT_EQ(text[0], text[1]);  // the dropped sequence leaves nothing behind
}

}  // namespace
}  // namespace fp4kit::serve
