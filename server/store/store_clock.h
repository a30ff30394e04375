// The store's clock: monotonic milliseconds from a kj::Timer, the unit the gc table counts in.
#pragma once

#include <kj/timer.h>

#include "gc/object_table.h"

namespace refstore::server {

inline gc::MonoMillis monoMillis(const kj::Timer& timer) {
  return (timer.now() - kj::origin<kj::TimePoint>()) / kj::MILLISECONDS;
}

}  // namespace refstore::server
