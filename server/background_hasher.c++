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
        *running.lockExclusive() = Running{&kj::getCurrentThreadExecutor(), stopped.fulfiller.get()};
        stopped.promise.wait(waitScope);
        *running.lockExclusive() = nullptr;
      }) {
  running.when([](const kj::Maybe<Running>& r) { return r != nullptr; },
               [](const kj::Maybe<Running>&) {});
}

BackgroundHasher::~BackgroundHasher() noexcept(false) {
  Running r = KJ_ASSERT_NONNULL(*running.lockShared());
  r.executor->executeSync([stop = r.stop]() { stop->fulfill(); });
}

kj::Promise<XXH128_hash_t> BackgroundHasher::hash(kj::ArrayPtr<const kj::byte> data,
                                                  std::shared_ptr<std::atomic<bool>> stop) {
  const kj::Executor& executor = *KJ_ASSERT_NONNULL(*running.lockShared()).executor;
  return executor.executeAsync(
      [data, stop = kj::mv(stop)]() { return hashInSteps(data, *stop); });
}

}  // namespace refstore::server
