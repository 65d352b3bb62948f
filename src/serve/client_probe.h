#pragma once
// Whether the client of an HTTP connection is still there, for a request whose reply is not being
// written yet (a non-streaming generation: nothing is sent until its end, so no failed write can
// tell that the client left).
//   find_connection_socket: the descriptor of the accepted TCP connection with these two ends.
//     The HTTP library does not hand its socket to a handler; the (local, remote) address and port
//     pair names exactly one connection of the process, so the descriptor is looked up by it
//     (Linux: /proc/self/fd). -1 when none matches.
//   client_gone: true once the peer has closed or reset the connection: poll() reports a hang-up
//     or an error, or the socket is readable and a peek reads end-of-file. Bytes a client
//     pipelined behind its request are not an end: they are left unread for the library.
// A client that half-closes its sending side after the request (shutdown(SHUT_WR)) looks the same
// as one that left; HTTP clients do not do that while they wait for a reply.
#include <string>

namespace fp4kit::serve {

int find_connection_socket(const std::string& local_addr, int local_port, const std::string& remote_addr, int remote_port);
bool client_gone(int socket_fd);

}  // namespace fp4kit::serve
