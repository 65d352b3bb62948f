#pragma once
// Finds stop strings in text that arrives piece by piece (token by token) and says how much of it
// may be sent: text that could be the start of a stop string is held back until the next piece
// shows whether it is, so a stop string split across tokens is never emitted, not even in part.
#include <string>
#include <string_view>
#include <vector>

namespace fp4kit::serve {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  // Adds `piece`; returns the text now safe to send. Once a stop string is found, stopped() is true,
  // the returned text ends just before it, and later pieces are ignored.
  std::string push(std::string_view piece);
  // At the end of generation: the text still held back (none after a stop).
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace fp4kit::serve
