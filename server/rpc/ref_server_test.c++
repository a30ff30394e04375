// RefHook, the daemon's own ClientHook for Ref capabilities, in one process with no socket: the
// holder lives exactly as long as the capability (and any call in flight on it), calls dispatch
// to the Ref methods, and the daemon recognises its own Refs when they come back -- also when
// they arrive as promises that resolve later -- but nothing else.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <kj/async-io.h>

#include "server/store/object_store.h"
#include "server/rpc/ref_server.h"
#include "server/shm/jemalloc_arena.h"

using namespace refstore;
using namespace refstore::server;

namespace {

// A store with one client connected over a Unix socket (so it may view shared memory).
struct Fixture {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  shm::JemallocArena arena{shm::JemallocArena::Options{64ull << 20, 4ull << 20}};
  ObjectStore store{ObjectStore::Options{arena, io.provider->getTimer(), /*origin=*/42}};
  RpcServices services{store};
  gc::ClientId client = services.openConnection(ClientInfo{kj::str("test"), 1, 0},
                                                /*sharedMemory=*/true, /*writable=*/true);

  // A sealed 5-byte object and a Ref holding it; the creator's holder is the Ref's.
  std::pair<gc::ObjectId, proto::Ref::Client> put(kj::StringPtr text) {
    auto memory = store.reserve(text.size(), 0 * kj::SECONDS, client).wait(io.waitScope);
    auto created = store.put(kj::mv(memory), text.asBytes(), {}, client);
    return {created.id, newRef(services, created.writer, client)};
  }
  bool alive(gc::ObjectId id) { return store.table().find(id) != nullptr; }
};

// Any capability that is not a Ref of this daemon.
class OtherView final: public proto::View::Server {};

}  // namespace

TEST_CASE("the holder lives exactly as long as the Ref capability and its copies") {
  Fixture f;
  auto [id, ref] = f.put("hello");
  CHECK(f.alive(id));
  {
    proto::Ref::Client copy = ref;
    ref = nullptr;
    CHECK(f.alive(id));  // the copy still holds it
  }
  CHECK_FALSE(f.alive(id));  // last reference gone: reclaimed in the same turn
  CHECK(f.store.table().stats().objects == 0);
}

TEST_CASE("calls dispatch to the Ref methods, and a call in flight keeps the holder") {
  Fixture f;
  auto [id, ref] = f.put("hello");
  auto info = ref.infoRequest().send();
  auto read = ref.readRequest();
  read.setOffset(1);
  read.setLength(3);
  auto readPromise = read.send();
  ref = nullptr;  // dropped while both calls are in flight
  CHECK(f.alive(id));
  CHECK(info.wait(f.io.waitScope).getInfo().getSize() == 5);
  auto bytes = readPromise.wait(f.io.waitScope).getData();
  CHECK(kj::str(bytes.asChars()) == "ell");
  f.io.waitScope.poll();
  CHECK_FALSE(f.alive(id));  // freed once the calls finished
}

TEST_CASE("the daemon recognises its own Refs, also through promises, and nothing else") {
  Fixture f;
  auto [id, ref] = f.put("hello");
  auto mine = ownRefObject(ref).wait(f.io.waitScope);
  REQUIRE(mine != nullptr);
  CHECK(KJ_ASSERT_NONNULL(mine) == id);

  // A promise capability that resolves to the Ref later.
  auto paf = kj::newPromiseAndFulfiller<proto::Ref::Client>();
  proto::Ref::Client pending(kj::mv(paf.promise));
  auto found = ownRefObject(pending);
  CHECK_FALSE(found.poll(f.io.waitScope));  // still unresolved
  paf.fulfiller->fulfill(kj::cp(ref));
  auto resolved = found.wait(f.io.waitScope);
  REQUIRE(resolved != nullptr);
  CHECK(KJ_ASSERT_NONNULL(resolved) == id);

  proto::View::Client other = kj::heap<OtherView>();
  CHECK(ownRefObject(other).wait(f.io.waitScope) == nullptr);
  capnp::Capability::Client broken(KJ_EXCEPTION(FAILED, "gone"));
  CHECK(ownRefObject(broken).wait(f.io.waitScope) == nullptr);
}

TEST_CASE("a Ref for a client whose connection closed: its holder is released, not leaked") {
  // A call can outlive its connection (RpcServices::requireOpen); whatever it took for the
  // client must not stay behind when it finally makes the Ref.
  Fixture f;
  auto memory = f.store.reserve(5, 0 * kj::SECONDS, f.client).wait(f.io.waitScope);
  auto created = f.store.put(kj::mv(memory), kj::StringPtr("hello").asBytes(), {}, f.client);
  f.services.closeConnection(f.client);
  CHECK_THROWS_AS(newRef(f.services, created.writer, f.client), kj::Exception);
  CHECK_FALSE(f.alive(created.id));  // its only holder went with the failed Ref
  CHECK(f.store.table().stats().holders == 0);
  kj::Maybe<kj::Exception> refused =
      kj::runCatchingExceptions([&]() { f.services.requireOpen(f.client); });
  CHECK(KJ_ASSERT_NONNULL(refused).getType() == kj::Exception::Type::DISCONNECTED);
}
