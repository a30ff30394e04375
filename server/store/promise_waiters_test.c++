// Unit tests of PromiseWaiters (promise_waiters.h): failure reasons and waiters are kept per
// whole object id.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <kj/async.h>

#include "server/store/promise_waiters.h"

using namespace refstore;
using namespace refstore::server;

// Found by tools/soak (seed 1): a proxy's id carries its owner's origin, so a proxy and a
// local object may share `lo`. Reclaiming the proxy used to erase the local object's rejection
// reason, and later readers got an empty INTERNAL error instead of REJECTED.
TEST_CASE("an object's failure survives the end of another origin's object with the same lo") {
  PromiseWaiters waiters;
  gc::ObjectId local{0x1111, 63}, proxy{0x2222, 63};
  waiters.setFailure(local, kj::str("refstore.REJECTED: no"));
  waiters.forget(proxy);
  CHECK(waiters.failure(local) == "refstore.REJECTED: no"_kj);
  CHECK(waiters.failure(proxy) == ""_kj);
  waiters.setFailure(proxy, kj::str("refstore.OWNER_LOST: gone"));
  CHECK(waiters.failure(local) == "refstore.REJECTED: no"_kj);
  waiters.forget(local);
  CHECK(waiters.failure(local) == ""_kj);
  CHECK(waiters.failure(proxy) == "refstore.OWNER_LOST: gone"_kj);
}

TEST_CASE("waking one origin's object does not wake another's with the same lo") {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  PromiseWaiters waiters;
  gc::ObjectId local{0x1111, 7}, proxy{0x2222, 7};
  auto localSettled = waiters.wait(local);
  auto proxySettled = waiters.wait(proxy);
  waiters.wake(proxy);
  CHECK(proxySettled.poll(waitScope));
  CHECK_FALSE(localSettled.poll(waitScope));
  waiters.wake(local);
  CHECK(localSettled.poll(waitScope));
}
