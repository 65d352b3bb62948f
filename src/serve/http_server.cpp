#include "serve/http_server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "base/error.h"
#include "serve/api_error.h"
#include "serve/client_probe.h"
#include "serve/sse.h"

namespace fp4kit::serve {

struct HttpServer::Impl {
  Impl(OpenAIService& s, HttpServerOptions o) : service(s), options(std::move(o)) {}
  OpenAIService& service;
  HttpServerOptions options;
  httplib::Server server;
  std::atomic<bool> finished{false};  // run() has returned
};

namespace {

void send(const HttpReply& reply, httplib::Response& res) {
  res.status = reply.status;
  if (!reply.stream) {
    res.set_content(reply.body, reply.content_type.c_str());
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  auto stream = reply.stream;
  auto job = reply.job;
  res.set_chunked_content_provider(
      reply.content_type,
      [stream, job](size_t, httplib::DataSink& sink) {
        std::string piece;
        if (!stream->channel().next(piece)) {
          sink.done();
          return true;
        }
        if (!sink.write(piece.data(), piece.size())) {
          job->cancelled = true;  // the client is gone: stop generating for it
          return false;
        }
        return true;
      },
      [job](bool success) {
        if (!success) job->cancelled = true;
      });
}

// The body for an error the library answered by itself (it leaves the body empty).
ApiError library_error(int status) {
  switch (status) {
    case 413: return payload_too_large("The request body is larger than this server accepts");
    case 404: return not_found("unknown_route", "No such route");
    case 400: return invalid_request("", "Malformed HTTP request");
    default: return ApiError(status, status >= 500 ? "server_error" : "invalid_request_error", "http_error",
                             "HTTP error " + std::to_string(status));
  }
}

}  // namespace

HttpServer::HttpServer(OpenAIService& service, HttpServerOptions options)
    : impl_(std::make_unique<Impl>(service, std::move(options))) {
  httplib::Server& s = impl_->server;
  const size_t threads = impl_->options.threads;
  s.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.set_payload_max_length(impl_->options.max_body_bytes);
  s.set_read_timeout(impl_->options.read_timeout_s, 0);
  const auto handler = [this](const httplib::Request& req, httplib::Response& res) {
    // The connection's socket, looked up the first time it is needed (only a long non-streaming
    // generation asks); the library keeps it open until this handler returns.
    int socket_fd = -2;
    const ClientGone gone = [&req, &socket_fd] {
      if (socket_fd == -2) socket_fd = find_connection_socket(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
      return client_gone(socket_fd);
    };
    send(impl_->service.handle(req.method, req.path, req.get_header_value("Authorization"), req.body, gone), res);
  };
  s.Get(".*", handler);
  s.Post(".*", handler);
  s.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) res.set_content(json_text(error_body(library_error(res.status))), "application/json");
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    res.status = 500;
    res.set_content(json_text(error_body(server_error(what))), "application/json");
  });
}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
  const HttpServerOptions& o = impl_->options;
  int port = o.port;
  if (o.port == 0) port = impl_->server.bind_to_any_port(o.host);
  else if (!impl_->server.bind_to_port(o.host, o.port)) port = -1;
  if (port <= 0)
    throw InputError("cannot listen on " + o.host + ":" + std::to_string(o.port) + " (address in use or not local)");
  return port;
}

bool HttpServer::run() {
  const bool ok = impl_->server.listen_after_bind();
  impl_->finished = true;
  return ok;
}

void HttpServer::stop() {
  // The library ignores stop() until its accept loop runs: wait for it (run() is called right
  // after bind(), so this is short), else a stop that comes early would leave run() serving.
  for (int i = 0; i < 5000 && !impl_->server.is_running() && !impl_->finished; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  impl_->server.stop();
}

}  // namespace fp4kit::serve
