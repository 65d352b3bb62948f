#include "serve/scheduler.h"

#include <algorithm>
#include <exception>

#include "base/parallel.h"

namespace fp4kit::serve {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

Scheduler::Scheduler(engine::SequenceModel& model, SchedulerOptions options, ServeMetrics& metrics)
    : model_(model), options_(options), metrics_(metrics), thread_([this] { loop(); }) {}

Scheduler::~Scheduler() {
  stop();
  thread_.join();
}

void Scheduler::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
}

bool Scheduler::submit(const std::shared_ptr<GenerationJob>& job) {
  {
    std::lock_guard lock(mutex_);
    // Requests that will take a free slot as soon as the scheduler thread wakes do not count
    // against the queue: a burst arriving before it does is not refused.
    const int64_t free_slots = std::max<int64_t>(0, options_.parallel - running_);
    if (stopping_ || static_cast<int64_t>(queue_.size()) >= options_.max_waiting + free_slots) return false;
    queue_.push_back(job);
  }
  wake_.notify_all();
  return true;
}

int64_t Scheduler::waiting() const {
  std::lock_guard lock(mutex_);
  return static_cast<int64_t>(queue_.size());
}

void Scheduler::finish(Slot& slot, FinishReason reason, const std::string& error) {
  slot.done = true;
  switch (reason) {
    case FinishReason::Stop: ++metrics_.finished_stop; break;
    case FinishReason::Length: ++metrics_.finished_length; break;
    case FinishReason::Abort: ++metrics_.finished_abort; break;
    case FinishReason::Error: ++metrics_.finished_error; break;
  }
  if (reason != FinishReason::Error && reason != FinishReason::Abort) metrics_.e2e_latency.observe(seconds_since(slot.job->arrival));
  slot.job->on_finish(reason, error);
}

void Scheduler::deliver(Slot& slot, const SampledToken& t) {
  const auto now = std::chrono::steady_clock::now();
  if (slot.generated == 0) metrics_.time_to_first_token.observe(seconds_since(slot.job->arrival));
  else metrics_.inter_token_latency.observe(std::chrono::duration<double>(now - slot.last_time).count());
  slot.last_time = now;
  ++slot.generated;
  ++metrics_.generation_tokens;
  slot.last_token = t.token;
  const TokenVerdict verdict = slot.job->on_token(t);
  if (verdict == TokenVerdict::Abort) finish(slot, FinishReason::Abort);
  else if (verdict == TokenVerdict::Stop || (slot.job->eos && t.token == *slot.job->eos)) finish(slot, FinishReason::Stop);
  else if (slot.generated >= slot.job->max_tokens) finish(slot, FinishReason::Length);
}

int64_t Scheduler::chunk_length(const Slot& slot) const {
  const int64_t left = static_cast<int64_t>(slot.job->prompt.size()) - slot.cached;
  return std::min(std::max<int64_t>(1, options_.prefill_chunk), left);
}

void Scheduler::prefill_together(const std::vector<Slot*>& slots, int64_t n) {
  std::vector<engine::SequenceModel::Sequence*> sequences;
  std::vector<int64_t> ids;
  for (Slot* slot : slots) {
    if (!slot->sequence) slot->sequence = model_.start();
    sequences.push_back(slot->sequence.get());
    const auto from = slot->job->prompt.begin() + slot->cached;
    ids.insert(ids.end(), from, from + n);
  }
  std::vector<float> logits;
  std::vector<engine::DrawnToken> drawn;  // where the model draws the tokens itself
  try {
    if (model_.draws_tokens()) drawn = model_.advance_and_draw(sequences, ids, draws_of(slots));
    else logits = model_.advance(sequences, ids);
  } catch (const std::exception& e) {
    if (slots.size() == 1) {
      finish(*slots[0], FinishReason::Error, e.what());
      return;
    }
    // The call's sequences cannot go on; a prompt that had not started starts again, alone.
    for (Slot* slot : slots) {
      if (slot->cached > 0) {
        finish(*slot, FinishReason::Error, e.what());
        continue;
      }
      slot->sequence.reset();
      prefill_together({slot}, n);
    }
    return;
  }
  const int64_t vocab = model_.config().base.vocab_size;
  for (size_t i = 0; i < slots.size(); ++i) {
    Slot& slot = *slots[i];
    slot.cached += n;
    metrics_.prompt_tokens += static_cast<uint64_t>(n);
    if (slot.cached < static_cast<int64_t>(slot.job->prompt.size())) continue;
    try {
      deliver(slot, model_.draws_tokens() ? sampled_token(std::move(drawn[i]))
                                          : sample_token(&logits[i * static_cast<size_t>(vocab)], vocab, slot.job->sampling,
                                                         static_cast<uint64_t>(slot.generated)));
    } catch (const std::exception& e) {
      finish(slot, FinishReason::Error, e.what());
    }
  }
}

std::vector<engine::TokenDraw> Scheduler::draws_of(const std::vector<Slot*>& slots) {
  std::vector<engine::TokenDraw> draws;
  for (const Slot* slot : slots) draws.push_back(token_draw(slot->job->sampling, static_cast<uint64_t>(slot->generated)));
  return draws;
}

void Scheduler::record_step(std::chrono::steady_clock::time_point start, std::chrono::steady_clock::time_point end,
                            size_t batch) {
  metrics_.decode_step.observe(std::chrono::duration<double>(end - start).count());
  ++steps_;
  largest_batch_ = std::max<int64_t>(largest_batch_, static_cast<int64_t>(batch));
}

void Scheduler::decode_step(const std::vector<Slot*>& slots) {
  // The running sequences side by side, one new token each, each after its own `cached` tokens.
  std::vector<engine::SequenceModel::Sequence*> sequences;
  std::vector<int64_t> ids;
  for (Slot* slot : slots) {
    sequences.push_back(slot->sequence.get());
    ids.push_back(slot->last_token);
  }
  const auto start = std::chrono::steady_clock::now();
  std::vector<SampledToken> tokens(slots.size());
  if (model_.draws_tokens()) {
    // The draws are part of the model's step (they run where the logits are): the sampling
    // histogram gets only what is left on the host.
    std::vector<engine::DrawnToken> drawn = model_.advance_and_draw(sequences, ids, draws_of(slots));
    const auto advanced = std::chrono::steady_clock::now();
    record_step(start, advanced, slots.size());
    for (size_t i = 0; i < slots.size(); ++i) tokens[i] = sampled_token(std::move(drawn[i]));
    metrics_.sampling.observe(seconds_since(advanced));
  } else {
    const std::vector<float> logits = model_.advance(sequences, ids);
    const auto advanced = std::chrono::steady_clock::now();
    record_step(start, advanced, slots.size());
    const int64_t vocab = model_.config().base.vocab_size;
    // Each draw reads its own row, seed and step (the same token on any thread): side by side, since
    // one costs ~1-2 ms of CPU at V4's vocabulary and a step may hold dozens.
    parallel_for(slots.size(), 1, default_threads(), [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i)
        tokens[i] = sample_token(&logits[i * static_cast<size_t>(vocab)], vocab, slots[i]->job->sampling,
                                 static_cast<uint64_t>(slots[i]->generated));
    });
    metrics_.sampling.observe(seconds_since(advanced));
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    ++slots[i]->cached;
    deliver(*slots[i], tokens[i]);
  }
}

void Scheduler::loop() {
  std::vector<Slot> running;
  for (;;) {
    std::vector<Slot> admitted;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !running.empty() || !queue_.empty(); });
      if (stopping_) {
        for (auto& job : queue_) running.push_back(Slot{job});
        queue_.clear();
        break;
      }
      while (static_cast<int64_t>(running.size() + admitted.size()) < options_.parallel && !queue_.empty()) {
        admitted.push_back(Slot{queue_.front()});
        queue_.pop_front();
      }
      running_ = static_cast<int64_t>(running.size() + admitted.size());
    }
    for (Slot& slot : admitted) running.push_back(std::move(slot));
    for (Slot& slot : running)
      if (!slot.done && slot.job->cancelled) finish(slot, FinishReason::Abort);
    // Prompts: one chunk each, the chunks of one length in one call (a request with a token is past
    // its prompt).
    std::vector<Slot*> prefilling;
    for (Slot& slot : running)
      if (!slot.done && slot.generated == 0) prefilling.push_back(&slot);
    while (!prefilling.empty()) {
      const int64_t n = chunk_length(*prefilling.front());
      std::vector<Slot*> group;
      std::erase_if(prefilling, [&](Slot* slot) {
        if (chunk_length(*slot) != n) return false;
        group.push_back(slot);
        return true;
      });
      prefill_together(group, n);
    }
    std::erase_if(running, [](const Slot& s) { return s.done; });
    // Every request past its prompt: one token, in one engine call.
    std::vector<Slot*> decoding;
    for (Slot& slot : running)
      if (slot.generated > 0) decoding.push_back(&slot);
    if (!decoding.empty()) {
      try {
        decode_step(decoding);
      } catch (const std::exception& e) {
        for (Slot* slot : decoding)
          if (!slot->done) finish(*slot, FinishReason::Error, e.what());
      }
      std::erase_if(running, [](const Slot& s) { return s.done; });
    }
    running_ = static_cast<int64_t>(running.size());
  }
  for (Slot& slot : running)
    if (!slot.done) finish(slot, FinishReason::Abort);
  running_ = 0;
}

}  // namespace fp4kit::serve
