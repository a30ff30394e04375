// The cross-host workloads (`--only xhost`, BENCHMARKS.md "Many hosts"): refstore daemons as
// hosts on loopback aliases (bench_hosts.h), against baselines on the same link in the same
// run. One file per measurement (xhost_*.c++); wl_xhost.c++ runs them in order.
#pragma once

#include <string>

#include "client/cpp/refstore_client.h"
#include "tools/bench/bench_hosts.h"
#include "tools/bench/workloads.h"

namespace refbench {

// What every cross-host measurement gets: the run and its hosts (0 owns values, the others
// read them). Clients are refbench's own, one per host, on each host's Unix socket.
struct Xhost {
  Context& ctx;
  BenchHosts& hosts;
  std::vector<refstore::Client> clients;  // clients[i] talks to hosts[i]

  Xhost(Context& ctx, BenchHosts& hosts);
  refstore::Client& on(size_t host) { return clients.at(host); }
  // Polls host `host` until it holds no proxy (its copies are freed: the next read pulls again).
  void waitNoProxies(size_t host);
  // A value of `size` pattern bytes (seed `seed`) made in place on host `host`.
  refstore::Ref makeValue(size_t host, uint64_t size, uint64_t seed);
};

// The link measured: "loopback 127.0.0.2 -> 127.0.0.3" and so on.
std::string linkName(size_t from, size_t to);

void xhostPull(Xhost& x);  // pull_1GiB_vs_raw_tcp and the pull throughput by size
// Spot checks of a value made by makeValue (a few words, not every byte: the daemon has
// verified the whole value against its XXH3-128 already).
void checkValue(const uint8_t* data, uint64_t size, uint64_t seed, const char* what);

}  // namespace refbench
