// joinFailFast: like kj::joinPromises, but settles as soon as any promise fails.
//
// KJ 0.9's joinPromises waits for every promise before reporting the first failure. For a batch
// that is wrong twice over: a request that has already failed keeps waiting (a readMany with one
// rejected Ref and one promise nobody fulfils would hang), and what the finished branches
// acquired -- memory reservations of a putMany -- stays held until the slowest branch times out.
// Here the first failure rejects the result at once, and the other branches are cancelled
// (destroyed, releasing whatever they hold) when the caller drops the joined promise.
#pragma once

#include <kj/async.h>
#include <kj/vector.h>

namespace refstore::server {

template <typename T>
kj::Promise<kj::Array<T>> joinFailFast(kj::Array<kj::Promise<T>> promises) {
  if (promises.size() == 0) return kj::Array<T>();
  struct Join {
    kj::Array<kj::Maybe<T>> results;
    size_t remaining;
    kj::Own<kj::PromiseFulfiller<kj::Array<T>>> fulfiller;
    kj::Array<kj::Promise<void>> branches;
  };
  auto paf = kj::newPromiseAndFulfiller<kj::Array<T>>();
  auto join = kj::heap<Join>();
  join->results = kj::heapArray<kj::Maybe<T>>(promises.size());
  join->remaining = promises.size();
  join->fulfiller = kj::mv(paf.fulfiller);
  Join* state = join.get();  // the branches live inside it, so they never outlive it
  auto branches = kj::heapArrayBuilder<kj::Promise<void>>(promises.size());
  for (size_t i = 0; i < promises.size(); i++) {
    branches.add(promises[i]
                     .then(
                         [state, i](T value) {
                           state->results[i] = kj::mv(value);
                           if (--state->remaining > 0) return;
                           auto all = kj::heapArrayBuilder<T>(state->results.size());
                           for (auto& r: state->results) all.add(kj::mv(KJ_ASSERT_NONNULL(r)));
                           state->fulfiller->fulfill(all.finish());
                         },
                         // A settled fulfiller ignores later calls: the first failure wins.
                         [state](kj::Exception&& e) { state->fulfiller->reject(kj::mv(e)); })
                     .eagerlyEvaluate(nullptr));
  }
  join->branches = branches.finish();
  return paf.promise.attach(kj::mv(join));
}

// The same for promises without a value.
inline kj::Promise<void> joinFailFast(kj::Array<kj::Promise<void>> promises) {
  auto flagged = kj::heapArrayBuilder<kj::Promise<bool>>(promises.size());
  for (auto& p: promises) flagged.add(p.then([]() { return true; }));
  return joinFailFast(flagged.finish()).ignoreResult();
}

}  // namespace refstore::server
