// Unit tests of AdmissionQueue (admission_queue.h): who gets memory first when several wait.
// A counting allocator stands in for shared memory and a manual timer for the clock, so every
// grant is decided by pump() alone: the order is observed, never timed.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <kj/async.h>
#include <kj/debug.h>
#include <kj/timer.h>

#include <string>
#include <vector>

#include "server/store/admission_queue.h"

using namespace refstore;
using namespace refstore::server;

namespace {

// `capacity` bytes, no real memory: enough for Reservation to give back what it holds.
class CountingMemory final: public shm::Allocator {
 public:
  explicit CountingMemory(uint64_t capacity): limit(capacity) {}
  kj::Maybe<shm::Allocation> allocate(uint64_t size) override {
    if (size > limit - used) return nullptr;
    used += size;
    return shm::Allocation{nullptr, 0, next++, size};
  }
  void release(const shm::Allocation& allocation) override { used -= allocation.size; }
  bool isDedicated(uint32_t) const override { return false; }
  const shm::Segment& segment(uint32_t) const override { KJ_FAIL_REQUIRE("no segments"); }
  uint64_t bytesAllocated() const override { return used; }
  uint64_t capacity() const override { return limit; }
  uint64_t segmentBytes() const override { return limit; }
  size_t segmentCount() const override { return 1; }

 private:
  const uint64_t limit;
  uint64_t used = 0, next = 0;
};

struct Fixture {
  kj::EventLoop loop;
  kj::WaitScope waitScope{loop};
  kj::TimerImpl timer{kj::origin<kj::TimePoint>()};
  CountingMemory memory{100};
  int promotions = 0;
  AdmissionQueue queue{timer, 1000, [this]() { promotions++; }};
  std::vector<kj::Own<Reservation>> held;  // memory taken so that requests must wait

  void fill(uint64_t bytes) {
    held.push_back(kj::heap<Reservation>(memory, KJ_ASSERT_NONNULL(memory.allocate(bytes))));
  }
  // Exactly `bytes` free, whatever the granted requests hold.
  void leaveFree(uint64_t bytes) {
    held.clear();
    uint64_t rest = memory.capacity() - memory.bytesAllocated() - bytes;
    if (rest > 0) fill(rest);
  }
  void pump() {
    queue.pump([this](uint64_t size) -> kj::Maybe<kj::Own<Reservation>> {
      KJ_IF_MAYBE(allocation, memory.allocate(size)) {
        return kj::heap<Reservation>(memory, *allocation);
      }
      return nullptr;
    });
  }
  kj::TimePoint later() { return timer.now() + 30 * kj::SECONDS; }
};

// A request under test: its name, and its reservation once granted.
struct Request {
  std::string name;
  kj::Promise<kj::Own<Reservation>> promise;
  kj::Maybe<kj::Own<Reservation>> granted = nullptr;
};

// Names of the requests granted since the last call, in `requests`' order (the order in which
// pump() granted them is checked by granting one at a time).
std::vector<std::string> newlyGranted(Fixture& f, std::vector<Request>& requests) {
  std::vector<std::string> names;
  for (auto& request: requests) {
    if (request.granted != nullptr || !request.promise.poll(f.waitScope)) continue;
    request.granted = request.promise.wait(f.waitScope);
    names.push_back(request.name);
  }
  return names;
}

using Names = std::vector<std::string>;

}  // namespace

TEST_CASE("a prefetch queued first is passed by an ordinary request queued later") {
  Fixture f;
  f.fill(100);  // full: everyone waits
  std::vector<Request> requests;
  requests.push_back({"prefetch", f.queue.wait(40, f.later(), /*client=*/0, Priority::PREFETCH)});
  requests.push_back({"create", f.queue.wait(40, f.later(), /*client=*/7)});
  CHECK(f.queue.length() == 2);
  CHECK(f.queue.prefetchesWaiting() == 1);
  CHECK(f.queue.bytesWanted() == 80);
  // A new ordinary request would wait behind the create, a new prefetch behind both.
  CHECK(f.queue.anyoneAhead(Priority::ORDINARY));
  CHECK(f.queue.anyoneAhead(Priority::PREFETCH));

  f.leaveFree(40);  // room for one of them
  f.pump();
  CHECK(newlyGranted(f, requests) == Names{"create"});
  CHECK(f.queue.length() == 1);
  // Only the prefetch waits: an ordinary request would not wait behind it.
  CHECK_FALSE(f.queue.anyoneAhead(Priority::ORDINARY));
  CHECK(f.queue.anyoneAhead(Priority::PREFETCH));
  f.leaveFree(40);
  f.pump();
  CHECK(newlyGranted(f, requests) == Names{"prefetch"});
  CHECK(f.queue.empty());
}

TEST_CASE("a prefetch that fits waits while an ordinary request too large for now waits") {
  Fixture f;
  f.fill(100);
  std::vector<Request> requests;
  requests.push_back({"large put", f.queue.wait(90, f.later(), 7)});
  requests.push_back({"small prefetch", f.queue.wait(10, f.later(), 0, Priority::PREFETCH)});
  f.leaveFree(30);  // the prefetch would fit, the put does not
  f.pump();
  CHECK(newlyGranted(f, requests).empty());  // taking 10 would only delay the put further
  f.leaveFree(100);
  f.pump();
  CHECK(newlyGranted(f, requests) == Names{"large put", "small prefetch"});
}

TEST_CASE("clients take turns within each class, first come first within a client") {
  for (Priority priority: {Priority::ORDINARY, Priority::PREFETCH}) {
    CAPTURE(int(priority));
    Fixture f;
    f.fill(100);
    std::vector<Request> requests;
    requests.push_back({"a1", f.queue.wait(10, f.later(), 1, priority)});
    requests.push_back({"a2", f.queue.wait(10, f.later(), 1, priority)});
    requests.push_back({"a3", f.queue.wait(10, f.later(), 1, priority)});
    requests.push_back({"b1", f.queue.wait(10, f.later(), 2, priority)});
    requests.push_back({"c1", f.queue.wait(10, f.later(), 3, priority)});
    requests.push_back({"b2", f.queue.wait(10, f.later(), 2, priority)});
    CHECK(f.queue.waitingFor(1) == 3);
    CHECK(f.queue.waitingFor(2) == 2);
    Names order;
    for (int i = 0; i < 6; i++) {
      f.leaveFree(10);  // room for exactly one more each time
      f.pump();
      Names granted = newlyGranted(f, requests);
      REQUIRE(granted.size() == 1);
      order.push_back(granted[0]);
    }
    CHECK(order == Names{"a1", "b1", "c1", "a2", "b2", "a3"});
    CHECK(f.queue.empty());
  }
}

TEST_CASE("a prefetch a reader comes to want is served as an ordinary request from then on") {
  Fixture f;
  f.fill(100);
  auto wanted = kj::newPromiseAndFulfiller<void>();
  auto neverWanted = kj::newPromiseAndFulfiller<void>();
  std::vector<Request> requests;
  requests.push_back({"prefetch 1", f.queue.wait(30, f.later(), 0, Priority::PREFETCH,
                                                 kj::mv(neverWanted.promise))});
  requests.push_back({"prefetch 2", f.queue.wait(30, f.later(), 0, Priority::PREFETCH,
                                                 kj::mv(wanted.promise))});
  requests.push_back({"create", f.queue.wait(30, f.later(), 7)});
  wanted.fulfiller->fulfill();
  neverWanted.fulfiller = nullptr;  // broken: prefetch 1 stays a prefetch
  f.waitScope.poll();
  CHECK(f.promotions == 1);  // the owner of the queue is told, to pump soon
  CHECK(f.queue.prefetchesWaiting() == 1);
  CHECK(f.queue.length() == 3);
  CHECK(f.queue.waitingFor(0) == 2);
  CHECK(f.queue.bytesWanted() == 90);
  // Prefetch 2 now takes ordinary turns after the create (its client joined them later), and
  // both go before prefetch 1, which was queued first.
  Names order;
  for (int i = 0; i < 3; i++) {
    f.leaveFree(30);
    f.pump();
    Names granted = newlyGranted(f, requests);
    REQUIRE(granted.size() == 1);
    order.push_back(granted[0]);
  }
  CHECK(order == Names{"create", "prefetch 2", "prefetch 1"});
}

TEST_CASE("a prefetch passed over until its deadline fails with OUT_OF_MEMORY and leaves") {
  Fixture f;
  f.fill(100);
  auto prefetch = f.queue.wait(50, f.timer.now() + 5 * kj::SECONDS, 0, Priority::PREFETCH);
  auto create = f.queue.wait(50, f.timer.now() + 60 * kj::SECONDS, 7);
  f.leaveFree(50);
  f.pump();
  CHECK(create.poll(f.waitScope));
  auto created = create.wait(f.waitScope);
  CHECK_FALSE(prefetch.poll(f.waitScope));
  f.timer.advanceTo(f.timer.now() + 5 * kj::SECONDS);
  REQUIRE(prefetch.poll(f.waitScope));
  kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&]() {
    prefetch.wait(f.waitScope);
  });
  KJ_IF_MAYBE(e, failure) {
    CHECK(e->getDescription().startsWith("refstore.OUT_OF_MEMORY"));
  } else {
    FAIL("the prefetch got memory");
  }
  CHECK(f.queue.empty());
  CHECK(f.queue.bytesWanted() == 0);
}
