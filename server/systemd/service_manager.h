// What refstored's main needs from a service manager, in one place: the sockets it passed
// (listen_fds.h) and the notifications it wants (notify.h). Outside systemd both are empty and
// every call does nothing.
#pragma once

#include "server/systemd/listen_fds.h"
#include "server/systemd/notify.h"

namespace refstore::server::systemd {

class ServiceManager {
 public:
  // Reads (and clears) $LISTEN_* and $NOTIFY_SOCKET/$WATCHDOG_*. Throws a one-sentence
  // configuration error if they are unusable.
  static kj::Own<ServiceManager> fromEnvironment();

  ServiceManager(ActivatedSockets sockets, kj::Maybe<kj::Own<Notifier>> notifier);
  KJ_DISALLOW_COPY(ServiceManager);

  // Sockets the manager opened for us; refstored takes each one's fd as it starts listening.
  ActivatedSockets sockets;

  // READY=1 with `status`, and from now on the watchdog, fed from the loop of `timer`.
  void ready(kj::StringPtr status, kj::Timer& timer);
  // STOPPING=1 with `status`; the watchdog stops.
  void stopping(kj::StringPtr status);

 private:
  kj::Maybe<kj::Own<Notifier>> notifier;
  kj::Promise<void> watchdog = nullptr;
};

}  // namespace refstore::server::systemd
