// ReplyBudget: how many bytes of large replies (Ref.read, Store.readMany) a connection has been
// given that its socket has not yet taken. A client that asks for data and never reads the
// answers would otherwise make the daemon buffer every reply (10,000 pipelined 16 MiB reads:
// 160 GB); with the budget, a reply is built only while less than the limit is waiting to be
// written, and later ones wait (as calls in progress, themselves bounded by the connection's
// flow limit) until the client reads.
//
// Approximate by design: replies are charged by the servers when built, and the connection's
// stream credits every large message it finishes writing (BatchingMessageStream's
// onLargeMessageWritten), so a large message that is not a reply (a big listing) frees budget
// too. Either way the outstanding bytes stay within the limit plus one reply.
#pragma once

#include <kj/async.h>
#include <kj/refcount.h>

#include <cstdint>
#include <deque>

namespace refstore::server {

class ReplyBudget final: public kj::Refcounted {
 public:
  explicit ReplyBudget(uint64_t limit): limit(limit) {}
  KJ_DISALLOW_COPY(ReplyBudget);

  // The right to build one reply, charging it to the budget. While one is held, later callers
  // wait their turn; when it goes (charged or not, or its call cancelled), the next caller is
  // let in if there is room.
  class Turn {
   public:
    explicit Turn(kj::Own<ReplyBudget> budget): budget(kj::mv(budget)) {}
    ~Turn() noexcept(false) { budget->endTurn(); }
    KJ_DISALLOW_COPY(Turn);
    void charge(uint64_t bytes) { budget->outstanding += bytes; }

   private:
    kj::Own<ReplyBudget> budget;
  };

  // Resolves with a Turn once less than the limit is outstanding and no earlier caller waits
  // (at once, nearly always).
  kj::Promise<kj::Own<Turn>> turn();
  // The stream finished writing a large message of `bytes`.
  void credit(uint64_t bytes);

  uint64_t outstandingBytes() const { return outstanding; }

 private:
  void endTurn();
  void admitNext();  // starts the next waiter's turn if there is room and no turn is running

  uint64_t outstanding = 0;
  uint64_t limit;
  bool turnRunning = false;
  std::deque<kj::Own<kj::PromiseFulfiller<kj::Own<Turn>>>> waiters;
};

}  // namespace refstore::server
