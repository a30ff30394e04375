// Asynchronous and Cap'n Proto interop API of the C++ client.
//
// For programs that run their own Cap'n Proto services on the client's event loop: a service
// whose interface takes and returns `Ref`s (`import "refstore.capnp"`) cannot block inside an
// RPC handler, so it uses these promise-returning calls instead of the blocking ones in
// refstore_client.h. The blocking calls are these calls plus a wait.
#pragma once

#include <kj/async-io.h>

#include "client/cpp/refstore_client.h"
#include "schema/refstore.capnp.h"

namespace refstore::async {

// The event loop (and I/O) of the client's thread. Run your own servers on it.
kj::AsyncIoContext& ioContext(Client& client);

kj::Promise<Ref> put(Client& client, kj::ArrayPtr<const kj::byte> data,
                     std::vector<const Ref*> children = {}, double timeoutSeconds = 0);
kj::Promise<std::vector<Ref>> putMany(Client& client,
                                      std::vector<kj::ArrayPtr<const kj::byte>> values,
                                      double timeoutSeconds = 0);
kj::Promise<std::vector<std::vector<uint8_t>>> readMany(Client& client,
                                                       std::vector<const Ref*> refs);
kj::Promise<WriteBuffer> create(Client& client, uint64_t size, double timeoutSeconds = 0);
// Seals `buffer`, which the promise owns until then.
kj::Promise<Ref> seal(WriteBuffer buffer, std::vector<const Ref*> children = {});
// WriteBuffer::sealAndShare: seal and share in one round trip.
kj::Promise<SharedValue> sealAndShare(WriteBuffer buffer, uint32_t ttlSeconds, uint32_t uses = 0,
                                      std::vector<const Ref*> children = {});
kj::Promise<Ref> restore(Client& client, std::string token);
kj::Promise<View> view(const Ref& ref);
// Client::restoreView: restore and view in one round trip.
kj::Promise<View> restoreView(Client& client, std::string token);
kj::Promise<ObjectInfo> whenReady(const Ref& ref);
kj::Promise<void> prefetch(const Ref& ref);

// The Store capability of the client's connection, for calls the client API does not wrap
// (e.g. pipelining many puts without waiting for each).
proto::Store::Client store(Client& client);
// Wraps a Ref capability obtained from `store(client)` (or received from elsewhere, without
// adopting it) in a client Ref.
Ref wrap(Client& client, proto::Ref::Client ref);

// The Cap'n Proto capability behind a Ref, to put into your own messages. Whoever receives it
// holds a reference (through you, until they adopt it).
proto::Ref::Client capability(const Ref& ref);
// A Ref received from another party, re-homed onto `client`'s own connection to refstored, so
// the party it came through may go away (Store.adopt).
kj::Promise<Ref> adopt(Client& client, proto::Ref::Client ref);

}  // namespace refstore::async
