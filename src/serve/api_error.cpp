#include "serve/api_error.h"

namespace fp4kit::serve {

ApiError invalid_request(const std::string& param, const std::string& message) {
  return ApiError(400, "invalid_request_error", "invalid_value", message, param);
}
ApiError unauthorized(const std::string& message) { return ApiError(401, "authentication_error", "invalid_api_key", message); }
ApiError not_found(const std::string& code, const std::string& message) {
  return ApiError(404, "not_found_error", code, message);
}
ApiError payload_too_large(const std::string& message) {
  return ApiError(413, "invalid_request_error", "request_too_large", message);
}
ApiError unavailable(const std::string& message) { return ApiError(503, "unavailable_error", "unavailable", message); }
ApiError server_error(const std::string& message) { return ApiError(500, "server_error", "internal_error", message); }

nlohmann::json error_body(const ApiError& e) {
  nlohmann::json inner = {{"message", e.what()}, {"type", e.type()}, {"code", e.code()}};
  inner["param"] = e.param().empty() ? nlohmann::json(nullptr) : nlohmann::json(e.param());
  return {{"error", inner}};
}

}  // namespace fp4kit::serve
