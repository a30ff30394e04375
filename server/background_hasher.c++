#include "server/background_hasher.h"

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
        kj::EventLoop loop;
        kj::WaitScope waitScope(loop);
        auto stopped = kj::newPromiseAndFulfiller<void>();
        *running.lockExclusive() =
            Running{kj::getCurrentThreadExecutor().addRef(), stopped.fulfiller.get()};
        stopped.promise.wait(waitScope);
        *running.lockExclusive() = nullptr;
      }) {
  running.when([](const kj::Maybe<Running>& r) { return r != nullptr; },
               [](const kj::Maybe<Running>&) {});
}

BackgroundHasher::~BackgroundHasher() noexcept(false) {
  kj::PromiseFulfiller<void>* stop;
  kj::Own<const kj::Executor> on;
  {
    auto lock = running.lockShared();
    const Running& r = KJ_ASSERT_NONNULL(*lock);
    stop = r.stop;
    on = r.executor->addRef();
  }
  on->executeSync([stop]() { stop->fulfill(); });
}

kj::Own<const kj::Executor> BackgroundHasher::executor() {
  auto lock = running.lockShared();
  KJ_IF_MAYBE(r, *lock) { return r->executor->addRef(); }
  KJ_FAIL_REQUIRE("the hashing thread has stopped") { break; }
  KJ_UNREACHABLE;
}

kj::Promise<XXH128_hash_t> BackgroundHasher::hash(kj::ArrayPtr<const kj::byte> data,
                                                  std::shared_ptr<std::atomic<bool>> stop) {
  return executor()->executeAsync(
      [data, stop = kj::mv(stop)]() { return hashInSteps(data, *stop); });
}

}  // namespace refstore::server
