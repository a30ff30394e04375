// DaemonOptions: everything refstored is configured with, as main.c++ parsed it from the flags.
// Defaults that depend on the machine (capacity, segment size, spill directory) are resolved
// here, in one place.
#pragma once

#include <kj/string.h>

#include "server/store/hash_scheduler.h"
#include "server/store/limits.h"

namespace refstore::server {

struct DaemonOptions {
  kj::String socketPath;         // the Unix socket (see schema/socket_path.h for the default)
  uint64_t capacity;             // shared-memory capacity (default: a quarter of RAM)
  uint64_t segmentSize = 0;      // 0: defaultSegmentSize(capacity)
  kj::Maybe<kj::String> spillDir;  // null: defaultSpillDir()
  bool noSpill = false;
  kj::Maybe<kj::String> tcpAddress;
  kj::Maybe<kj::String> secret;    // the cluster secret TCP clients must present
  kj::Maybe<kj::String> metricsAddress;
  // Many hosts: where other daemons reach this one (default: the --tcp address, unless it is a
  // wildcard), the data port other daemons copy bytes from (default: the --tcp host, any
  // port) and where they reach it (default: the advertised host, that port), and the peer
  // timings.
  kj::Maybe<kj::String> advertise;
  kj::Maybe<kj::String> dataAddress;
  kj::Maybe<kj::String> dataAdvertise;
  uint64_t heartbeatMillis = 1000;
  uint64_t peerTimeoutMillis = 5000;
  uint64_t peerGraceMillis = 15000;
  uint64_t peerIdleMillis = 30000;
  // TLS on the TCP listener and on connections to other daemons (all three, or none).
  kj::Maybe<kj::String> tlsCert, tlsKey, tlsCa;
  uint64_t busyPollMicros = 100;
  uint64_t hashDelayMillis = HashScheduler::kDefaultDelayMillis;
  Limits limits;

  // The defaults of this machine and environment.
  static DaemonOptions defaults();
  // Large values are only cheap when they land in an existing, pre-faulted segment: a value
  // bigger than half a segment gets a dedicated segment, created and faulted for it alone
  // (refbench: ~60 ms per 64 MiB). So segments grow with the capacity: capacity/16, between
  // 64 MiB and 1 GiB.
  static uint64_t defaultSegmentSize(uint64_t capacity);
  // $XDG_STATE_HOME/refstore/spill, else ~/.local/state/refstore/spill, else
  // /var/tmp/refstore-<uid>/spill.
  static kj::String defaultSpillDir();

  uint64_t effectiveSegmentSize() const;
  kj::String effectiveSpillDir() const;
  // What is wrong with this combination of options, in one line; null if nothing.
  kj::Maybe<kj::String> problem() const;
};

// Whether `hostPort` names a loopback address (127.x, localhost, [::1]).
bool isLoopbackHost(kj::StringPtr hostPort);
// Whether it names every address of the host (0.0.0.0, [::], *): not one others can dial.
bool isWildcardHost(kj::StringPtr hostPort);
// "host" of "host:port".
kj::String hostOf(kj::StringPtr hostPort);

}  // namespace refstore::server
