#include "server/remote/copy_relay.h"

namespace refstore::server {

kj::Promise<void> CopyRelay::open(OpenContext context) {
  gc::Secret ticket = source.relayTicket(object, copy, context.getParams().getReader());
  auto results = context.getResults();
  auto bytes = results.initTicket(16);
  memcpy(bytes.begin(), &ticket.hi, 8);
  memcpy(bytes.begin() + 8, &ticket.lo, 8);
  results.setDataAddress(source.dataAddress());
  return kj::READY_NOW;
}

}  // namespace refstore::server
