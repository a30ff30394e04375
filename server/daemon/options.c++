#include "server/daemon/options.h"

#include <stdlib.h>
#include <unistd.h>

#include "schema/socket_path.h"

namespace refstore::server {

bool isLoopbackHost(kj::StringPtr hostPort) {
  return hostPort.startsWith("127.") || hostPort.startsWith("localhost:") ||
         hostPort.startsWith("[::1]:");
}

DaemonOptions DaemonOptions::defaults() {
  uint64_t ram = uint64_t(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  DaemonOptions options;
  options.socketPath = kj::str(defaultSocketPath().c_str());
  options.capacity = ram / 4;
  return options;
}

uint64_t DaemonOptions::defaultSegmentSize(uint64_t capacity) {
  uint64_t size = uint64_t(64) << 20;
  while (size * 2 <= capacity / 16 && size < (uint64_t(1) << 30)) size *= 2;
  return size;
}

kj::String DaemonOptions::defaultSpillDir() {
  if (const char* state = getenv("XDG_STATE_HOME"); state && *state) {
    return kj::str(state, "/refstore/spill");
  }
  if (const char* home = getenv("HOME"); home && *home) {
    return kj::str(home, "/.local/state/refstore/spill");
  }
  return kj::str("/var/tmp/refstore-", getuid(), "/spill");
}

uint64_t DaemonOptions::effectiveSegmentSize() const {
  return segmentSize != 0 ? segmentSize : defaultSegmentSize(capacity);
}

kj::String DaemonOptions::effectiveSpillDir() const {
  KJ_IF_MAYBE(dir, spillDir) { return kj::str(*dir); }
  return defaultSpillDir();
}

kj::Maybe<kj::String> DaemonOptions::problem() const {
  KJ_IF_MAYBE(address, tcpAddress) {
    if (!isLoopbackHost(*address) && secret == nullptr) {
      return kj::str("--tcp on a non-loopback address requires --secret-file");
    }
  }
  if (tcpAddress == nullptr) {
    if (advertise != nullptr) return kj::str("--advertise needs --tcp (other daemons dial it)");
    if (dataAddress != nullptr) return kj::str("--data needs --tcp");
    if (dataAdvertise != nullptr) return kj::str("--data-advertise needs --tcp");
  }
  int tls = (tlsCert != nullptr) + (tlsKey != nullptr) + (tlsCa != nullptr);
  if (tls != 0 && tls != 3) return kj::str("TLS needs all of --tls-cert, --tls-key and --tls-ca");
  if (tls != 0 && tcpAddress == nullptr) return kj::str("--tls-* need --tcp");
  if (peerTimeoutMillis <= heartbeatMillis) {
    return kj::str("--peer-timeout-ms must be longer than --heartbeat-ms");
  }
  return nullptr;
}

bool isWildcardHost(kj::StringPtr hostPort) {
  return hostPort.startsWith("0.0.0.0:") || hostPort.startsWith("[::]:") ||
         hostPort.startsWith("*:") || hostPort.startsWith(":");
}

kj::String hostOf(kj::StringPtr hostPort) {
  KJ_IF_MAYBE(colon, hostPort.findLast(':')) { return kj::str(hostPort.slice(0, *colon)); }
  return kj::str(hostPort);
}

}  // namespace refstore::server
