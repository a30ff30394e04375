// Raw transfer baseline: the receiving end of a Unix or loopback-TCP stream socket. What any
// transport must at least pay: the kernel copies the bytes through a socket buffer, in pieces
// of at most the buffer size, with a wake-up per piece.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <stdexcept>

#include "tools/bench/bytes.h"
#include "tools/bench/roles.h"

namespace refbench {
namespace {

bool readAll(int fd, uint8_t* data, size_t size) {
  while (size > 0) {
    ssize_t n = read(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= n;
  }
  return true;
}

}  // namespace

int runSocketSink(const std::vector<std::string>& args) {
  if (args.empty()) throw std::runtime_error("socket-sink unix <path> | socket-sink tcp");
  bool isUnix = args[0] == "unix";
  int listener;
  int port = 0;
  if (isUnix) {
    listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address;
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    strncpy(address.sun_path, args.at(1).c_str(), sizeof(address.sun_path) - 1);
    unlink(address.sun_path);
    if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0) {
      throw std::runtime_error("socket-sink: bind failed");
    }
  } else {
    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in address;
    memset(&address, 0, sizeof(address));
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0) {
      throw std::runtime_error("socket-sink: bind failed");
    }
    socklen_t length = sizeof(address);
    getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
    port = ntohs(address.sin_port);
  }
  listen(listener, 1);
  writeLine("ready " + std::to_string(port));
  int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) throw std::runtime_error("socket-sink: accept failed");
  if (!isUnix) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  WarmBuffer buffer;
  for (;;) {
    uint64_t size;
    if (!readAll(fd, reinterpret_cast<uint8_t*>(&size), sizeof(size))) break;
    buffer.ensure(size);
    if (!readAll(fd, buffer.data(), size)) break;
    uint64_t sum = checksum(buffer.data(), size);
    if (write(fd, &sum, sizeof(sum)) != sizeof(sum)) break;
  }
  close(fd);
  close(listener);
  return 0;
}

}  // namespace refbench
