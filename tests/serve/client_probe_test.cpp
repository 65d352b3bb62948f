// The probe of a client connection over real loopback TCP sockets: the accepted socket is found by
// its two ends, a client that is connected (also one that pipelined more bytes) is present, one
// that closed or reset its side is gone.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "serve/client_probe.h"

namespace fp4kit::serve {
namespace {

struct Loopback {
  int listener = -1, client = -1, server = -1;
  int server_port = 0, client_port = 0;
  Loopback() {
    listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(listener, 4) != 0) return;
    getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
    server_port = ntohs(a.sin_port);
    client = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return;
    server = accept(listener, nullptr, nullptr);
    len = sizeof a;
    getsockname(client, reinterpret_cast<sockaddr*>(&a), &len);
    client_port = ntohs(a.sin_port);
  }
  ~Loopback() {
    for (int fd : {listener, client, server})
      if (fd >= 0) close(fd);
  }
};

// client_gone() polls without waiting: give the kernel a moment to deliver the close.
bool gone_within(int fd, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (client_gone(fd)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

TEST(ServeClientProbe, FindsTheAcceptedSocketByItsEnds) {
  Loopback l;
  ASSERT_GE(l.server, 0);
  EXPECT_EQ(find_connection_socket("127.0.0.1", l.server_port, "127.0.0.1", l.client_port), l.server);
  // The client's own end has the ends swapped: it is a different connection end.
  EXPECT_EQ(find_connection_socket("127.0.0.1", l.client_port, "127.0.0.1", l.server_port), l.client);
  EXPECT_EQ(find_connection_socket("127.0.0.1", l.server_port, "127.0.0.1", 1), -1);
  EXPECT_EQ(find_connection_socket("127.0.0.2", l.server_port, "127.0.0.1", l.client_port), -1);
}

TEST(ServeClientProbe, PresentWhileConnectedAlsoWithPipelinedBytesGoneAfterClose) {
  Loopback l;
  ASSERT_GE(l.server, 0);
  EXPECT_FALSE(client_gone(l.server));
  ASSERT_EQ(send(l.client, "GET /", 5, 0), 5);
  EXPECT_FALSE(gone_within(l.server, std::chrono::milliseconds(100)));
  char buf[8];
  EXPECT_EQ(recv(l.server, buf, sizeof buf, MSG_DONTWAIT), 5) << "the peeked bytes must stay unread";
  close(l.client);
  l.client = -1;
  EXPECT_TRUE(gone_within(l.server, std::chrono::seconds(5)));
}

TEST(ServeClientProbe, GoneAfterAResetAndUnknownSocketsArePresent) {
  Loopback l;
  ASSERT_GE(l.server, 0);
  const linger hard{1, 0};  // close with RST
  setsockopt(l.client, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  close(l.client);
  l.client = -1;
  EXPECT_TRUE(gone_within(l.server, std::chrono::seconds(5)));
  EXPECT_FALSE(client_gone(-1));  // no socket found: never reported gone
}

}  // namespace
}  // namespace fp4kit::serve
