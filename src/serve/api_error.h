#pragma once
// The errors a client sees, in OpenAI's shape: {"error": {"message", "type", "code"}} with the HTTP
// status that goes with the type. Anything the server refuses is thrown as an ApiError; the HTTP
// layer turns it into a response, so a bad request never reaches the engine.
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace fp4kit::serve {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string type, std::string code, const std::string& message, std::string param = "")
      : std::runtime_error(message), status_(status), type_(std::move(type)), code_(std::move(code)), param_(std::move(param)) {}
  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& code() const { return code_; }
  const std::string& param() const { return param_; }  // the request field at fault, "" if none

 private:
  int status_;
  std::string type_, code_, param_;
};

// 400 invalid_request_error; `param` names the request field.
ApiError invalid_request(const std::string& param, const std::string& message);
ApiError unauthorized(const std::string& message);                   // 401 authentication_error
ApiError not_found(const std::string& code, const std::string& message);  // 404 not_found_error
ApiError payload_too_large(const std::string& message);              // 413
ApiError unavailable(const std::string& message);                     // 503 unavailable_error
ApiError server_error(const std::string& message);                    // 500 server_error

// {"error": {"message", "type", "code", "param"}}
nlohmann::json error_body(const ApiError& e);

}  // namespace fp4kit::serve
