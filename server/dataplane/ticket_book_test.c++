// Unit tests of TicketBook (ticket_book.h): tickets pin their object until used or expired.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <kj/async-io.h>

#include "server/dataplane/ticket_book.h"
#include "server/shm/jemalloc_arena.h"

using namespace refstore;
using namespace refstore::server;

namespace {

struct Fixture {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  shm::JemallocArena arena{shm::JemallocArena::Options{64ull << 20, 4ull << 20}};
  ObjectStore store{ObjectStore::Options{arena, io.provider->getTimer(), /*origin=*/42}};
  gc::ClientId client = store.clients().add(ClientInfo{kj::str("test"), 1, 0});

  // A sealed object whose only reference is the returned holder.
  std::pair<gc::ObjectId, gc::HolderId> put(kj::StringPtr text) {
    auto memory = store.reserve(text.size(), 0 * kj::SECONDS, client).wait(io.waitScope);
    auto created = store.put(kj::mv(memory), text.asBytes(), {}, client);
    return {created.id, created.writer};
  }
  bool alive(gc::ObjectId id) { return store.table().find(id) != nullptr; }
};

}  // namespace

// Found by tools/soak (seed 11): a reader that asked for a ticket and never connected (its
// proxy reclaimed, or its daemon killed, in between) left the object pinned -- alive with no
// reference, its memory used -- because expired tickets were swept only when many new ones were
// issued.
TEST_CASE("a ticket never used unpins its object when it expires, with nothing else issued") {
  Fixture f;
  dataplane::TicketBook tickets(f.store, f.io.provider->getTimer(), 50 * kj::MILLISECONDS);
  auto [id, holder] = f.put("hello");
  tickets.issue(id, /*peer=*/7);
  f.store.removeHolder(holder);
  CHECK(f.alive(id));  // pinned by the ticket
  // Well past the expiry: the book's own timer, set for the expiry, has fired by then.
  f.io.provider->getTimer().afterDelay(500 * kj::MILLISECONDS).wait(f.io.waitScope);
  CHECK(tickets.outstanding() == 0);
  CHECK_FALSE(f.alive(id));
}

TEST_CASE("a ticket used in time hands its pin to the transfer") {
  Fixture f;
  dataplane::TicketBook tickets(f.store, f.io.provider->getTimer(), 10 * kj::SECONDS);
  auto [id, holder] = f.put("hello");
  gc::Secret ticket = tickets.issue(id, /*peer=*/7);
  f.store.removeHolder(holder);
  {
    auto grant = tickets.redeem(ticket);
    REQUIRE(grant != nullptr);
    CHECK(tickets.redeem(ticket) == nullptr);  // single use
    CHECK(f.alive(id));  // the transfer's pin
  }
  CHECK_FALSE(f.alive(id));
}
