#include "server/runtime/uv_loop.h"

#include <kj/debug.h>

namespace refstore::server {
namespace {

int checkUv(int result, const char* what) {
  KJ_REQUIRE(result >= 0, "libuv call failed", what, uv_strerror(result));
  return result;
}

}  // namespace

UvLoop::UvLoop(kj::UnixEventPort& eventPort) {
  checkUv(uv_loop_init(&loop), "uv_loop_init");
  loop.data = this;
  observer = kj::heap<kj::UnixEventPort::FdObserver>(
      eventPort, uv_backend_fd(&loop), kj::UnixEventPort::FdObserver::OBSERVE_READ);
  runPending();
  pumping = pump();
}

UvLoop::~UvLoop() noexcept(false) {
  // Stop watching the backend fd before libuv closes it.
  pumping = nullptr;
  observer = nullptr;
  for (auto handle: signalHandles) {
    uv_close(reinterpret_cast<uv_handle_t*>(handle),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_signal_t*>(h); });
  }
  // Blocks until closing handles are closed and in-flight pool work has completed: pool
  // threads may still be writing into memory we are about to free.
  uv_run(&loop, UV_RUN_DEFAULT);
  int closed = uv_loop_close(&loop);
  if (closed != 0) KJ_LOG(ERROR, "libuv loop still busy at shutdown", uv_strerror(closed));
}

kj::Promise<void> UvLoop::pump() {
  return observer->whenBecomesReadable().then([this]() {
    runPending();
    return pump();
  });
}

void UvLoop::runPending() {
  // KJ observes the backend fd edge-triggered, and one uv_run(NOWAIT) handles at most one
  // epoll batch; running twice drains anything that arrived while callbacks ran.
  uv_run(&loop, UV_RUN_NOWAIT);
  uv_run(&loop, UV_RUN_NOWAIT);
}

struct UvLoop::SignalWaiter {
  kj::Own<kj::PromiseFulfiller<int>> fulfiller;
};

kj::Promise<int> UvLoop::onSignal(std::initializer_list<int> signals) {
  auto paf = kj::newPromiseAndFulfiller<int>();
  auto waiter = kj::heap<SignalWaiter>(SignalWaiter{kj::mv(paf.fulfiller)});
  for (int signum: signals) {
    auto handle = new uv_signal_t;
    checkUv(uv_signal_init(&loop, handle), "uv_signal_init");
    handle->data = waiter.get();
    checkUv(uv_signal_start(handle, [](uv_signal_t* h, int signum) {
              auto w = static_cast<SignalWaiter*>(h->data);
              if (w->fulfiller->isWaiting()) w->fulfiller->fulfill(kj::cp(signum));
            }, signum), "uv_signal_start");
    signalHandles.add(handle);
  }
  signalWaiters.add(kj::mv(waiter));
  runPending();
  return kj::mv(paf.promise);
}

void UvLoop::drainPool() {
  // UV_RUN_ONCE blocks until some event arrives; each finished job signals the loop.
  while (jobsInFlight > 0) uv_run(&loop, UV_RUN_ONCE);
}

void UvLoop::submit(PoolJob* job) {
  job->request.data = job;
  job->owner = this;
  jobsInFlight++;
  checkUv(uv_queue_work(&loop, &job->request,
                        [](uv_work_t* req) { static_cast<PoolJob*>(req->data)->run(); },
                        // status is UV_ECANCELED only after uv_cancel, which is never called.
                        [](uv_work_t* req, int /*status*/) {
                          auto done = static_cast<PoolJob*>(req->data);
                          done->owner->jobsInFlight--;
                          KJ_DEFER(delete done);
                          done->complete();
                        }),
          "uv_queue_work");
  runPending();
}

}  // namespace refstore::server
