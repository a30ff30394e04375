// refctl: command-line access to refstored. One file per command (put, get/cat, stats, ls,
// unname); command.h holds what they share, format.h how numbers are shown to people.
#include <kj/main.h>

#include "tools/refctl/command.h"

namespace refstore::tools {
namespace {

class RefctlMain {
 public:
  explicit RefctlMain(kj::ProcessContext& context)
      : globals{context, ""},
        put(newPutCommand(globals)),
        get(newGetCommand(globals, /*cat=*/false)),
        cat(newGetCommand(globals, /*cat=*/true)),
        stats(newStatsCommand(globals)),
        ls(newLsCommand(globals)),
        unname(newUnnameCommand(globals)) {}

  kj::MainFunc getMain() {
    return kj::MainBuilder(globals.context, "refctl 0.1",
                           "Command-line client for refstored. The socket defaults to "
                           "$REFSTORE_SOCKET or refstored's default.")
        .addOptionWithArg({'s', "socket"}, KJ_BIND_METHOD(*this, setSocket), "<address>",
                          "refstored address: a socket path, unix:<path> or tcp:<host:port>.")
        .addSubCommand("put", KJ_BIND_METHOD(*put, getMain), "store a file or stdin, print a token")
        .addSubCommand("get", KJ_BIND_METHOD(*get, getMain), "write the value of a token")
        .addSubCommand("cat", KJ_BIND_METHOD(*cat, getMain), "write the value of a token to stdout")
        .addSubCommand("stats", KJ_BIND_METHOD(*stats, getMain), "daemon counters")
        .addSubCommand("ls", KJ_BIND_METHOD(*ls, getMain), "list live objects")
        .addSubCommand("unname", KJ_BIND_METHOD(*unname, getMain), "drop a name pin")
        .build();
  }

 private:
  kj::MainBuilder::Validity setSocket(kj::StringPtr address) {
    globals.socket = address.cStr();
    return true;
  }

  Globals globals;
  std::unique_ptr<Command> put, get, cat, stats, ls, unname;
};

}  // namespace
}  // namespace refstore::tools

KJ_MAIN(refstore::tools::RefctlMain)
