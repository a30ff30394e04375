// The cross-host workloads (`--only xhost`, BENCHMARKS.md "Many hosts"): refstore daemons as
// hosts (bench_hosts.h) on loopback aliases or in network namespaces (`--xhost-link`,
// bench_link.h), against baselines on the same link in the same run. One file per measurement
// (xhost_*.c++); wl_xhost.c++ runs them in order.
#pragma once

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <string>

#include "client/cpp/refstore_client.h"
#include "tools/bench/bench.capnp.h"
#include "tools/bench/bench_hosts.h"
#include "tools/bench/processes.h"
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
  const BenchLink& link() const { return hosts.link(); }
  // Polls host `host` until it holds no proxy (its copies are freed: the next read pulls again).
  void waitNoProxies(size_t host);
  // A value of `size` pattern bytes (seed `seed`) made in place on host `host`.
  refstore::Ref makeValue(size_t host, uint64_t size, uint64_t seed);
};

// A TCP connection from host `fromHost` of `link` (its network; bound to its address, any port)
// to host `toHost`'s address and `port`, on the event loop `io`: kj's network API cannot choose the
// source address, and a cross-host baseline must leave from the sending host's address like the
// daemons' connections do.
kj::Own<kj::AsyncIoStream> connectFrom(kj::AsyncIoContext& io, const BenchLink& link,
                                       size_t fromHost, size_t toHost, int port);

// A `consumer` helper (role_consumer.c++) started on host `host`'s network, talking to its
// daemon and to `redis` (a Unix socket path or "tcp:IP:PORT"; default: the run's local Redis);
// it has said "ready".
Child startConsumer(Xhost& x, size_t host, const std::string& redis = "");

// A `worker` helper (bench.capnp Worker: echo, by-value sinks) listening on TCP at host
// `atHost`'s address, and refbench's connection to it from host `fromHost`'s address: the
// Cap'n Proto baselines across the link.
struct TcpWorker {
  TcpWorker(Xhost& x, size_t atHost, size_t fromHost);
  int port = 0;  // first: the process's start-up sets it, the connection uses it
  Child process;
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyClient rpc;
  proto::Worker::Client worker;
};

// Sleeps 300 us: longer than every busy poll (the daemons' and clients' 100 us), so each timed
// call starts with its servers asleep, as wl_view.c++ does for the local echo.
void idleLongerThanBusyPolls();

// One pull: host 1 restores a fresh token of `owned` (on host 0, made by makeValue with
// `seed`) and views it; seconds from the restore to the View in hand (the token and the
// clean-up, host 1 freeing its copy, untimed).
double timePull(Xhost& x, const refstore::Ref& owned, uint64_t seed);

void xhostPull(Xhost& x);       // pull_1GiB_vs_raw_tcp and the pull throughput by size
void xhostFirstRead(Xhost& x);  // xhost_first_read_over_echo: restore + read 1 KiB vs an echo
void xhostHandoff(Xhost& x);    // xhost_handoff_64MiB_vs_by_value, with raw TCP too
void xhostFanout(Xhost& x);     // xhost_fanout_4_readers: four readers on B, one transfer
void xhostRelease(Xhost& x);    // xhost_release_ms: last drop on B -> freed on A
// pull_tls_vs_plain: the pull between two more hosts with --tls-* (certificates made with
// openssl in the run's directory) against the plain pull of `x`; skipped without openssl.
void xhostTls(Xhost& x);
// xhost_small_refs_per_s: restore + read + drop of 1 KiB values, host 1 from host 0, pipelined,
// vs the same on host 0 alone.
void xhostSmallRefs(Xhost& x);
// xhost_broadcast_3_hosts_over_single: one large value read on three hosts at once vs on one
// (four hosts of its own on the same link).
void xhostBroadcast(Xhost& x);
// proxy_bytes_<count>_owner / _reader: daemon memory per cross-host reference (two fresh hosts
// on the same link, so that their baselines are clean).
void xhostProxyBytes(Xhost& x);
// Spot checks of a value made by makeValue (a few words, not every byte: the daemon has
// verified the whole value against its XXH3-128 already).
void checkValue(const uint8_t* data, uint64_t size, uint64_t seed, const char* what);

}  // namespace refbench
