// The cross-host workloads, in the order that says most first (BENCHMARKS.md, "Many hosts").
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

#include "client/cpp/refstore_async.h"
#include "tools/bench/bytes.h"
#include "tools/bench/context.h"
#include "tools/bench/raw_tcp.h"
#include "tools/bench/xhost.h"

namespace refbench {

Xhost::Xhost(Context& ctx, BenchHosts& hosts): ctx(ctx), hosts(hosts) {
  for (size_t i = 0; i < hosts.size(); i++) {
    clients.push_back(refstore::Client::connect(hosts[i].socket()));
  }
}

void Xhost::waitNoProxies(size_t host) {
  for (int i = 0; on(host).stats().proxies != 0; i++) {
    if (i > 20000) throw std::runtime_error("host " + std::to_string(host) + " keeps a proxy");
    usleep(100);
  }
}

refstore::Ref Xhost::makeValue(size_t host, uint64_t size, uint64_t seed) {
  refstore::WriteBuffer buffer = on(host).create(size);
  fillPattern(buffer.data(), size, seed);
  return buffer.seal();
}

kj::Own<kj::AsyncIoStream> connectFrom(kj::AsyncIoContext& io, const BenchLink& link,
                                       size_t fromHost, size_t toHost, int port) {
  std::string fromIp = link.ip(fromHost), toIp = link.ip(toHost);
  int fd = [&]() {
    BenchLink::InNetwork onHost(link, fromHost);  // a socket stays in the namespace it was made in
    return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  }();
  sockaddr_in from = ipv4Address(fromIp, 0), to = ipv4Address(toIp, port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) < 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) < 0) {
    int error = errno;
    close(fd);
    throw std::runtime_error("cannot connect " + fromIp + " -> " + toIp + ": " + strerror(error));
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // as kj's connect() does
  // wrapSocketFd makes it non-blocking.
  return io.lowLevelProvider->wrapSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
}

namespace {

Child startTcpWorker(Xhost& x, size_t atHost, int& port) {
  BenchLink::InNetwork onHost(x.link(), atHost);
  Child child = Child::role("worker", {"tcp:" + x.hosts.ip(atHost), x.hosts[atHost].socket()});
  std::string ready = child.receive();  // "ready <port>"
  port = std::stoi(ready.substr(6));
  return child;
}

}  // namespace

TcpWorker::TcpWorker(Xhost& x, size_t atHost, size_t fromHost)
    : process(startTcpWorker(x, atHost, port)),
      stream(connectFrom(refstore::async::ioContext(x.on(fromHost)), x.link(), fromHost, atHost,
                         port)),
      rpc(*stream),
      worker(rpc.bootstrap().castAs<proto::Worker>()) {}

void idleLongerThanBusyPolls() {
  struct timespec gap = {0, 300 * 1000};
  nanosleep(&gap, nullptr);
}

Child startConsumer(Xhost& x, size_t host, const std::string& redis) {
  BenchLink::InNetwork onHost(x.link(), host);
  Child consumer = Child::role(
      "consumer", {x.hosts[host].socket(), redis.empty() ? x.ctx.redis->socket() : redis});
  consumer.receive();  // ready
  return consumer;
}

void checkValue(const uint8_t* data, uint64_t size, uint64_t seed, const char* what) {
  // fillPattern's word i is seed * K + i * K': check the first, middle and last whole words.
  const uint64_t base = seed * 0x9E3779B97F4A7C15ull, step = 0xD6E8FEB86659FD93ull;
  uint64_t words = size / 8;
  for (uint64_t i: {uint64_t(0), words / 2, words - 1}) {
    uint64_t word;
    memcpy(&word, data + i * 8, 8);
    if (words > 0 && word != base + i * step) {
      throw std::runtime_error(std::string(what) + ": the value's bytes are wrong");
    }
  }
}

void runXhost(Context& ctx) {
  // Four hosts on the link (the broadcast's owner and three readers); the other parts use two
  // of them. Deleted (namespaces and all) on the way out, also when a part throws.
  BenchLink link(ctx.options.xhostLink, 4, ctx.options.xhostBitsPerSecond);
  // Two daemons: 0 owns the values, 1 reads them (its fan-out readers are processes on host 1).
  // Memory: the 1 GiB pull needs the value on the owner and a copy on the reader.
  BenchHosts hosts(ctx, link, 2, "host", ctx.quick() ? "1G" : "3G");
  Xhost x(ctx, hosts);
  ctx.report.set("xhost_link", link.describe(0, 1));
  ctx.report.set("xhost_link_mode", std::string(linkModeName(link.mode())));
  ctx.report.set("xhost_link_bits_per_s", link.bitsPerSecond());
  const std::pair<const char*, void (*)(Xhost&)> parts[] = {
      {"pull", xhostPull},
      {"first_read", xhostFirstRead},
      {"handoff", xhostHandoff},
      {"fanout", xhostFanout},
      {"release", xhostRelease},
      {"tls", xhostTls},
      {"small_refs", xhostSmallRefs},
      {"broadcast", xhostBroadcast},
      {"proxy_bytes", xhostProxyBytes},
  };
  auto& wanted = ctx.options.xhostParts;
  for (auto& name: wanted) {
    if (std::none_of(std::begin(parts), std::end(parts),
                     [&](auto& part) { return name == part.first; })) {
      throw std::runtime_error("--xhost-parts: no part named " + name);
    }
  }
  for (auto& part: parts) {
    if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), part.first) == wanted.end()) {
      continue;
    }
    try {
      part.second(x);
    } catch (std::exception& e) {
      ctx.failures++;
      ctx.report.set(std::string("xhost_") + part.first + "_error", std::string(e.what()));
      ctx.progress("xhost %s FAILED: %s", part.first, e.what());
    } catch (kj::Exception& e) {
      ctx.failures++;
      std::string what = e.getDescription().cStr();
      ctx.report.set(std::string("xhost_") + part.first + "_error", what);
      ctx.progress("xhost %s FAILED: %s", part.first, what.c_str());
    }
  }
}

}  // namespace refbench
