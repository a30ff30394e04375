#include "tools/bench/raw_tcp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

#include "tools/bench/roles.h"
#include "tools/bench/timing.h"

namespace refbench {

sockaddr_in ipv4Address(const std::string& ip, int port) {
  sockaddr_in address;
  memset(&address, 0, sizeof(address));
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  if (inet_pton(AF_INET, ip.c_str(), &address.sin_addr) != 1) {
    throw std::runtime_error("not an IPv4 address: " + ip);
  }
  return address;
}

bool readFully(int fd, uint8_t* data, uint64_t size) {
  while (size > 0) {
    ssize_t n = read(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= n;
  }
  return true;
}

namespace {

void writeAll(int fd, const uint8_t* data, uint64_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error(std::string("raw TCP copy: write: ") + strerror(errno));
    data += n;
    size -= n;
  }
}

// Reads a whole file (iperf3's JSON output).
std::string slurp(FILE* file) {
  std::string text;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), file)) > 0) text.append(buffer, n);
  return text;
}

}  // namespace

namespace {

Child startReceiver(const BenchLink& link, size_t toHost, bool readEveryByte) {
  BenchLink::InNetwork onHost(link, toHost);
  return Child::role("tcp-receiver", {link.ip(toHost), readEveryByte ? "read" : "discard"});
}

}  // namespace

RawTcpCopy::RawTcpCopy(const BenchLink& link, size_t toHost, bool readEveryByte)
    : link(link), receiver(startReceiver(link, toHost, readEveryByte)), ip(link.ip(toHost)) {
  std::string ready = receiver.receive();  // "ready <port>"
  port = std::stoi(ready.substr(6));
}

RawTcpCopy::~RawTcpCopy() {
  receiver.send("");  // it exits at EOF of its stdin: closing it happens in ~Child
}

uint64_t RawTcpCopy::copy(size_t fromHost, const uint8_t* data, uint64_t size) {
  std::string fromIp = link.ip(fromHost);
  int fd = [&]() {
    BenchLink::InNetwork onHost(link, fromHost);  // a socket stays in the namespace it was made in
    return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  }();
  sockaddr_in from = ipv4Address(fromIp, 0), to = ipv4Address(ip, port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) < 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) < 0) {
    close(fd);
    throw std::runtime_error("raw TCP copy: cannot connect " + fromIp + " -> " + ip + ": " +
                             strerror(errno));
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  uint64_t answer = 0;
  try {
    writeAll(fd, reinterpret_cast<const uint8_t*>(&size), sizeof(size));
    writeAll(fd, data, size);
    if (!readFully(fd, reinterpret_cast<uint8_t*>(&answer), sizeof(answer))) {
      throw std::runtime_error("raw TCP copy: the receiver closed the connection");
    }
  } catch (...) {
    close(fd);
    throw;
  }
  close(fd);
  return answer;
}

double RawTcpCopy::iperf3(const BenchLink& link, size_t from, size_t to, uint64_t size) {
  if (access("/usr/bin/iperf3", X_OK) != 0) return 0;
  std::string fromIp = link.ip(from), toIp = link.ip(to);
  int port = 5201 + (getpid() % 1000);
  Child server = [&]() {
    BenchLink::InNetwork onHost(link, to);
    return Child::start({"/usr/bin/iperf3", "--server", "--one-off", "--bind", toIp, "--port",
                         std::to_string(port)},
                        /*pipes=*/false, "/dev/null");
  }();
  // The server needs a moment to listen; the client retries its connection for a second.
  std::string command = "/usr/bin/iperf3 --client " + toIp + " --bind " + fromIp + " --port " +
                        std::to_string(port) + " --bytes " + std::to_string(size) +
                        " --json 2>/dev/null";
  std::string output;
  for (int attempt = 0; attempt < 20; attempt++) {
    usleep(50000);
    BenchLink::InNetwork onHost(link, from);  // popen's shell and iperf3 inherit it
    FILE* client = popen(command.c_str(), "r");
    if (client == nullptr) return 0;
    output = slurp(client);
    if (pclose(client) == 0) break;
    output.clear();
  }
  server.signal(SIGTERM);
  server.wait();
  // "sum_received": { ... "bits_per_second": N ... }
  size_t at = output.find("\"sum_received\"");
  if (at == std::string::npos) return 0;
  at = output.find("\"bits_per_second\"", at);
  if (at == std::string::npos) return 0;
  return std::stod(output.substr(output.find(':', at) + 1)) / 8;
}

}  // namespace refbench
