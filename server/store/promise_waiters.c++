#include "server/store/promise_waiters.h"

namespace refstore::server {

kj::Promise<void> PromiseWaiters::wait(gc::ObjectId id) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  auto& list = waiting.findOrCreate(key(id), [&]() {
    return kj::HashMap<Key, kj::Vector<kj::Own<kj::PromiseFulfiller<void>>>>::Entry{
        key(id), {}};
  });
  list.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

void PromiseWaiters::wake(gc::ObjectId id) {
  KJ_IF_MAYBE(list, waiting.find(key(id))) {
    auto woken = kj::mv(*list);
    waiting.erase(key(id));
    for (auto& fulfiller: woken) fulfiller->fulfill();
  }
}

void PromiseWaiters::setFailure(gc::ObjectId id, kj::String description) {
  failures.erase(key(id));
  failures.insert(key(id), kj::mv(description));
}

kj::StringPtr PromiseWaiters::failure(gc::ObjectId id) const {
  KJ_IF_MAYBE(text, failures.find(key(id))) { return *text; }
  return "";
}

void PromiseWaiters::forget(gc::ObjectId id) {
  failures.erase(key(id));
  wake(id);
}

}  // namespace refstore::server
