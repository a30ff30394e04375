// refctl get NAME|TOKEN [-o FILE] and refctl cat NAME|TOKEN: write a value out.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tools/refctl/command.h"
#include "tools/refctl/progress.h"

namespace refstore::tools {

namespace {

constexpr uint64_t kStep = 8 << 20;  // as put.c++

void writeAll(int fd, const uint8_t* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::IO, std::string("write failed: ") + strerror(errno));
    }
    data += n;
    size -= n;
  }
}

class GetCommand final: public Command {
 public:
  GetCommand(Globals& globals, bool cat): globals(globals), cat(cat) {}

  kj::MainFunc getMain() override {
    kj::MainBuilder builder(globals.context, cat ? "refctl cat" : "refctl get",
                            cat ? "Write the value of a share token or a name to stdout."
                                : "Write the value of a share token or a name to stdout or a "
                                  "file.");
    if (!cat) {
      builder.addOptionWithArg({'o', "output"}, KJ_BIND_METHOD(*this, setOutput), "<file>",
                               "Write to this file instead of stdout.");
    }
    return builder
        .addOption({"no-progress"}, KJ_BIND_METHOD(*this, setNoProgress),
                   "No progress line (it is only drawn when stderr is a terminal and the value "
                   "is not written to one).")
        .expectArg("NAME|TOKEN", KJ_BIND_METHOD(*this, get))
        .build();
  }

 private:
  kj::MainBuilder::Validity setOutput(kj::StringPtr path) {
    output = path.cStr();
    return true;
  }
  kj::MainBuilder::Validity setNoProgress() {
    progressWanted = false;
    return true;
  }

  kj::MainBuilder::Validity get(kj::StringPtr what) {
    return globals.guarded([&]() {
      Client client = globals.connect();
      // Tokens start "rs<version>." (server/token.h); anything else is a name.
      bool token = what.startsWith("rs1.") || what.startsWith("rs2.");
      Ref ref = token ? client.restore(what.cStr()) : client.lookup(what.cStr());
      int fd = STDOUT_FILENO;
      if (!output.empty()) {
        fd = open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) throw Error(ErrorCode::IO, "cannot create " + output + ": " + strerror(errno));
      }
      KJ_DEFER(if (fd != STDOUT_FILENO) close(fd));
      // A progress line on the terminal the value is written to would garble it.
      bool toTerminal = fd == STDOUT_FILENO && isatty(STDOUT_FILENO);
      if (client.sharedMemory()) {
        View view = ref.view();  // mapped: a value larger than memory is read from its file
        Progress progress("get", view.size(), progressWanted && !toTerminal);
        for (uint64_t done = 0; done < view.size();) {
          uint64_t step = std::min<uint64_t>(kStep, view.size() - done);
          writeAll(fd, view.data() + done, step);
          done += step;
          progress.update(done);
        }
        progress.finish();
      } else {
        uint64_t size = ref.size();
        Progress progress("get", size, progressWanted && !toTerminal);
        for (uint64_t done = 0; done < size;) {
          std::vector<uint8_t> bytes = ref.read(done, std::min(kStep, size - done));
          if (bytes.empty()) break;
          writeAll(fd, bytes.data(), bytes.size());
          done += bytes.size();
          progress.update(done);
        }
        progress.finish();
      }
    });
  }

  Globals& globals;
  bool cat;
  std::string output;
  bool progressWanted = true;
};

}  // namespace

std::unique_ptr<Command> newGetCommand(Globals& globals, bool cat) {
  return std::make_unique<GetCommand>(globals, cat);
}

}  // namespace refstore::tools
