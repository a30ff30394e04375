// libuv running inside the KJ event loop.
//
// refstored has one event loop: KJ's. libuv contributes its threadpool (pre-faulting shared
// memory, later spill/restore I/O and hashing) and its signal handling. Its backend is an
// epoll fd, which we watch from KJ; whenever it becomes readable we run libuv without blocking
// (`uv_run(UV_RUN_NOWAIT)`), so every libuv callback runs on the KJ thread and may touch
// daemon state freely.
#pragma once

#include <uv.h>

#include <initializer_list>
#include <kj/async-unix.h>
#include <kj/async.h>
#include <kj/debug.h>
#include <kj/function.h>

namespace refstore::server {

class UvLoop {
 public:
  explicit UvLoop(kj::UnixEventPort& eventPort);
  ~UvLoop() noexcept(false);
  KJ_DISALLOW_COPY(UvLoop);

  // Resolves with the number of the first of `signals` delivered to the process.
  kj::Promise<int> onSignal(std::initializer_list<int> signals);

  // Runs `work` on libuv's threadpool; resolves on the loop thread with its result or exception.
  // `work` must not touch daemon state: it runs on another thread.
  template <typename T>
  kj::Promise<T> runInPool(kj::Function<T()> work);

  // Blocks until every job submitted with runInPool has finished (their completions run).
  // Call before destroying memory that jobs may still be reading (shutdown).
  void drainPool();

  // True while pool jobs are running or queued (they need the CPU: see BusyPoll).
  bool poolBusy() const { return jobsInFlight > 0; }

 private:
  struct PoolJob;
  struct SignalWaiter;
  void submit(PoolJob* job);  // takes ownership; freed after its completion callback
  void runPending();  // uv_run(NOWAIT): flushes newly started handles into epoll, runs callbacks
  kj::Promise<void> pump();

  uv_loop_t loop;
  kj::Own<kj::UnixEventPort::FdObserver> observer;
  kj::Promise<void> pumping = nullptr;
  kj::Vector<uv_signal_t*> signalHandles;
  kj::Vector<kj::Own<SignalWaiter>> signalWaiters;
  size_t jobsInFlight = 0;
};

// ---------------------------------------------------------------------------------------------
// Implementation details

struct UvLoop::PoolJob {
  uv_work_t request;
  UvLoop* owner = nullptr;
  kj::Function<void()> run;        // on a pool thread
  kj::Function<void()> complete;   // back on the loop thread
  virtual ~PoolJob() = default;
};

template <>
inline kj::Promise<void> UvLoop::runInPool<void>(kj::Function<void()> work) {
  auto wrapped = kj::heap<kj::Function<void()>>(kj::mv(work));
  return runInPool<bool>([work = kj::mv(wrapped)]() mutable {
    (*work)();
    return true;
  }).ignoreResult();
}

template <typename T>
kj::Promise<T> UvLoop::runInPool(kj::Function<T()> work) {
  struct Job: PoolJob {
    kj::Function<T()> work;
    kj::Maybe<T> result;
    kj::Maybe<kj::Exception> error;
    kj::Own<kj::PromiseFulfiller<T>> fulfiller;
  };
  auto paf = kj::newPromiseAndFulfiller<T>();
  Job* job = new Job;
  Job& ref = *job;
  ref.work = kj::mv(work);
  ref.fulfiller = kj::mv(paf.fulfiller);
  ref.run = [&ref]() {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { ref.result = ref.work(); })) {
      ref.error = kj::mv(*e);
    }
  };
  ref.complete = [&ref]() {
    KJ_IF_MAYBE(e, ref.error) {
      ref.fulfiller->reject(kj::mv(*e));
    } else {
      ref.fulfiller->fulfill(kj::mv(KJ_ASSERT_NONNULL(ref.result)));
    }
  };
  submit(job);
  return kj::mv(paf.promise);
}

}  // namespace refstore::server
