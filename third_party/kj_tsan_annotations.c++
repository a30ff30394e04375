// ThreadSanitizer cannot see how kj synchronises threads: kj::_::Mutex is a futex, and
// kj::AtomicRefcounted a counter, both driven by atomics inside libkj, which is not built with
// TSan. Everything that relies on them -- every kj::MutexGuarded, and kj::Executor, which hands
// work and results between threads (the background hasher) and is shared by atomic reference
// counts -- would look like a data race. This file, linked only into --config=tsan builds
// (third_party/BUILD.bazel), interposes Mutex::lock, unlock, wait and checkPredicate and
// AtomicRefcounted::disposeImpl: each calls libkj's own (found with dlsym(RTLD_NEXT)) and tells
// TSan what it did: an acquire after taking a lock, a release before giving it up, and both
// before dropping a reference (whoever drops the last one deletes the object, after everything
// the other holders did with it). libkj reaches these through its PLT and vtable relocations,
// so its internal uses (the executor's queues) are seen too.
// Compiled only by code built with -fsanitize=thread: --define=sanitizer=tsan also reaches tools
// built for the host (code generators), which are not.
#if defined(__SANITIZE_THREAD__)

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>
#include <stdio.h>
#include <stdlib.h>

#include <kj/mutex.h>
#include <kj/refcount.h>

namespace kj {
namespace _ {
namespace {

template <typename Function>
Function real(const char* mangledName) {
  void* symbol = dlsym(RTLD_NEXT, mangledName);
  if (symbol == nullptr) {
    fprintf(stderr, "kj_tsan_annotations: %s not found in libkj\n", mangledName);
    abort();
  }
  return reinterpret_cast<Function>(symbol);
}

using Lock = bool (*)(Mutex*, Mutex::Exclusivity, Maybe<Duration>, LockSourceLocationArg);
using Unlock = void (*)(Mutex*, Mutex::Exclusivity, void* waiterToSkip);  // Waiter is private
using Wait = void (*)(Mutex*, Mutex::Predicate&, Maybe<Duration>, LockSourceLocationArg);
using CheckPredicate = bool (*)(Mutex*, void* waiter);  // Waiter is private
using Dispose = void (*)(const void* self, void* pointer);

}  // namespace

bool Mutex::lock(Exclusivity exclusivity, Maybe<Duration> timeout,
                 LockSourceLocationArg location) {
  static Lock libkj = real<Lock>(
      "_ZN2kj1_5Mutex4lockENS1_11ExclusivityENS_5MaybeINS_8QuantityIlNS0_15NanosecondLabel"
      "EEEEENS_18NoopSourceLocationE");
  bool locked = libkj(this, exclusivity, kj::mv(timeout), location);
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::unlock(Exclusivity exclusivity, Waiter* waiterToSkip) {
  static Unlock libkj = real<Unlock>("_ZN2kj1_5Mutex6unlockENS1_11ExclusivityEPNS1_6WaiterE");
  __tsan_release(this);
  libkj(this, exclusivity, waiterToSkip);
}

bool Mutex::checkPredicate(Waiter& waiter) {
  static CheckPredicate libkj =
      real<CheckPredicate>("_ZN2kj1_5Mutex14checkPredicateERNS1_6WaiterE");
  // unlock() runs the predicates of threads in wait() (their objects, on those threads'
  // stacks) and may hand the lock to one of them: what it read happens before that thread
  // goes on.
  bool ready = libkj(this, &waiter);
  __tsan_release(this);
  return ready;
}

void Mutex::wait(Predicate& predicate, Maybe<Duration> timeout, LockSourceLocationArg location) {
  static Wait libkj = real<Wait>(
      "_ZN2kj1_5Mutex4waitERNS1_9PredicateENS_5MaybeINS_8QuantityIlNS0_15NanosecondLabel"
      "EEEEENS_18NoopSourceLocationE");
  // Waiting gives the lock up (another thread's unlock may then hand it back to us).
  __tsan_release(this);
  libkj(this, predicate, kj::mv(timeout), location);
  __tsan_acquire(this);
}

}  // namespace _

void AtomicRefcounted::disposeImpl(void* pointer) const {
  static _::Dispose libkj = _::real<_::Dispose>("_ZNK2kj16AtomicRefcounted11disposeImplEPv");
  void* self = const_cast<AtomicRefcounted*>(this);
  __tsan_release(self);
  __tsan_acquire(self);
  libkj(this, pointer);
}

}  // namespace kj

#endif  // defined(__SANITIZE_THREAD__)
