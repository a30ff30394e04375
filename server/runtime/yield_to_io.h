// A continuation that is always ready never lets the event loop poll for I/O or fire timers:
// KJ runs its queue until it is empty before it polls. A data transfer on a fast link is such a
// chain (every read or write completes at once while the socket has data or room), and a 1 GiB
// copy kept three daemons from hearing each other's heartbeats for over 5 s (refbench's
// broadcast), so that their peers were dropped. Transfers wait on this between chunks: a timer
// already due resolves only once the loop has polled, letting every other connection and timer
// take its turn (one epoll_wait per chunk).
#pragma once

#include <kj/async.h>
#include <kj/timer.h>

namespace refstore::server {

inline kj::Promise<void> yieldToIo(kj::Timer& timer) {
  return timer.afterDelay(0 * kj::NANOSECONDS);
}

}  // namespace refstore::server
