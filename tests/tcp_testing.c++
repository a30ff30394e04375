#include "tests/tcp_testing.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

namespace refstore::testing {

struct sockaddr_in ipv4SocketAddress(const std::string& hostPort) {
  struct sockaddr_in address;
  memset(&address, 0, sizeof(address));
  address.sin_family = AF_INET;
  size_t colon = hostPort.rfind(':');
  char* end = nullptr;
  unsigned long port = colon == std::string::npos
                           ? 70000
                           : strtoul(hostPort.c_str() + colon + 1, &end, 10);
  if (port > 65535 || end == nullptr || *end != '\0' ||
      inet_pton(AF_INET, hostPort.substr(0, colon).c_str(), &address.sin_addr) != 1) {
    throw std::runtime_error("not an IPv4 address:port: '" + hostPort + "'");
  }
  address.sin_port = htons(port);
  return address;
}

int listenTcp(const std::string& hostPort) {
  struct sockaddr_in address = ipv4SocketAddress(hostPort);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(fd, SOMAXCONN) != 0) {
    int error = errno;
    close(fd);
    throw std::runtime_error("cannot listen on " + hostPort + ": " + strerror(error));
  }
  return fd;
}

std::string localAddress(int fd) {
  struct sockaddr_in address;
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  char text[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &address.sin_addr, text, sizeof(text));
  return std::string(text) + ":" + std::to_string(ntohs(address.sin_port));
}

int tryConnectTcp(const std::string& hostPort, int timeoutMillis) {
  struct sockaddr_in address = ipv4SocketAddress(hostPort);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    if (errno != EINPROGRESS) {
      int error = errno;
      close(fd);
      errno = error;
      return -1;
    }
    struct pollfd waiting = {fd, POLLOUT, 0};
    int ready = poll(&waiting, 1, timeoutMillis);
    int error = ETIMEDOUT;
    socklen_t length = sizeof(error);
    if (ready == 1) getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) {
      close(fd);
      errno = error;
      return -1;
    }
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

int connectTcp(const std::string& hostPort) {
  int fd = tryConnectTcp(hostPort, 20000);
  if (fd < 0) {
    throw std::runtime_error("cannot connect to " + hostPort + ": " + strerror(errno));
  }
  return fd;
}

bool reachable(const std::string& hostPort, int timeoutMillis) {
  int fd = tryConnectTcp(hostPort, timeoutMillis);
  if (fd < 0) return false;
  close(fd);
  return true;
}

bool writeAll(int fd, const void* data, size_t size) {
  const char* at = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = send(fd, at, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    at += n;
    size -= n;
  }
  return true;
}

std::string readUpTo(int fd, size_t size) {
  std::string data(size, '\0');
  size_t got = 0;
  while (got < size) {
    ssize_t n = read(fd, data.data() + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += n;
  }
  data.resize(got);
  return data;
}

bool readableWithin(int fd, int timeoutMillis) {
  struct pollfd waiting = {fd, POLLIN, 0};
  return poll(&waiting, 1, timeoutMillis) == 1;
}

std::string howConnectionEnds(int fd) {
  if (!readableWithin(fd, 20000)) return "open";
  char byte;
  ssize_t n = read(fd, &byte, 1);
  if (n == 0) return "closed";
  if (n > 0) return "data";
  return errno == ECONNRESET ? "reset" : std::string("error: ") + strerror(errno);
}

}  // namespace refstore::testing
