// The daemon's Unix socket: the rendezvous point of every local client.
#pragma once

#include <kj/io.h>
#include <kj/string.h>

namespace refstore::server {

// Creates, binds and listens on a Unix socket at `path` with mode 0600. A stale socket file (no
// one accepting) is replaced; a live one is an error, so two daemons never share a path.
kj::AutoCloseFd listenUnixSocket(kj::StringPtr path);

// Throws if a live daemon accepts connections at `path` (checked early, so a second daemon
// fails before touching anything).
void requireSocketFree(kj::StringPtr path);

}  // namespace refstore::server
