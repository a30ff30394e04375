// Unit tests of RelayOffers (relay_offers.h): which reader's copy the owner hands to which
// later reader, and for how long.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <kj/async.h>

#include "server/peer/relay_offers.h"

using refstore::gc::ObjectId;
using refstore::gc::PeerId;
using refstore::server::RelayOffers;

namespace {

// A Relay that names itself in its answer, so a test can tell which one it was handed.
class NamedRelay final: public refstore::peer::Relay::Server {
 public:
  explicit NamedRelay(kj::StringPtr name): name(kj::str(name)) {}
  kj::Promise<void> open(OpenContext context) override {
    context.getResults().setDataAddress(name);
    return kj::READY_NOW;
  }

 private:
  kj::String name;
};

struct Fixture {
  kj::EventLoop loop;
  kj::WaitScope waitScope{loop};
  RelayOffers offers;
  kj::TimePoint now = kj::origin<kj::TimePoint>() + 1000 * kj::SECONDS;
  const ObjectId value{7, 1}, other{7, 2};
  bool holding = true;  // what the hold check answers

  void offer(PeerId peer, kj::StringPtr name, ObjectId object = {7, 1}) {
    offers.offer(object, object, peer, kj::heap<NamedRelay>(name), now);
  }
  // The name of the relay handed to `reader` for `object`, or "" if none.
  std::string take(PeerId reader, ObjectId object = {7, 1}) {
    auto taken = offers.take(object, reader, now, [this](PeerId, ObjectId) { return holding; });
    KJ_IF_MAYBE(relay, taken) {
      auto answer = relay->openRequest().send().wait(waitScope);
      return answer.getDataAddress().cStr();
    }
    return "";
  }
};

}  // namespace

TEST_CASE("each offer goes to one later reader: readers that come together form a chain") {
  Fixture f;
  CHECK(f.take(2) == "");  // nobody offered: the owner serves
  f.offer(2, "B");
  CHECK(f.take(2) == "");  // not its own copy
  CHECK(f.take(3) == "B");
  f.offer(3, "C");
  CHECK(f.take(4) == "C");  // B serves C already
  CHECK(f.take(5) == "");   // and C serves D
  f.offer(2, "B", f.other);
  CHECK(f.take(3, f.other) == "B");  // offers are per object
}

TEST_CASE("an offer is handed out only while its reader holds the object, and for a minute") {
  Fixture f;
  f.offer(2, "B");
  f.holding = false;
  CHECK(f.take(3) == "");
  f.holding = true;
  CHECK(f.take(3) == "");  // dropped for good, not just skipped
  f.offer(2, "B again");
  f.now = f.now + RelayOffers::kLifetime;
  CHECK(f.take(3) == "");  // expired
  CHECK(f.offers.size() == 0);
}

TEST_CASE("a reader's new offer replaces its old one; at most kMaxOffers are kept") {
  Fixture f;
  f.offer(2, "B first");
  f.offer(2, "B second");
  CHECK(f.take(3) == "B second");
  CHECK(f.take(4) == "");
  for (PeerId peer = 10; peer < 10 + RelayOffers::kMaxOffers + 1; peer++) {
    f.offer(peer, "many", ObjectId{8, peer});
  }
  CHECK(f.offers.size() == RelayOffers::kMaxOffers);
  CHECK(f.take(3, ObjectId{8, 10}) == "");  // the oldest went
  CHECK(f.take(3, ObjectId{8, 11}) == "many");
}
