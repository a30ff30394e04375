# The program that motivates refstore, as three services:
#
#     a = f(); b = f(); c = add(a, b)
#
# Each service speaks its own Cap'n Proto interface, and those interfaces take and return
# refstore `Ref`s: pass-by-reference RPC. The values live in refstored's shared memory; only
# capabilities cross the services' sockets. Each method also has a by-value twin (values
# inline in the messages) so the two styles can be compared on the same machine.
#
# Values are arrays of little-endian UInt64: f(seed, count)[i] = seed * i, and
# add(a, b)[i] = a[i] + b[i] (wrapping).

@0xf26bcd1b61ed49b0;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("refstore::pipeline::proto");

using Store = import "/schema/refstore.capnp";

interface Producer {
  f @0 (seed :UInt64, count :UInt64) -> (value :Store.Ref);
  # Creates the value in refstored (written in place in shared memory) and returns its Ref.

  fByValue @1 (seed :UInt64, count :UInt64) -> (value :Data);
  # The same value, copied into the response.
}

interface Adder {
  add @0 (a :Store.Ref, b :Store.Ref) -> (sum :Store.Ref);
  # Adopts a and b (so whoever passed them may exit), reads them zero-copy, writes the sum in
  # place and returns its Ref.

  addByValue @1 (a :Data, b :Data) -> (sum :Data);
  # The same computation on values copied in and out of the messages.
}
