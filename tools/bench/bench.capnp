# refbench's own services: the baselines and the two forms of the a = f(); b = f();
# c = add(a, b) pipeline. Self-contained on purpose (no import of refstore.capnp): references
# travel as share tokens (Text), the one form every process can pass without a three-party
# capability handoff, which Cap'n Proto 0.9.2 (Level 1) does not have.

@0xe7e25470124879e7;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("refbench::proto");

interface Sink {
  # Receives one value by value, in chunks (each far below Cap'n Proto's 64 MiB traversal
  # limit), into a buffer the receiver owns.

  write @0 (data :Data) -> stream;
  # The next chunk, appended. `-> stream` gives flow control: the sender keeps a window of
  # chunks in flight instead of one round trip per chunk.

  done @1 () -> (size :UInt64, checksum :UInt64);
  # The value is complete. The receiver reads every byte (checksum) before answering.
}

interface AddJob {
  # An addition whose operands were streamed by value into the sinks `Worker.addByValue` gave.

  run @0 (into :Sink) -> ();
  # Computes c = a + b (64-bit words) and streams c into `into`; returns once `into.done`
  # has returned.
}

interface Worker {
  # One helper process (role `worker`). refbench starts several: an echo/consumer, the
  # producer `f` and the adder.

  echo @0 (data :Data) -> (data :Data);
  # The bare Cap'n Proto round trip baseline.

  newSink @1 (size :UInt64) -> (sink :Sink);
  # By-value handoff: a sink for a value of `size` bytes (its buffer is kept warm and reused).

  fByValue @2 (size :UInt64, seed :UInt64, into :Sink) -> ();
  # f() by value: fills `size` bytes (pattern `seed`) in private memory and streams them into
  # `into`.

  fByRef @3 (size :UInt64, seed :UInt64) -> (token :Text);
  # f() by reference: creates the value in refstore, fills it in place, seals it and returns a
  # single-use share token. No byte of the value crosses a socket.

  addByValue @4 (size :UInt64) -> (a :Sink, b :Sink, job :AddJob);
  # add() by value: stream a and b into the returned sinks, then `job.run`.

  addByRef @5 (a :Text, b :Text) -> (token :Text);
  # add() by reference: restores a and b, views them, writes c = a + b in place into a new
  # refstore object and returns its single-use share token.
}
