#pragma once
// The HTTP front of OpenAIService, on cpp-httplib (the only file that includes it): every GET and
// POST goes to OpenAIService::handle(); streaming replies are sent with chunked transfer encoding
// as their events arrive, and a failed write marks the generation cancelled; a non-streaming request
// is given a probe of its connection (client_probe.h), so that its generation stops too when its
// client leaves before the reply. Errors the library
// finds itself (a body over the limit: 413, a malformed request: 400) get OpenAI's error shape too.
// A client that sends half a request and stalls is dropped after `read_timeout_s`; the pool has
// room for every running and waiting request plus a few such clients.
#include <cstddef>
#include <memory>
#include <string>

#include "serve/openai_service.h"

namespace fp4kit::serve {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                          // 0: any free port
  size_t max_body_bytes = size_t{8} << 20;
  int read_timeout_s = 10;
  size_t threads = 16;
};

class HttpServer {
 public:
  HttpServer(OpenAIService& service, HttpServerOptions options);
  ~HttpServer();
  // Binds the socket; returns the port. InputError when the address cannot be bound.
  int bind();
  // Serves until stop(); returns false if it could not listen.
  bool run();
  // From any thread, also before run() has started listening.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fp4kit::serve
