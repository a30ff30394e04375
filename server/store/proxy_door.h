// ProxyDoor: how the store reaches other daemons' objects. A proxy (gc: state REMOTE) is this
// daemon's stand-in for an object another daemon owns; what needs the owner -- waiting for a
// promise to settle there, copying the bytes here, letting go of the owner's reference -- goes
// through this door, which server/remote implements. The store has no other branch for remote
// objects.
#pragma once

#include <kj/async.h>

#include "gc/object_table.h"

namespace refstore::server {

class ProxyDoor {
 public:
  virtual ~ProxyDoor() noexcept(false) = default;
  // Resolves once the proxied object is settled on its owner (at once unless it is a promise
  // there); throws REJECTED, BROKEN_PROMISE or OWNER_LOST as the owner's object failed.
  virtual kj::Promise<void> whenSettled(gc::ObjectId proxy) = 0;
  // Who wants a proxy's bytes here: a reader waits for them; a prefetch gets them ahead of
  // time, its copy waiting for memory behind every ordinary request until a reader wants it
  // (admission_queue.h, Priority::PREFETCH).
  enum class Wanted { BY_READER, AHEAD };
  // Resolves once the proxy's bytes are in local memory, copying them from the owner if needed;
  // throws OWNER_LOST, CORRUPTED, OUT_OF_MEMORY, ...
  virtual kj::Promise<void> whenLocal(gc::ObjectId proxy, Wanted wanted) = 0;
  // The proxy was freed (its local copy already given back): drop the owner's reference.
  virtual void reclaimed(const gc::ObjectRecord& proxy) = 0;
};

// The remote module is built after the store it serves (it needs the store): the daemon gives
// the store this handle at construction and connects the module to it once it exists. Until
// then no proxy can exist, so nothing goes through it.
class ProxyDoorHandle final: public ProxyDoor {
 public:
  void connect(ProxyDoor& door) { target = door; }
  kj::Promise<void> whenSettled(gc::ObjectId proxy) override { return get().whenSettled(proxy); }
  kj::Promise<void> whenLocal(gc::ObjectId proxy, Wanted wanted) override {
    return get().whenLocal(proxy, wanted);
  }
  void reclaimed(const gc::ObjectRecord& proxy) override { get().reclaimed(proxy); }

 private:
  ProxyDoor& get() { return KJ_ASSERT_NONNULL(target, "no remote module for proxies"); }
  kj::Maybe<ProxyDoor&> target;
};

}  // namespace refstore::server
