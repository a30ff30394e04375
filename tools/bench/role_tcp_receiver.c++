// Raw TCP baseline between hosts (raw_tcp.h): the receiving end. Listens on one host's address,
// and for each connection reads an 8-byte length and that many bytes into a warm buffer, then
// answers with 8 bytes (the checksum of every byte, or just the count), until the sender closes.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <thread>

#include "tools/bench/bytes.h"
#include "tools/bench/raw_tcp.h"
#include "tools/bench/roles.h"

namespace refbench {

int runTcpReceiver(const std::vector<std::string>& args) {
  if (args.size() != 2) throw std::runtime_error("tcp-receiver <ip> read|discard");
  bool readEveryByte = args[1] == "read";
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address = ipv4Address(args[0], 0);
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0) {
    throw std::runtime_error("tcp-receiver: cannot bind " + args[0] + ": " + strerror(errno));
  }
  socklen_t length = sizeof(address);
  getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
  listen(listener, 16);
  writeLine("ready " + std::to_string(ntohs(address.sin_port)));
  // Stops when refbench closes our stdin (a thread watches it) or dies.
  std::thread([]() {
    readLine();
    _exit(0);
  }).detach();
  WarmBuffer buffer;
  for (;;) {
    int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uint64_t size;
    while (readFully(fd, reinterpret_cast<uint8_t*>(&size), sizeof(size))) {
      buffer.ensure(size);
      if (!readFully(fd, buffer.data(), size)) break;
      uint64_t answer = readEveryByte ? checksum(buffer.data(), size) : size;
      if (write(fd, &answer, sizeof(answer)) != sizeof(answer)) break;
    }
    close(fd);
  }
}

}  // namespace refbench
