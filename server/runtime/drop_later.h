// dropLater: destroy something in a later turn of the event loop, not now.
//
// A promise continuation must not destroy the ForkedPromise it runs inside (nor the object that
// holds it): when no branch is left -- the caller was cancelled -- that drops the last reference
// to the fork's hub, and kj frees the hub under its own running event (a crash in
// EagerPromiseNodeBase::fire). Code that forgets a fork from inside its own continuation moves
// it here instead; it is destroyed once the current turn has unwound.
#pragma once

#include <kj/async.h>

namespace refstore::server {

template <typename T>
void dropLater(kj::TaskSet& tasks, T&& value) {
  tasks.add(kj::evalLater([kept = kj::mv(value)]() {}));
}

}  // namespace refstore::server
