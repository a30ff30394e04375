// Telling a service manager how the daemon is doing (systemd's sd_notify protocol), without
// libsystemd: each notification is one datagram of "KEY=value" lines sent to the Unix socket
// named by $NOTIFY_SOCKET (a path, or "@name" for an abstract address).
//
// refstored sends READY=1 (with a STATUS= line) once it accepts connections, so units with
// Type=notify start their dependents only then; STOPPING=1 when a signal asks it to stop; and,
// when the unit sets WatchdogSec=, WATCHDOG=1 at half the interval from its event loop, so a loop
// that hangs gets the daemon restarted.
#pragma once

#include <kj/async.h>
#include <kj/io.h>
#include <kj/string.h>
#include <kj/time.h>
#include <kj/timer.h>

namespace refstore::server::systemd {

class Notifier {
 public:
  // From $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID, which it then unsets (they are meant
  // for this process only); null when no service manager asked for notifications. Throws if
  // $NOTIFY_SOCKET is not a usable address (a configuration error).
  static kj::Maybe<kj::Own<Notifier>> fromEnvironment();

  // `address`: a socket path, or "@name" for the abstract namespace. `watchdog`: the interval
  // the manager expects WATCHDOG=1 within, if any.
  Notifier(kj::StringPtr address, kj::Maybe<kj::Duration> watchdog);
  KJ_DISALLOW_COPY(Notifier);

  // Sends `state` ("KEY=value" lines) as one datagram; false (and errno set) if it could not.
  bool notify(kj::StringPtr state);

  bool ready(kj::StringPtr status) { return notify(kj::str("READY=1\nSTATUS=", status)); }
  bool stopping(kj::StringPtr status) { return notify(kj::str("STOPPING=1\nSTATUS=", status)); }

  kj::Maybe<kj::Duration> watchdogInterval() const { return watchdog; }

  // Sends WATCHDOG=1 every half interval until the promise is dropped; never resolves. Without
  // a watchdog it does nothing (and still never resolves).
  kj::Promise<void> feedWatchdog(kj::Timer& timer);

 private:
  kj::AutoCloseFd socket;
  kj::Array<char> address;  // a sockaddr_un, `addressLength` bytes of it used
  size_t addressLength;
  kj::Maybe<kj::Duration> watchdog;
};

}  // namespace refstore::server::systemd
