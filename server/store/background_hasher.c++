#include "server/store/background_hasher.h"

namespace refstore::server {

namespace {

// Hashes in 1 MiB steps so that `stop` is noticed quickly.
XXH128_hash_t hashInSteps(kj::ArrayPtr<const kj::byte> data, const std::atomic<bool>& stop) {
  XXH3_state_t* state = XXH3_createState();
  KJ_ASSERT(state != nullptr);
  KJ_DEFER(XXH3_freeState(state));
  XXH3_128bits_reset(state);
  constexpr size_t kStep = 1 << 20;
  for (size_t at = 0; at < data.size() && !stop.load(); at += kStep) {
    XXH3_128bits_update(state, data.begin() + at, kj::min(kStep, data.size() - at));
  }
  return XXH3_128bits_digest(state);
}

}  // namespace

BackgroundHasher::BackgroundHasher()
    : thread([this]() {
        // Nothing may escape: the constructor is waiting for this thread to say how it went.
        KJ_IF_MAYBE(e, kj::runCatchingExceptions([this]() {
          kj::EventLoop loop;
          kj::WaitScope waitScope(loop);
          auto stopped = kj::newPromiseAndFulfiller<void>();
          state.lockExclusive()->running =
              Running{kj::getCurrentThreadExecutor().addRef(), stopped.fulfiller.get()};
          stopped.promise.wait(waitScope);
        })) {
          state.lockExclusive()->failure = kj::str(e->getDescription());
        }
        auto lock = state.lockExclusive();
        lock->running = nullptr;
        lock->exited = true;
      }) {
  auto lock = state.lockExclusive();
  lock.wait([](const State& s) { return s.running != nullptr || s.exited; });
  KJ_REQUIRE(lock->running != nullptr, "the background hashing thread failed to start",
             lock->failure.orDefault(kj::str("no reason given")));
}

BackgroundHasher::~BackgroundHasher() noexcept(false) {
  kj::PromiseFulfiller<void>* stop;
  kj::Own<const kj::Executor> on;
  {
    auto lock = state.lockShared();
    KJ_IF_MAYBE(r, lock->running) {
      stop = r->stop;
      on = r->executor->addRef();
    } else {
      return;  // the thread has already ended
    }
  }
  on->executeSync([stop]() { stop->fulfill(); });
}

kj::Own<const kj::Executor> BackgroundHasher::executor() {
  auto lock = state.lockShared();
  KJ_IF_MAYBE(r, lock->running) { return r->executor->addRef(); }
  KJ_FAIL_REQUIRE("the background hashing thread has stopped") { break; }
  KJ_UNREACHABLE;
}

kj::Promise<XXH128_hash_t> BackgroundHasher::hash(kj::ArrayPtr<const kj::byte> data,
                                                  std::shared_ptr<std::atomic<bool>> stop) {
  return executor()->executeAsync(
      [data, stop = kj::mv(stop)]() { return hashInSteps(data, *stop); });
}

}  // namespace refstore::server
