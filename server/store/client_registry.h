// Who is connected: one entry per connection, so that listings can say who holds what. The gc
// table tags each holder with a ClientId; this registry says what that id stands for.
#pragma once

#include <kj/map.h>
#include <kj/string.h>

#include "gc/object_table.h"

namespace refstore::server {

struct ClientInfo {
  kj::String label;  // from Store.hello, "" until then
  int pid = 0;       // SO_PEERCRED, 0 if unknown (TCP)
  uint uid = 0;
};

class ClientRegistry {
 public:
  gc::ClientId add(ClientInfo info);
  void remove(gc::ClientId id);
  ClientInfo& get(gc::ClientId id);  // the client must be registered
  kj::Maybe<const ClientInfo&> find(gc::ClientId id) const;
  size_t size() const { return clients.size(); }

 private:
  kj::HashMap<gc::ClientId, ClientInfo> clients;
  gc::ClientId nextId = 1;  // 0 is the daemon itself (e.g. restores from disk)
};

}  // namespace refstore::server
