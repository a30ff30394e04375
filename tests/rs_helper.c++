// rs_helper: a separate client process for multi-process integration tests. Each subcommand
// does one thing a real framework would do, prints "ready"/a result on stdout, and either exits
// or waits to be killed, so tests can kill clients in the middle of holding resources.
//
//   rs_helper put SOCKET SIZE SEED TTL       create+write pattern+seal, print share token, exit
//   rs_helper verify SOCKET TOKEN SIZE SEED  restore + zero-copy view; exit 0 iff bytes match
//   rs_helper hold-refs SOCKET COUNT SIZE    put COUNT values, print "ready", wait forever
//   rs_helper hold-view SOCKET TOKEN         restore, view, drop the Ref, "ready", wait forever
//   rs_helper hold-unsealed SOCKET SIZE      create without sealing, "ready", wait forever
//   rs_helper write-view SOCKET TOKEN        try to write through a view (must crash / fail)
//   rs_helper promise SOCKET                 make a promise, print a token for it, hold the
//                                            Fulfiller forever (until killed)
//   rs_helper create-wait SOCKET SIZE SECS   create (waiting up to SECS for memory); print
//                                            "created" or the error code name
//   rs_helper wait SOCKET TOKEN              restore, print "waiting", wait for the value, then
//                                            print "ok" or the error code name
//   rs_helper restore-view SOCKET TOKEN      send restoreView (restore + pipelined view), print
//                                            "sent" once the daemon has both calls, then wait
//                                            for the View and print its size
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "client/cpp/refstore_async.h"
#include "client/cpp/refstore_client.h"
#include "tests/daemon.h"

using refstore::Client;

// Under AddressSanitizer (--config=asan), `write-view` must still die of SIGSEGV, as the test
// expects, instead of ASan turning the fault into a report and exit code 1. Not compiled into
// anything but this helper; without ASan the function is never called.
extern "C" const char* __asan_default_options() { return "handle_segv=0"; }

namespace {

void ready() {
  printf("ready\n");
  fflush(stdout);
}

[[noreturn]] void waitForever() {
  for (;;) pause();
}

int run(const std::vector<std::string>& args) {
  const std::string& command = args.at(0);
  Client client = Client::connect(args.at(1));
  if (command == "put") {
    uint64_t size = std::stoull(args.at(2)), seed = std::stoull(args.at(3));
    auto buffer = client.create(size);
    refstore::testing::fillPattern(buffer.data(), size, seed);
    auto ref = buffer.seal();
    printf("%s\n", ref.share(std::stoul(args.at(4))).c_str());
    return 0;
  }
  if (command == "verify") {
    uint64_t size = std::stoull(args.at(3)), seed = std::stoull(args.at(4));
    auto ref = client.restore(args.at(2));
    auto view = ref.view();
    if (view.size() != size) {
      fprintf(stderr, "size %zu, expected %llu\n", view.size(), (unsigned long long)size);
      return 1;
    }
    if (!refstore::testing::checkPattern(view.data(), view.size(), seed)) {
      fprintf(stderr, "bytes differ\n");
      return 1;
    }
    printf("ok\n");
    return 0;
  }
  if (command == "hold-refs") {
    int count = std::stoi(args.at(2));
    uint64_t size = std::stoull(args.at(3));
    std::vector<refstore::Ref> refs;
    for (int i = 0; i < count; i++) {
      auto buffer = client.create(size);
      memset(buffer.data(), i, size);
      refs.push_back(buffer.seal());
    }
    ready();
    waitForever();
  }
  if (command == "hold-view") {
    auto view = client.restore(args.at(2)).view();  // the Ref dies at the end of the statement
    ready();
    waitForever();
  }
  if (command == "hold-unsealed") {
    auto buffer = client.create(std::stoull(args.at(2)));
    memset(buffer.data(), 1, buffer.size());
    ready();
    waitForever();
  }
  if (command == "write-view") {
    auto ref = client.restore(args.at(2));
    auto view = ref.view();
    uintptr_t page = reinterpret_cast<uintptr_t>(view.data()) & ~uintptr_t(4095);
    int rc = mprotect(reinterpret_cast<void*>(page), 4096, PROT_READ | PROT_WRITE);
    printf("mprotect %s\n", rc == 0 ? "succeeded" : strerror(errno));
    fflush(stdout);
    const_cast<uint8_t*>(view.data())[0] ^= 0xff;  // must fault: the mapping is read-only
    printf("wrote\n");
    return 0;
  }
  if (command == "create-wait") {
    try {
      auto buffer = client.create(std::stoull(args.at(2)), std::stod(args.at(3)));
      printf("created\n");
    } catch (const refstore::Error& e) {
      printf("%s\n", refstore::errorCodeName(e.code()));
    }
    return 0;
  }
  if (command == "promise") {
    refstore::Promise promise = client.promise();
    printf("%s\n", promise.ref.share(60).c_str());
    fflush(stdout);
    waitForever();
  }
  if (command == "wait") {
    auto ref = client.restore(args.at(2));
    printf("waiting\n");
    fflush(stdout);
    try {
      ref.whenReady(60);
      printf("ok\n");
    } catch (const refstore::Error& e) {
      printf("%s\n", refstore::errorCodeName(e.code()));
    }
    return 0;
  }
  if (command == "restore-view") {
    auto pending = refstore::async::restoreView(client, args.at(2));
    client.stats();  // answered after the daemon has taken both calls of the restoreView
    printf("sent\n");
    fflush(stdout);
    auto view = pending.wait(refstore::async::ioContext(client).waitScope);
    printf("%zu\n", view.size());
    return 0;
  }
  fprintf(stderr, "unknown command %s\n", command.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: rs_helper COMMAND SOCKET ...\n");
    return 2;
  }
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const refstore::Error& e) {
    fprintf(stderr, "rs_helper: %s\n", e.what());
    return 3;
  }
}
