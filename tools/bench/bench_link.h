// The link between refbench's cross-host "hosts" (`--xhost-link`):
//
//   loopback  host i at 127.0.0.(i+2) on `lo` (Linux routes all of 127/8 there): no setup,
//             works unprivileged; the kernel's TCP stack copies through memory.
//   netns     host i in a network namespace of its own at 10.a.b.(i+1), its veth cabled to a
//             bridge (tests/network_namespaces.h, the many-host tests' harness): every packet
//             crosses a veth pair and a bridge, as a container network does. Root only.
//   shaped    netns, and each host's veth capped at 10 Gbit/s each way (tc tbf on both ends):
//             the link, not this machine's memory bandwidth, is the limit.
//
// Everything that runs "on" a host — its daemon, the helpers and baselines on it, the sockets
// refbench opens from it — is started inside an InNetwork guard for that host, so a baseline
// uses the same link as the daemons. Unix sockets are files: they work across namespaces, so
// refbench's clients reach every daemon from anywhere. The namespaces are deleted (and whatever
// still runs in them killed) when the BenchLink goes, also when a workload throws, and their
// names on SIGTERM/SIGINT/SIGHUP/SIGABRT; after a SIGKILL the next run removes them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace refstore::testing {
class NamespaceNetwork;
}

namespace refbench {

enum class LinkMode { LOOPBACK, NETNS, SHAPED };

// "loopback", "netns", "shaped" -> the mode; throws naming the choices otherwise.
LinkMode parseLinkMode(const std::string& name);
const char* linkModeName(LinkMode mode);
// 10000000000 -> "10", 2500000000 -> "2.5".
std::string gbitName(uint64_t bitsPerSecond);

class BenchLink {
 public:
  // The default cap of SHAPED links: fast enough to be a real link, slow enough that it is the
  // limit of a single pull on this class of machine.
  static constexpr uint64_t kDefaultShapedBitsPerSecond = 10'000'000'000;

  // Up to `hosts` hosts. NETNS and SHAPED need root and iproute2 (throws saying why not).
  // SHAPED caps each host's link at `shapedBitsPerSecond` each way (tc tbf).
  BenchLink(LinkMode mode, size_t hosts,
            uint64_t shapedBitsPerSecond = kDefaultShapedBitsPerSecond);
  ~BenchLink();
  BenchLink(const BenchLink&) = delete;

  LinkMode mode() const { return linkMode; }
  size_t capacity() const { return hostCount; }
  std::string ip(size_t host) const;
  // The cap of SHAPED links in bits per second (0 otherwise).
  uint64_t bitsPerSecond() const;
  // "loopback 127.0.0.2 -> 127.0.0.3", "veth+bridge 10.x.y.1 -> 10.x.y.2, tbf 10 Gbit/s", ...
  std::string describe(size_t from, size_t to) const;

  // While it lives, the calling thread is on host `host`'s network: sockets it opens and
  // processes it starts belong there. Nothing on loopback.
  class InNetwork {
   public:
    InNetwork(const BenchLink& link, size_t host);
    ~InNetwork();
    InNetwork(const InNetwork&) = delete;

   private:
    int home = -1;  // the thread's own namespace, to go back to
  };
  InNetwork on(size_t host) const { return InNetwork(*this, host); }

 private:
  LinkMode linkMode;
  size_t hostCount;
  uint64_t shapedRate;
  std::unique_ptr<refstore::testing::NamespaceNetwork> namespaces;
};

}  // namespace refbench
