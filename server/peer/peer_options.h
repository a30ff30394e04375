// How this daemon talks to other daemons (refstored's --advertise, --peer-* and --tls-* flags).
#pragma once

#include <kj/string.h>
#include <kj/time.h>

#include "gc/object_table.h"

namespace kj {
class TlsContext;
}

namespace refstore::server {

struct PeerOptions {
  gc::PeerId origin = 0;         // this daemon's epoch
  kj::String advertise;          // host:port where other daemons reach this one (--advertise)
  kj::String dataAddress;        // host:port of this daemon's data port
  kj::Maybe<kj::String> secret;  // the cluster secret presented to other daemons
  // Liveness: each side calls the other's PeerService.heartbeat every `heartbeat`; a connection
  // on which nothing has been heard for `timeout` is treated as broken.
  kj::Duration heartbeat = 1 * kj::SECONDS;
  kj::Duration timeout = 5 * kj::SECONDS;
  // How long an owner keeps the holds of a peer whose connection broke, waiting for it to come
  // back (--peer-grace-ms); and how long a reader keeps trying to reach a lost owner.
  kj::Duration grace = 15 * kj::SECONDS;
  kj::Duration connectTimeout = 5 * kj::SECONDS;
  // A connection this daemon dialed is closed once no reference has flowed over it either way
  // (no proxy of the peer's objects here, no hold of the peer on ours) and it has not been used
  // for this long (--peer-idle-ms); 0: kept for as long as both daemons live.
  kj::Duration idle = 30 * kj::SECONDS;
  // TLS for peer connections (both ways) when set: certificates are checked against its CA.
  kj::Maybe<kj::TlsContext&> tls;
};

}  // namespace refstore::server
