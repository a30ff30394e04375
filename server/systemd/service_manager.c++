#include "server/systemd/service_manager.h"

#include <errno.h>
#include <string.h>

#include "server/log.h"

namespace refstore::server::systemd {

kj::Own<ServiceManager> ServiceManager::fromEnvironment() {
  auto sockets = sortActivatedSockets(takeListenFds());
  return kj::heap<ServiceManager>(kj::mv(sockets), Notifier::fromEnvironment());
}

ServiceManager::ServiceManager(ActivatedSockets sockets, kj::Maybe<kj::Own<Notifier>> notifier)
    : sockets(kj::mv(sockets)), notifier(kj::mv(notifier)) {}

void ServiceManager::ready(kj::StringPtr status, kj::Timer& timer) {
  KJ_IF_MAYBE(n, notifier) {
    if (!(*n)->ready(status)) {
      logWarning("could not tell the service manager we are ready: ", strerror(errno));
    }
    watchdog = (*n)->feedWatchdog(timer).eagerlyEvaluate(nullptr);
  }
}

void ServiceManager::stopping(kj::StringPtr status) {
  KJ_IF_MAYBE(n, notifier) {
    watchdog = nullptr;
    (*n)->stopping(status);
  }
}

}  // namespace refstore::server::systemd
