#pragma once
// Findings of one engine's loader contract walk: every message starts with the engine's name, and a
// finding storm (every tensor of a wrongly named checkpoint) is cut to the first few per check,
// then one line with the count.
#include <map>
#include <string>

#include "models/engine_contract.h"
#include "verify/verify_report.h"

namespace fp4kit::verify {

constexpr size_t kMaxFindingsPerCheck = 20;

class Findings {
 public:
  Findings(Engine engine, VerifyReport& report) : engine_(engine), report_(report) {}
  ~Findings() {
    for (const auto& [check, n] : counts_)
      if (n > kMaxFindingsPerCheck)
        report_.add(check, Severity::Fail, "",
                    std::string(engine_name(engine_)) + ": " + std::to_string(n - kMaxFindingsPerCheck) + " more " + check + " findings");
  }
  Findings(const Findings&) = delete;
  Findings& operator=(const Findings&) = delete;
  void add(const std::string& check, const std::string& tensor, const std::string& message) {
    if (++counts_[check] <= kMaxFindingsPerCheck) report_.add(check, Severity::Fail, tensor, std::string(engine_name(engine_)) + ": " + message);
  }

 private:
  Engine engine_;
  VerifyReport& report_;
  std::map<std::string, size_t> counts_;
};

}  // namespace fp4kit::verify
