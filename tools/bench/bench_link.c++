#include "tools/bench/bench_link.h"

#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>

#include "tests/network_namespaces.h"

namespace refbench {

std::string gbitName(uint64_t bitsPerSecond) {
  char text[32];
  snprintf(text, sizeof(text), "%g", bitsPerSecond / 1e9);
  return text;
}

LinkMode parseLinkMode(const std::string& name) {
  if (name == "loopback") return LinkMode::LOOPBACK;
  if (name == "netns") return LinkMode::NETNS;
  if (name == "shaped") return LinkMode::SHAPED;
  throw std::runtime_error("--xhost-link " + name + ": not loopback, netns or shaped");
}

const char* linkModeName(LinkMode mode) {
  switch (mode) {
    case LinkMode::LOOPBACK: return "loopback";
    case LinkMode::NETNS: return "netns";
    case LinkMode::SHAPED: return "shaped";
  }
  return "?";
}

BenchLink::BenchLink(LinkMode mode, size_t hosts, uint64_t shapedBitsPerSecond)
    : linkMode(mode), hostCount(hosts), shapedRate(shapedBitsPerSecond) {
  if (mode == LinkMode::LOOPBACK) return;
  std::string why = refstore::testing::NamespaceNetwork::unavailable();
  if (!why.empty()) {
    throw std::runtime_error(std::string("--xhost-link ") + linkModeName(mode) + ": " + why);
  }
  namespaces = std::make_unique<refstore::testing::NamespaceNetwork>(hosts);
  if (mode == LinkMode::SHAPED) {
    for (size_t i = 0; i < hosts; i++) namespaces->shape(i, shapedRate);
  }
}

BenchLink::~BenchLink() = default;  // NamespaceNetwork's destructor kills and deletes

std::string BenchLink::ip(size_t host) const {
  if (host >= hostCount) throw std::logic_error("BenchLink: no host " + std::to_string(host));
  return namespaces ? namespaces->ip(host) : "127.0.0." + std::to_string(host + 2);
}

uint64_t BenchLink::bitsPerSecond() const {
  return linkMode == LinkMode::SHAPED ? shapedRate : 0;
}

std::string BenchLink::describe(size_t from, size_t to) const {
  std::string path = ip(from) + " -> " + ip(to);
  switch (linkMode) {
    case LinkMode::LOOPBACK: return "loopback " + path;
    case LinkMode::NETNS: return "netns (veth + bridge) " + path;
    case LinkMode::SHAPED:
      return "netns (veth + bridge) " + path + ", tbf " + gbitName(shapedRate) +
             " Gbit/s each veth end";
  }
  return path;
}

BenchLink::InNetwork::InNetwork(const BenchLink& link, size_t host) {
  if (!link.namespaces) return;
  // setns() moves only the calling thread; keep its own namespace to come back to.
  home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home < 0) throw std::runtime_error(std::string("cannot open own netns: ") + strerror(errno));
  try {
    link.namespaces->enter(host);
  } catch (...) {
    close(home);
    throw;
  }
}

BenchLink::InNetwork::~InNetwork() {
  if (home < 0) return;
  // Cannot fail for a namespace this thread was in a moment ago; if it did, every later socket
  // would be on the wrong network: stop rather than measure the wrong thing.
  if (setns(home, CLONE_NEWNET) != 0) {
    perror("refbench: cannot return to the original network namespace");
    abort();
  }
  close(home);
}

}  // namespace refbench
