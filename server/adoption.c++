#include "server/adoption.h"

#include <kj/vector.h>

#include "server/errors.h"
#include "server/ref_server.h"

namespace refstore::server {

kj::Promise<HeldObject> adoptRef(ObjectStore& store, proto::Ref::Client ref,
                                 gc::ClientId client) {
  auto local = ownRefObject(ref);
  return local.then([&store, ref = kj::mv(ref), client](
                        kj::Maybe<gc::ObjectId> own) mutable -> kj::Promise<HeldObject> {
    KJ_IF_MAYBE(id, own) {
      return HeldObject{*id, store.addHolder(*id, client)};
    }
    auto request = ref.shareRequest();
    request.setTtlSeconds(60);
    request.setUses(1);
    return request.send().then(
        [&store, client](capnp::Response<proto::Ref::ShareResults> response) {
          auto restored = store.restore(response.getToken(), client);
          return HeldObject{restored.first, restored.second};
        },
        [](kj::Exception&& e) -> HeldObject {
          RS_FAIL(INVALID_ARGUMENT, "not a Ref of this refstored: ", e.getDescription());
        });
  });
}

TemporaryHolds::TemporaryHolds(ObjectStore& store, kj::Array<HeldObject> held)
    : store(store), held(kj::mv(held)) {}

TemporaryHolds::~TemporaryHolds() noexcept(false) {
  for (auto& object: held) store.removeHolder(object.holder);
}

std::vector<gc::ObjectId> TemporaryHolds::ids() const {
  std::vector<gc::ObjectId> out;
  for (auto& object: held) out.push_back(object.id);
  return out;
}

kj::Promise<kj::Own<TemporaryHolds>> adoptAll(ObjectStore& store,
                                             capnp::List<proto::Ref>::Reader refs,
                                             gc::ClientId client) {
  if (refs.size() == 0) return kj::heap<TemporaryHolds>(store, nullptr);
  auto adoptions = kj::heapArrayBuilder<kj::Promise<HeldObject>>(refs.size());
  for (auto ref: refs) adoptions.add(adoptRef(store, ref, client));
  // If one fails, the holders the others took must still be released: collect outcomes first.
  auto settled = kj::heapArrayBuilder<kj::Promise<kj::Maybe<HeldObject>>>(refs.size());
  auto firstError = kj::heap<kj::Maybe<kj::Exception>>();
  for (auto& adoption: adoptions) {
    settled.add(adoption.then([](HeldObject held) -> kj::Maybe<HeldObject> { return held; },
                              [error = firstError.get()](kj::Exception&& e) -> kj::Maybe<HeldObject> {
                                if (*error == nullptr) *error = kj::mv(e);
                                return nullptr;
                              }));
  }
  return kj::joinPromises(settled.finish())
      .then([&store, firstError = kj::mv(firstError)](kj::Array<kj::Maybe<HeldObject>> results) mutable {
        // Every holder taken goes into `holds` before anything can throw, so a failed batch
        // releases the good Refs' holders when `holds` goes out of scope.
        kj::Vector<HeldObject> held(results.size());
        for (auto& result: results) {
          KJ_IF_MAYBE(object, result) { held.add(*object); }
        }
        auto holds = kj::heap<TemporaryHolds>(store, held.releaseAsArray());
        KJ_IF_MAYBE(error, *firstError) { kj::throwFatalException(kj::mv(*error)); }
        return holds;
      });
}

}  // namespace refstore::server
