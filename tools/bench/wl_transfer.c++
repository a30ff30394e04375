// Reference transfer rates on this machine, measured in the same run as everything else:
// memcpy between two warm private buffers (the floor of any copy), and a raw byte stream to
// another process over a Unix socket and over loopback TCP (what moving a value by value costs
// before any protocol is added). The receiver reads every byte in all three.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <stdexcept>

#include "tools/bench/bytes.h"
#include "tools/bench/timing.h"
#include "tools/bench/workloads.h"

namespace refbench {
namespace {

void writeAll(int fd, const uint8_t* data, uint64_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error(std::string("raw transfer write: ") + strerror(errno));
    data += n;
    size -= n;
  }
}

void readAll(int fd, uint8_t* data, uint64_t size) {
  while (size > 0) {
    ssize_t n = read(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("raw transfer: sink closed the connection");
    data += n;
    size -= n;
  }
}

}  // namespace

RawTransfer::RawTransfer(Context& ctx, bool tcp) {
  std::string path = ctx.tmp.path() + "/raw.sock";
  sink = tcp ? Child::role("socket-sink", {"tcp"}) : Child::role("socket-sink", {"unix", path});
  std::string ready = sink.receive();  // "ready <port>"
  int port = std::stoi(ready.substr(6));
  if (tcp) {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in address;
    memset(&address, 0, sizeof(address));
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(port);
    if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0) {
      throw std::runtime_error("cannot connect to the TCP sink");
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  } else {
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address;
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0) {
      throw std::runtime_error("cannot connect to the Unix sink");
    }
  }
}

RawTransfer::~RawTransfer() {
  if (fd >= 0) close(fd);
  sink.wait();  // it exits at EOF
}

uint64_t RawTransfer::send(const uint8_t* data, uint64_t size) {
  writeAll(fd, reinterpret_cast<const uint8_t*>(&size), sizeof(size));
  writeAll(fd, data, size);
  uint64_t sum;
  readAll(fd, reinterpret_cast<uint8_t*>(&sum), sizeof(sum));
  return sum;
}

void runTransfer(Context& ctx) {
  uint64_t largest = ctx.quick() ? 64 * MiB : GiB;
  auto sizes = sizeRange(KiB, largest, 4);
  WarmBuffer source(largest), destination(largest);
  fillPattern(source.data(), largest, 1);
  RawTransfer unixSocket(ctx, /*tcp=*/false), tcp(ctx, /*tcp=*/true);

  std::vector<std::string> columns = {"size_bytes", "size"};
  for (auto prefix: {"memcpy_read_gbps", "unix_gbps", "tcp_gbps"}) {
    for (auto& c: Table::summaryColumns(prefix)) columns.push_back(c);
  }
  Table& table = ctx.report.table("transfer", columns);
  for (uint64_t size: sizes) {
    // memcpy plus a read of every byte, like the socket receivers do.
    auto samples = interleave(warmupFor(ctx, size), repsFor(ctx, size), {
        [&]() {
          return sampleOnce(size, [&]() {
            memcpy(destination.data(), source.data(), size);
            volatile uint64_t sum = checksum(destination.data(), size);
            (void)sum;
          });
        },
        [&]() { return sampleOnce(size, [&]() { unixSocket.send(source.data(), size); }); },
        [&]() { return sampleOnce(size, [&]() { tcp.send(source.data(), size); }); },
    });
    auto& copy = samples[0];
    auto& overUnix = samples[1];
    auto& overTcp = samples[2];
    std::vector<Value> row = {size, sizeName(size)};
    Table::appendSummary(row, summarize(toRates(copy, size)), 1e-9);
    Table::appendSummary(row, summarize(toRates(overUnix, size)), 1e-9);
    Table::appendSummary(row, summarize(toRates(overTcp, size)), 1e-9);
    table.add(row);
  }
}

}  // namespace refbench
