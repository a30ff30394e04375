#include "server/rpc/ref_server.h"

#include "schema/batching_message_stream.h"
#include "server/runtime/errors.h"
#include "server/rpc/adoption.h"
#include "server/rpc/wire.h"

namespace refstore::server {

const int RefHook::kBrand = 0;

class RefHook::Releaser final: public kj::Disposer {
 public:
  // kj::Own hands over the most-derived object (dynamic_cast<void*>), and only RefHooks are
  // ever owned through this disposer.
  void disposeImpl(void* pointer) const override {
    RefHook* hook = static_cast<RefHook*>(pointer);
    if (--hook->refcount == 0) delete hook;
  }
};
const RefHook::Releaser RefHook::kReleaser;

RefHook::RefHook(RpcServices& services, gc::HolderId holder, bool sharedMemory)
    : services(services), holder(holder), sharedMemory(sharedMemory) {
  static_assert(sizeof(RefHook) <= 32, "one RefHook per live Ref: keep it in a 32-byte class");
}

kj::Own<RefHook> RefHook::make(RpcServices& services, gc::HolderId holder, bool sharedMemory) {
  return kj::Own<RefHook>(new RefHook(services, holder, sharedMemory), kReleaser);
}

kj::Own<RefHook> RefHook::addRefHook() {
  ++refcount;
  return kj::Own<RefHook>(this, kReleaser);
}

gc::ObjectTable::HolderInfo RefHook::held() const {
  RS_REQUIRE(holder != 0, FAILED_PRECONDITION, "this Ref was released (Ref.release)");
  auto info = services.store.table().holderInfo(holder);
  // The holder is removed only by this hook's destructor or release().
  KJ_ASSERT(info.has_value(), "a live Ref's holder is missing from the gc table", holder);
  return *info;
}

void RefHook::release() {
  gc::HolderId releasing = holder;
  holder = 0;
  // (At exit the daemon's RpcServices may be gone already: see RpcServices::alive.)
  if (releasing != 0 && RpcServices::alive(services)) services.releaseHolder(releasing);
}

RefHook::~RefHook() noexcept(false) { release(); }

kj::Own<capnp::ClientHook> RefHook::dispatcher() {
  return capnp::ClientHook::from(
      capnp::Capability::Client(kj::heap<RefServer>(addRefHook())));
}

capnp::Request<capnp::AnyPointer, capnp::AnyPointer> RefHook::newCall(
    uint64_t interfaceId, uint16_t methodId, kj::Maybe<capnp::MessageSize> sizeHint) {
  // The request keeps the dispatcher (and through it this hook) alive until it is sent and done.
  return dispatcher()->newCall(interfaceId, methodId, sizeHint);
}

capnp::ClientHook::VoidPromiseAndPipeline RefHook::call(
    uint64_t interfaceId, uint16_t methodId, kj::Own<capnp::CallContextHook>&& context) {
  // LocalClient::call starts the method in a later turn (as ClientHook requires) and keeps the
  // dispatcher alive until the call completes.
  return dispatcher()->call(interfaceId, methodId, kj::mv(context));
}

kj::Maybe<RefHook&> RefHook::from(capnp::ClientHook& hook) {
  if (hook.getBrand() != &kBrand) return nullptr;
  return static_cast<RefHook&>(hook);
}

RefServer::RefServer(kj::Own<RefHook> ref)
    : ref(kj::mv(ref)), store(this->ref->services.store),
      id(this->ref->holder != 0 ? this->ref->held().object : gc::ObjectId{0, 0}) {}

kj::Promise<void> RefServer::info(InfoContext context) {
  context.allowCancellation();  // a call that waits ends with its connection
  ref->held();  // FAILED_PRECONDITION if this Ref was released
  if (store.record(id).state == gc::ObjectState::REMOTE) {  // NOT_FOUND if it is gone
    return KJ_ASSERT_NONNULL(ref->services.remote()).describe(id).then([this, context]() mutable {
      fillObjectInfo(context.getResults().initInfo(), store.record(id));
    });
  }
  return store.whenHashed(id).then([this, context]() mutable {
    fillObjectInfo(context.getResults().initInfo(), store.record(id));
  });
}

kj::Promise<void> RefServer::whenReady(WhenReadyContext context) {
  context.allowCancellation();  // a call that waits ends with its connection
  ref->held();  // FAILED_PRECONDITION if this Ref was released
  // Readiness does not wait for the hash: Ref::size() and copy-path reads ask this, and a
  // large value's deferred hash would cost them a pass over it (info() waits for it).
  return store.whenReady(id).then([this, context]() mutable {
        // Report the readable object (an alias reports its target's size and hash).
        fillObjectInfo(context.getResults().initInfo(), store.record(store.resolve(id)));
      });
}

template <typename Answer>
kj::Promise<void> RefServer::whenReadable(Answer answer) {
  // A value that is readable and in memory (nearly always) is answered in this turn: a chain
  // of ready promises would cost several heap allocations and event-loop turns per call.
  if (store.readableNow(id)) {
    answer();
    return kj::READY_NOW;
  }
  // Otherwise wait, then check again: the answer must run in the same turn as a true
  // readableNow(). A value restored from disk, for one, could be picked to spill again (it
  // is still the least recently used) between the restore's end and a later turn.
  return store.whenReady(id)
      .then([this]() { return store.ensureResident(store.resolve(id)); })
      .then([this, answer = kj::mv(answer)]() mutable { return whenReadable(kj::mv(answer)); });
}

kj::Promise<void> RefServer::read(ReadContext context) {
  context.allowCancellation();  // a call that waits ends with its connection
  ref->held();  // FAILED_PRECONDITION if this Ref was released
  auto answer = [this, context](kj::Maybe<ReplyBudget::Turn&> turn) mutable {
    auto params = context.getParams();
    gc::ObjectId owner = store.resolve(id);
    auto& object = store.record(owner);
    uint64_t offset = params.getOffset(), length = params.getLength();
    RS_REQUIRE(offset <= object.size, OUT_OF_RANGE, "offset ", offset, " is beyond the object's ",
               object.size, " bytes");
    RS_REQUIRE(length <= proto::MAX_CHUNK_BYTES, TOO_LARGE, "read length ", length,
               " exceeds the chunk limit of ", proto::MAX_CHUNK_BYTES, " bytes");
    length = kj::min(length, object.size - offset);
    context.getResults().setData(store.bytes(owner).slice(offset, offset + length));
    KJ_IF_MAYBE(charged, turn) { charged->charge(length); }
  };
  if (context.getParams().getLength() <= BatchingMessageStream::kMaxBatchedBytes) {
    // A small reply is batched; the connection's stream bounds those itself.
    return whenReadable([answer]() mutable { answer(nullptr); });
  }
  // A large reply waits for room in the connection's reply budget (reply_budget.h), but only
  // once the value is there: a read waiting for a promise must not hold up the others.
  auto budget = kj::addRef(*ref->services.connection(ref->held().client).replyBudget);
  return whenReadable([]() {})
      .then([budget = kj::mv(budget)]() mutable { return budget->turn(); })
      .then([this, answer](kj::Own<ReplyBudget::Turn> turn) mutable {
        return whenReadable([answer, turn = kj::mv(turn)]() mutable { answer(*turn); });
      });
}

kj::Promise<void> RefServer::prefetch(PrefetchContext context) {
  context.allowCancellation();  // the copy itself goes on (the remote module keeps it)
  ref->held();  // FAILED_PRECONDITION if this Ref was released
  return store.whenReady(id).then([this]() { return store.prefetch(store.resolve(id)); });
}

kj::Promise<void> RefServer::view(ViewContext context) {
  context.allowCancellation();  // a call that waits ends with its connection
  ref->held();  // FAILED_PRECONDITION if this Ref was released
  RS_REQUIRE(ref->sharedMemory, FAILED_PRECONDITION,
             "this connection has no shared memory (TCP): use read() instead");
  return whenReadable([this, context]() mutable {
    // Same turn as readableNow (whenReadable): nothing can spill it before the View pins it.
    gc::ObjectId owner = store.resolve(id);
    auto results = context.getResults();
    gc::ClientId client = ref->held().client;
    results.setView(kj::heap<ViewServer>(ref->services, owner, client));
    fillPlacement(results.initPlacement(), ref->services, owner, /*writable=*/false, client);
  });
}

kj::Promise<void> RefServer::share(ShareContext context) {
  ref->held();  // FAILED_PRECONDITION if this Ref was released
  auto params = context.getParams();
  if (store.record(id).state == gc::ObjectState::REMOTE) {
    // Its owner mints the token, so the token names the owner: references never run in chains
    // through this daemon.
    context.allowCancellation();
    return KJ_ASSERT_NONNULL(ref->services.remote())
        .share(id, params.getTtlSeconds(), params.getUses())
        .then([context](kj::String token) mutable { context.getResults().setToken(token); });
  }
  context.getResults().setToken(
      store.share(id, params.getTtlSeconds(), params.getUses(), ref->held().client));
  return kj::READY_NOW;
}

kj::Promise<void> RefServer::children(ChildrenContext context) {
  ref->held();  // FAILED_PRECONDITION if this Ref was released
  gc::ClientId client = ref->held().client;
  if (store.record(store.resolve(id)).state == gc::ObjectState::REMOTE) {
    context.allowCancellation();
    return KJ_ASSERT_NONNULL(ref->services.remote())
        .children(store.resolve(id), client)
        .then([this, context, client](kj::Array<HeldObject> held) mutable {
          // Guarded until each has its Ref: if one newRef fails (the client went away), the
          // holders not yet handed over are released too.
          auto guarded = KJ_MAP(child, held) { return kj::heap<HolderGuard>(store, child); };
          auto out = context.getResults().initChildren(guarded.size());
          for (size_t i = 0; i < guarded.size(); i++) {
            out.set(i, newRef(ref->services, guarded[i]->keep().holder, client));
          }
        });
  }
  auto kids = store.table().childrenOf(store.resolve(id));
  auto out = context.getResults().initChildren(kids.size());
  for (size_t i = 0; i < kids.size(); i++) {
    out.set(i, newRef(ref->services, store.addHolder(kids[i], client), client));
  }
  return kj::READY_NOW;
}

kj::Promise<void> RefServer::saveAs(SaveAsContext context) {
  ref->held();  // FAILED_PRECONDITION if this Ref was released
  store.addName(id, context.getParams().getName());
  return kj::READY_NOW;
}

ViewServer::ViewServer(RpcServices& services, gc::ObjectId owner, gc::ClientId client)
    : services(services), store(services.store), owner(owner), client(client) {
  store.pin(owner);
}

ViewServer::~ViewServer() noexcept(false) {
  if (pinned) store.unpin(owner);
}

kj::Promise<void> ViewServer::placement(PlacementContext context) {
  RS_REQUIRE(pinned, FAILED_PRECONDITION, "this View was released (View.release)");
  fillPlacement(context.getResults().initPlacement(), services, owner, /*writable=*/false, client);
  return kj::READY_NOW;
}

kj::Promise<void> ViewServer::release(ReleaseContext /*context*/) {
  if (pinned) {
    pinned = false;
    store.unpin(owner);
  }
  return kj::READY_NOW;
}

kj::Promise<void> RefServer::release(ReleaseContext /*context*/) {
  ref->release();
  return kj::READY_NOW;
}

proto::Ref::Client newRef(RpcServices& services, gc::HolderId holder, gc::ClientId client) {
  if (services.findConnection(client) == nullptr) {
    services.store.removeHolder(holder);  // nobody could ever release it
    services.requireOpen(client);         // throws
  }
  ConnectionState& connection = services.connection(client);
  // A Ref handed to another daemon is a remote holder (one per object for all its clients).
  if (connection.peer != 0) services.store.remoteHolds().markRemote(holder, connection.peer);
  return proto::Ref::Client(kj::Own<capnp::ClientHook>(
      RefHook::make(services, holder, connection.sharedMemory)));
}

kj::Promise<kj::Maybe<gc::ObjectId>> ownRefObject(capnp::Capability::Client ref) {
  kj::Own<capnp::ClientHook> hook = capnp::ClientHook::from(kj::mv(ref));
  // Skip the resolutions that have already happened.
  capnp::ClientHook* current = hook.get();
  for (;;) {
    KJ_IF_MAYBE(next, current->getResolved()) {
      current = next;
    } else {
      break;
    }
  }
  KJ_IF_MAYBE(mine, RefHook::from(*current)) {
    return kj::Maybe<gc::ObjectId>(mine->held().object);
  }
  // Still a promise (e.g. a Ref pipelined from a call not yet returned): wait and look again.
  KJ_IF_MAYBE(more, current->whenMoreResolved()) {
    return more->attach(kj::mv(hook))
        .then([](kj::Own<capnp::ClientHook> resolved) {
          return ownRefObject(capnp::Capability::Client(kj::mv(resolved)));
        }, [](kj::Exception&&) -> kj::Maybe<gc::ObjectId> {
          return nullptr;  // a broken promise is nobody's Ref; using it will report why
        });
  }
  return kj::Maybe<gc::ObjectId>(nullptr);
}

}  // namespace refstore::server
