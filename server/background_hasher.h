// BackgroundHasher: one thread that computes the XXH3-128 hash of large values after they are
// sealed, at the lowest CPU priority (nice 19).
//
// Why a thread of its own, rather than libuv's pool: the post-seal hash is background work that
// nobody waits for in the common case (only info(), whenReady() and spilling need it). On a
// small machine, a pool thread hashing a 64 MiB value at normal priority takes a core from the
// very processes the value was sealed for: refprobe's handoff measured seal 1.7-2.2 ms instead
// of 0.55 ms while the hash ran beside it. A thread at nice 19 still runs at full speed on an
// idle core, yields to everything else, and never starves (nice is a weight, not SCHED_IDLE).
// libuv's pool threads are shared with spill and restore I/O, which readers do wait for, and an
// unprivileged thread cannot raise its priority again after lowering it, so the pool cannot
// lend a thread for this. The thread runs a KJ event loop; jobs reach it through its
// kj::Executor, and their results come back as promises on the caller's loop.
#pragma once

#include <xxhash.h>

#include <atomic>
#include <memory>

#include <kj/async.h>
#include <kj/mutex.h>
#include <kj/thread.h>

namespace refstore::server {

class BackgroundHasher {
 public:
  BackgroundHasher();  // starts the thread and waits until it takes jobs
  ~BackgroundHasher() noexcept(false);  // stops and joins it; jobs still running finish first
  KJ_DISALLOW_COPY(BackgroundHasher);

  // XXH3-128 of `data`, on the hashing thread. Once `stop` is set the pass gives up within
  // 1 MiB, and the result is meaningless (callers set it when the value died). The caller keeps
  // `data` alive and in place until the promise resolves or is destroyed; destroying it waits
  // for a pass already running to notice and return, so the bytes are never read after that.
  kj::Promise<XXH128_hash_t> hash(kj::ArrayPtr<const kj::byte> data,
                                  std::shared_ptr<std::atomic<bool>> stop);

  // The hashing thread's nice value (19 unless the system refused to lower it), for tests.
  int niceness();

 private:
  struct Running {
    const kj::Executor* executor;
    kj::PromiseFulfiller<void>* stop;  // lives on the hashing thread; fulfil it there
  };
  kj::MutexGuarded<kj::Maybe<Running>> running;
  kj::Thread thread;  // last: destroyed (joined) first, after the destructor asked it to stop
};

}  // namespace refstore::server
