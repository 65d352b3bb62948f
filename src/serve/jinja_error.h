#pragma once
// The errors of the chat-template engine (jinja_template.h). A template is model data, so every
// problem with one is an error that names where it is, never a crash:
//   - TemplateError: the template cannot be read (syntax, a construct outside the supported
//     subset) or a render failed (a type error, an undefined variable used, a limit reached);
//   - TemplateRaised: the template itself refused the input through raise_exception(message).
#include <stdexcept>
#include <string>

namespace fp4kit::serve {

class TemplateError : public std::runtime_error {
 public:
  TemplateError(const std::string& source, int line, const std::string& message)
      : std::runtime_error(source + ":" + std::to_string(line) + ": " + message), line_(line), message_(message) {}
  int line() const { return line_; }
  const std::string& message() const { return message_; }  // without the place

 private:
  int line_;
  std::string message_;
};

class TemplateRaised : public TemplateError {
 public:
  using TemplateError::TemplateError;
};

}  // namespace fp4kit::serve
