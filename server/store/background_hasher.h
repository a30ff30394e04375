// BackgroundHasher: one thread that computes the XXH3-128 hash of large values after they are
// sealed.
//
// Why a thread of its own rather than libuv's pool (which spill and restore use):
//  - The post-seal hash is background work nobody waits for in the common case (only info()
//    and spilling need it), while spill writes and restores are what readers and
//    admission wait for. A 1 GiB hash takes ~100 ms; it should not hold a pool thread they need.
//  - The daemon's busy-polling stops while pool jobs run (BusyPoll: spinning would take the
//    core they need). Counting a routine post-seal hash as such a job made every large put
//    switch it off for the length of the hash, so the requests around it paid wakeups.
//    refprobe's 64 MiB handoff, alternating four times: seal 0.70-1.58 ms on the pool,
//    0.58-0.85 ms here.
// It runs at normal priority on purpose: a nice-19 thread measured about the same seal times
// but starved under load, and spilling and reclaiming a value whose hash is cancelled both wait
// for the thread to get a turn. The thread runs a KJ event loop; jobs reach it through its
// kj::Executor, and their results come back as promises on the caller's loop.
//
// One thread, jobs in order: a job cancelled while queued returns at once when its turn comes,
// but waits behind the pass before it (~100 ms per GiB). ObjectStore hands a value over only
// once it has lived 200 ms or its hash is needed (--hash-delay-ms), so values
// dropped right after sealing never get here, and the queue is rarely more than one job deep.
#pragma once

#include "third_party/fast_xxhash.h"

#include <atomic>
#include <memory>

#include <kj/async.h>
#include <kj/mutex.h>
#include <kj/thread.h>

namespace refstore::server {

class BackgroundHasher {
 public:
  BackgroundHasher();  // starts the thread and waits until it takes jobs (throws if it cannot)
  ~BackgroundHasher() noexcept(false);  // stops and joins it; jobs still running finish first
  KJ_DISALLOW_COPY(BackgroundHasher);

  // XXH3-128 of `data`, on the hashing thread. Once `stop` is set the pass gives up within
  // 1 MiB, and the result is meaningless (callers set it when the value died). The caller keeps
  // `data` alive and in place until the promise resolves or is destroyed; destroying it waits
  // for a pass already running to return, so the bytes are never read after that.
  kj::Promise<XXH128_hash_t> hash(kj::ArrayPtr<const kj::byte> data,
                                  std::shared_ptr<std::atomic<bool>> stop);

 private:
  struct Running {
    kj::Own<const kj::Executor> executor;
    kj::PromiseFulfiller<void>* stop;  // lives on the hashing thread; fulfil it there
  };
  // A reference to the thread's executor, while it runs (else this throws). Calls through a
  // reference taken after the thread's loop ended fail instead of touching it.
  kj::Own<const kj::Executor> executor();
  struct State {
    kj::Maybe<Running> running;  // set while the thread's loop takes jobs
    bool exited = false;         // the thread has returned (or failed to start)
    kj::Maybe<kj::String> failure;
  };
  kj::MutexGuarded<State> state;
  kj::Thread thread;  // last: destroyed (joined) first, after the destructor asked it to stop
};

}  // namespace refstore::server
