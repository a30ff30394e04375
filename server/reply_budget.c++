#include "server/reply_budget.h"

namespace refstore::server {

kj::Promise<kj::Own<ReplyBudget::Turn>> ReplyBudget::turn() {
  if (!turnRunning && waiters.empty() && outstanding < limit) {
    turnRunning = true;
    return kj::heap<Turn>(kj::addRef(*this));
  }
  auto paf = kj::newPromiseAndFulfiller<kj::Own<Turn>>();
  waiters.push_back(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

void ReplyBudget::credit(uint64_t bytes) {
  outstanding -= kj::min(bytes, outstanding);
  admitNext();
}

void ReplyBudget::endTurn() {
  turnRunning = false;
  admitNext();
}

void ReplyBudget::admitNext() {
  while (!turnRunning && outstanding < limit && !waiters.empty()) {
    auto waiter = kj::mv(waiters.front());
    waiters.pop_front();
    if (waiter->isWaiting()) {  // a cancelled call's promise is gone: skip it
      turnRunning = true;
      waiter->fulfill(kj::heap<Turn>(kj::addRef(*this)));
    }
  }
}

}  // namespace refstore::server
