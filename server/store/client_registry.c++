#include "server/store/client_registry.h"

#include <kj/debug.h>

namespace refstore::server {

gc::ClientId ClientRegistry::add(ClientInfo info) {
  gc::ClientId id = nextId++;
  clients.insert(id, kj::mv(info));
  return id;
}

void ClientRegistry::remove(gc::ClientId id) { clients.erase(id); }

ClientInfo& ClientRegistry::get(gc::ClientId id) { return KJ_ASSERT_NONNULL(clients.find(id)); }

kj::Maybe<const ClientInfo&> ClientRegistry::find(gc::ClientId id) const {
  return clients.find(id);
}

}  // namespace refstore::server
