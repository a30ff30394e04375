// Socket activation: listening sockets a service manager opened for us and passed as inherited
// file descriptors (systemd's sd_listen_fds protocol, without libsystemd): $LISTEN_PID names the
// process they are for, $LISTEN_FDS how many there are (from fd 3 on), and $LISTEN_FDNAMES,
// optionally, a colon-separated name for each (a .socket unit's FileDescriptorName=).
//
// Why: the socket exists before the daemon and survives its restarts, so clients connecting
// while refstored (re)starts wait in the backlog instead of failing, and the socket's path,
// owner and mode are set by the unit file (tools/systemd/refstored.socket).
#pragma once

#include <kj/array.h>
#include <kj/io.h>
#include <kj/string.h>

namespace refstore::server::systemd {

struct InheritedSocket {
  kj::AutoCloseFd fd;    // close-on-exec, as the daemon's own sockets are
  kj::String name;       // from $LISTEN_FDNAMES, or "" without it
  int family;            // AF_UNIX, AF_INET or AF_INET6
  kj::String address;    // for messages: the socket's path, or host:port
};

// The sockets passed to this process, in fd order; empty if none were (no $LISTEN_FDS, or
// $LISTEN_PID names another process). Unsets the three variables either way (they are for this
// process only). Throws, naming the problem, if the variables are malformed or a passed fd is
// not a listening stream socket.
kj::Array<InheritedSocket> takeListenFds();

// What refstored serves on inherited sockets: a Unix socket is the client socket (shared
// memory), a TCP socket named "metrics" the --metrics endpoint, any other TCP socket the --tcp
// listener. At most one of each; more is a configuration error (thrown).
struct ActivatedSockets {
  kj::Maybe<InheritedSocket> unixSocket;
  kj::Maybe<InheritedSocket> tcp;
  kj::Maybe<InheritedSocket> metrics;
};
ActivatedSockets sortActivatedSockets(kj::Array<InheritedSocket> sockets);

}  // namespace refstore::server::systemd
