#include "server/store_server.h"

#include <utility>

#include "schema/batching_message_stream.h"
#include "server/errors.h"
#include "server/adoption.h"
#include "server/fulfiller_server.h"
#include "server/join.h"
#include "server/ref_server.h"
#include "server/write_buffer_server.h"

namespace refstore::server {
namespace {

// Compares without an early exit, so response time does not reveal how much of a guessed
// secret was right.
bool constantTimeEquals(kj::ArrayPtr<const kj::byte> a, kj::ArrayPtr<const kj::byte> b) {
  if (a.size() != b.size()) return false;
  kj::byte diff = 0;
  for (size_t i = 0; i < a.size(); i++) diff |= a[i] ^ b[i];
  return diff == 0;
}

}  // namespace

StoreServer::StoreServer(ObjectStore& store, gc::ClientId client,
                         kj::Maybe<kj::StringPtr> requiredSecret,
                         kj::Function<void()> onAuthenticated)
    : store(store),
      client(client),
      requiredSecret(requiredSecret),
      onAuthenticated(kj::mv(onAuthenticated)),
      authenticated(requiredSecret == nullptr) {}

void StoreServer::requireAuthenticated() {
  RS_REQUIRE(authenticated, UNAUTHENTICATED,
             "this listener requires the cluster secret: call Store.hello with it first");
}

kj::Promise<void> StoreServer::hello(HelloContext context) {
  auto params = context.getParams();
  auto label = params.getClientName();
  RS_REQUIRE(label.size() <= proto::MAX_LABEL_BYTES, INVALID_ARGUMENT, "clientName of ",
             label.size(), " bytes exceeds the limit of ", proto::MAX_LABEL_BYTES, " bytes");
  KJ_IF_MAYBE(secret, requiredSecret) {
    RS_REQUIRE(constantTimeEquals(params.getSecret(), secret->asBytes()), UNAUTHENTICATED,
               "wrong cluster secret");
    if (!authenticated) {
      authenticated = true;
      onAuthenticated();
    }
  }
  info().label = kj::str(label);
  if (params.getNoFileDescriptors()) {
    // Its Cap'n Proto cannot receive fds: copy-path placements only, as on TCP.
    info().sharedMemory = false;
    info().writableSharedMemory = false;
  }
  auto results = context.getResults();
  results.setVersion("refstored 0.1");
  results.setOrigin(store.origin());
  results.setSharedMemory(info().sharedMemory);
  results.setWritableSharedMemory(info().writableSharedMemory);
  return kj::READY_NOW;
}

kj::Promise<void> StoreServer::put(PutContext context) {
  context.allowCancellation();  // a call that waits ends with its connection
  requireAuthenticated();
  auto params = context.getParams();
  auto data = params.getData();
  RS_REQUIRE(data.size() > 0, INVALID_ARGUMENT, "cannot put an empty value");
  RS_REQUIRE(data.size() <= proto::MAX_INLINE_BYTES, TOO_LARGE, "inline put of ", data.size(),
             " bytes exceeds ", proto::MAX_INLINE_BYTES, " bytes: use create() instead");
  auto answer = [this, context](kj::Own<Reservation> memory,
                                const std::vector<gc::ObjectId>& children) mutable {
    auto created = store.put(kj::mv(memory), context.getParams().getData(), children, client);
    context.getResults().setRef(newRef(store, created.writer, client));
  };
  if (!params.hasChildren() || params.getChildren().size() == 0) {
    KJ_IF_MAYBE(memory, store.reserveNow(data.size())) {  // the common case, without promises
      answer(kj::mv(*memory), {});
      return kj::READY_NOW;
    }
  }
  auto memory = store.reserve(data.size(), params.getTimeoutMs() * kj::MILLISECONDS, client);
  return adoptAll(store, params.getChildren(), client)
      .then([memory = kj::mv(memory)](kj::Own<TemporaryHolds> children) mutable {
        return memory.then([children = kj::mv(children)](kj::Own<Reservation> reserved) mutable {
          return std::make_pair(kj::mv(children), kj::mv(reserved));
        });
      })
      .then([answer](auto both) mutable { answer(kj::mv(both.second), both.first->ids()); });
}

kj::Promise<void> StoreServer::create(CreateContext context) {
  context.allowCancellation();  // a call that waits ends with its connection
  requireAuthenticated();
  auto params = context.getParams();
  uint64_t size = params.getSize();
  return store.reserve(size, params.getTimeoutMs() * kj::MILLISECONDS, client)
      .then([this, context, size](kj::Own<Reservation> memory) mutable {
        auto created = store.create(kj::mv(memory), size, client);
        auto results = context.getResults();
        // From here on the buffer owns the writer holder: if anything below throws, destroying
        // the buffer aborts the object and frees its memory.
        auto buffer = kj::heap<WriteBufferServer>(store, created, client);
        if (info().writableSharedMemory) {
          fillPlacement(results.initPlacement(), store, created.id, /*writable=*/true, client);
        }
        results.setBuffer(kj::mv(buffer));
      });
}

kj::Promise<void> StoreServer::restore(RestoreContext context) {
  requireAuthenticated();
  auto restored = store.restore(context.getParams().getToken(), client);
  context.getResults().setRef(newRef(store, restored.second, client));
  return kj::READY_NOW;
}

kj::Promise<void> StoreServer::stats(StatsContext context) {
  requireAuthenticated();
  store.fillStats(context.getResults().initStats());
  return kj::READY_NOW;
}

namespace {

// A page size: 0 means the default; never more than maxListPage.
size_t pageLimit(uint32_t requested) {
  return requested == 0 ? 1000 : kj::min(requested, proto::MAX_LIST_PAGE);
}

}  // namespace

kj::Promise<void> StoreServer::list(ListContext context) {
  requireAuthenticated();
  auto params = context.getParams();
  std::vector<const gc::ObjectRecord*> page;
  uint64_t next = store.table().listPage(params.getCursor(), pageLimit(params.getLimit()), &page);
  auto results = context.getResults();
  store.fillListing(results.initObjects(page.size()), kj::arrayPtr(page.data(), page.size()));
  results.setNextCursor(next);
  return kj::READY_NOW;
}

}  // namespace refstore::server

namespace refstore::server {

kj::Promise<void> StoreServer::promise(PromiseContext context) {
  requireAuthenticated();
  auto created = store.promise(client);
  auto results = context.getResults();
  results.setFulfiller(kj::heap<FulfillerServer>(store, created.id, client));
  results.setRef(newRef(store, created.writer, client));
  return kj::READY_NOW;
}

kj::Promise<void> StoreServer::lookup(LookupContext context) {
  requireAuthenticated();
  gc::ObjectId id = store.lookupName(context.getParams().getName());
  context.getResults().setRef(newRef(store, store.addHolder(id, client), client));
  return kj::READY_NOW;
}

kj::Promise<void> StoreServer::unname(UnnameContext context) {
  requireAuthenticated();
  store.removeName(context.getParams().getName());
  return kj::READY_NOW;
}

kj::Promise<void> StoreServer::names(NamesContext context) {
  requireAuthenticated();
  auto params = context.getParams();
  bool more = false;
  auto all = store.table().listNames(params.getAfter(), pageLimit(params.getLimit()), &more);
  context.getResults().setMore(more);
  auto out = context.getResults().initNames(all.size());
  for (size_t i = 0; i < all.size(); i++) {
    out[i].setName(all[i].first.c_str());
    out[i].initId().setOrigin(all[i].second.hi);
    out[i].getId().setSerial(all[i].second.lo);
  }
  return kj::READY_NOW;
}

kj::Promise<void> StoreServer::adopt(AdoptContext context) {
  context.allowCancellation();  // a call that waits ends with its connection
  requireAuthenticated();
  return adoptRef(store, context.getParams().getRef(), client)
      .then([this, context](HeldObject held) mutable {
        context.getResults().setRef(newRef(store, held.holder, client));
      });
}

kj::Promise<void> StoreServer::putMany(PutManyContext context) {
  context.allowCancellation();  // a call that waits ends with its connection
  requireAuthenticated();
  auto params = context.getParams();
  auto values = params.getValues();
  RS_REQUIRE(values.size() <= proto::MAX_BATCH_VALUES, TOO_LARGE, "putMany of ", values.size(),
             " values exceeds the limit of ", proto::MAX_BATCH_VALUES);
  uint64_t total = 0;
  auto sizes = kj::heapArray<uint64_t>(values.size());
  for (uint i = 0; i < values.size(); i++) {
    RS_REQUIRE(values[i].size() > 0, INVALID_ARGUMENT, "value ", i, " of putMany is empty");
    sizes[i] = values[i].size();
    total += sizes[i];
  }
  RS_REQUIRE(total <= proto::MAX_INLINE_BYTES, TOO_LARGE, "putMany of ", total,
             " bytes exceeds ", proto::MAX_INLINE_BYTES, " bytes: put large values with create()");
  return store.reserveMany(sizes, params.getTimeoutMs() * kj::MILLISECONDS, client)
      .then([this, context](kj::Array<kj::Own<Reservation>> memory) mutable {
        auto values = context.getParams().getValues();
        auto refs = context.getResults().initRefs(values.size());
        for (uint i = 0; i < values.size(); i++) {
          auto created = store.put(kj::mv(memory[i]), values[i], {}, client);
          refs.set(i, newRef(store, created.writer, client));
        }
      });
}

namespace {

// Memory pins on objects (as a View holds): while pinned, a value in memory is not spilled.
class Pins {
 public:
  Pins(ObjectStore& store, size_t capacity): store(store) { pinned.reserve(capacity); }
  ~Pins() noexcept(false) {
    for (gc::ObjectId id: pinned) store.unpin(id);
  }
  KJ_DISALLOW_COPY(Pins);
  // Within the capacity given, so that a pin taken is always recorded.
  void add(gc::ObjectId id) {
    KJ_ASSERT(pinned.size() < pinned.capacity());
    store.pin(id);
    pinned.push_back(id);
  }

 private:
  ObjectStore& store;
  std::vector<gc::ObjectId> pinned;
};

}  // namespace

kj::Promise<void> StoreServer::readMany(ReadManyContext context) {
  context.allowCancellation();  // a call that waits ends with its connection
  requireAuthenticated();
  auto refs = context.getParams().getRefs();
  RS_REQUIRE(refs.size() <= proto::MAX_BATCH_VALUES, TOO_LARGE, "readMany of ", refs.size(),
             " Refs exceeds the limit of ", proto::MAX_BATCH_VALUES);
  // The holds keep every object alive until the values are copied out.
  return adoptAll(store, refs, client).then([this, context](kj::Own<TemporaryHolds> held) mutable {
    std::vector<gc::ObjectId> ids = held->ids();
    auto ready = kj::heapArrayBuilder<kj::Promise<void>>(ids.size());
    for (gc::ObjectId id: ids) ready.add(store.whenReady(id));
    return joinFailFast(ready.finish())
        .then([this, context, ids = kj::mv(ids)]() mutable {
          // The objects holding the bytes (an alias's target); checked for size before anything
          // is pinned or read back from disk.
          std::vector<gc::ObjectId> owners;
          owners.reserve(ids.size());
          uint64_t total = 0;
          for (gc::ObjectId id: ids) {
            owners.push_back(store.resolve(id));
            total += store.record(owners.back()).size;
          }
          RS_REQUIRE(total <= proto::MAX_INLINE_BYTES, TOO_LARGE, "readMany of ", total,
                     " bytes exceeds ", proto::MAX_INLINE_BYTES,
                     " bytes: read large values with Ref.read or Ref.view");
          if (total <= BatchingMessageStream::kMaxBatchedBytes) {
            return readValues(context, kj::mv(owners), nullptr);  // batched: no budget
          }
          // A large reply waits for room in the connection's reply budget (reply_budget.h).
          return info().replyBudget->turn().then(
              [this, context, owners = kj::mv(owners)](kj::Own<ReplyBudget::Turn> turn) mutable {
                return readValues(context, kj::mv(owners), kj::mv(turn));
              });
        })
        .attach(kj::mv(held));
  });
}

kj::Promise<void> StoreServer::readValues(ReadManyContext context,
                                          std::vector<gc::ObjectId> owners,
                                          kj::Maybe<kj::Own<ReplyBudget::Turn>> turn) {
  // Pin every value before bringing the spilled ones back, so that restoring one cannot spill
  // another (a spill in flight is abandoned when it finds a new pin).
  auto pins = kj::heap<Pins>(store, owners.size());
  auto resident = kj::heapArrayBuilder<kj::Promise<void>>(owners.size());
  for (gc::ObjectId owner: owners) {
    pins->add(owner);
    resident.add(store.ensureResident(owner));
  }
  return joinFailFast(resident.finish())
      .then([this, context, owners = kj::mv(owners), turn = kj::mv(turn)]() mutable {
        auto values = context.getResults().initValues(owners.size());
        uint64_t total = 0;
        for (size_t i = 0; i < owners.size(); i++) {
          auto bytes = store.bytes(owners[i]);
          values.set(i, bytes);
          total += bytes.size();
        }
        KJ_IF_MAYBE(charged, turn) { (*charged)->charge(total); }
      })
      .attach(kj::mv(pins));
}

}  // namespace refstore::server
