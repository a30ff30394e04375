// Helper processes: this binary re-executed as `refbench --role <name> <args...>`. Each role
// talks to refbench over its stdin/stdout (one line per message) and exits at stdin EOF, so a
// helper never outlives a crashed refbench.
#pragma once

#include <string>
#include <vector>

namespace refbench {

// role_consumer.c++. `consumer <refstore socket> <redis socket>`: the handoff consumer. Reads
// "refstore <token>" or "redis <key>" lines, fetches the value (refstore: restore + view,
// zero-copy; Redis: GET), reads every byte and answers with the checksum.
int runConsumer(const std::vector<std::string>& args);

// role_holder.c++. `holder <refstore socket> <size> <count>`: puts `count` values of `size`
// bytes, answers "ready", and holds them until killed (the reclaim-after-SIGKILL measurement).
int runHolder(const std::vector<std::string>& args);

// role_socket_sink.c++. `socket-sink unix <path>` or `socket-sink tcp`: raw transfer baseline.
// Answers "ready <port>", accepts one connection, then repeatedly reads an 8-byte length and
// that many bytes into a warm buffer, reads every byte and writes back the 8-byte checksum.
int runSocketSink(const std::vector<std::string>& args);

// role_tcp_receiver.c++. `tcp-receiver <ip> read|discard`: the raw TCP baseline between hosts
// (raw_tcp.h). Answers "ready <port>", then serves connections one after another: an 8-byte
// length, that many bytes into a warm buffer, 8 bytes back (checksum, or the count).
int runTcpReceiver(const std::vector<std::string>& args);

// role_worker.c++. `worker <bench socket> <refstore socket>`: serves bench.capnp's Worker
// (echo, by-value sinks, the pipeline's f and add in both forms) and answers "ready". With
// `tcp:<ip>` instead of the socket it listens on TCP there (any free port): "ready <port>".
int runWorker(const std::vector<std::string>& args);

// Reads one line from stdin ("" at EOF); writes one line to stdout and flushes.
std::string readLine();
void writeLine(const std::string& line);

}  // namespace refbench
