#include "server/remote/copy_relay.h"

#include "server/dataplane/ticket_book.h"

namespace refstore::server {

kj::Promise<void> CopyRelay::open(OpenContext context) {
  gc::Secret ticket = source.relayTicket(object, copy, context.getParams().getReader());
  auto results = context.getResults();
  dataplane::writeTicket(ticket, results.initTicket(dataplane::kTicketBytes));
  results.setDataAddress(source.dataAddress());
  return kj::READY_NOW;
}

}  // namespace refstore::server
