// refctl put FILE|-: store a file or standard input, print a share token (or pin a name).
#include <stdio.h>
#include <stdlib.h>

#include <vector>

#include "tools/refctl/command.h"
#include "tools/refctl/format.h"
#include "tools/refctl/input.h"
#include "tools/refctl/progress.h"

namespace refstore::tools {

namespace {

// Bytes moved per step: large enough to stream at memory speed, small enough to show progress
// and to bound refctl's own buffer on the copy path.
constexpr uint64_t kStep = 8 << 20;

class PutCommand final: public Command {
 public:
  explicit PutCommand(Globals& globals): globals(globals) {}

  kj::MainFunc getMain() override {
    return kj::MainBuilder(globals.context, "refctl put",
                           "Store FILE, or standard input if FILE is -, and print a share token "
                           "for it (or pin it under a name). Large files stream: they are never "
                           "read whole into refctl's memory, and a value larger than refstored's "
                           "memory becomes a file-backed value.")
        .addOptionWithArg({"ttl"}, KJ_BIND_METHOD(*this, setTtl), "<seconds>",
                          "How long the token (and so the value) lives (default 3600).")
        .addOptionWithArg({"name"}, KJ_BIND_METHOD(*this, setName), "<name>",
                          "Pin the value under NAME instead of printing a token; it lives until "
                          "`refctl unname NAME`.")
        .addOption({"json"}, KJ_BIND_METHOD(*this, setJson),
                   "Print {\"token\": ..., \"size\": ...} (or \"name\") instead.")
        .addOption({"no-progress"}, KJ_BIND_METHOD(*this, setNoProgress),
                   "No progress line (it is only drawn on a terminal anyway).")
        .expectArg("FILE|-", KJ_BIND_METHOD(*this, put))
        .build();
  }

 private:
  kj::MainBuilder::Validity setTtl(kj::StringPtr text) {
    char* end;
    unsigned long value = strtoul(text.cStr(), &end, 10);
    if (*end != '\0' || value == 0 || value > 0xffffffffUL) return "ttl must be a positive integer";
    ttlSeconds = value;
    return true;
  }
  kj::MainBuilder::Validity setName(kj::StringPtr value) {
    name = value.cStr();
    return true;
  }
  kj::MainBuilder::Validity setJson() {
    json = true;
    return true;
  }
  kj::MainBuilder::Validity setNoProgress() {
    progressWanted = false;
    return true;
  }

  kj::MainBuilder::Validity put(kj::StringPtr path) {
    return globals.guarded([&]() {
      Input input(path.cStr());
      if (input.size() == 0) {
        throw Error(ErrorCode::INVALID_ARGUMENT,
                    std::string(path == "-" ? "standard input" : path.cStr()) +
                        " is empty: refstore values are at least 1 byte");
      }
      Client client = globals.connect();
      WriteBuffer buffer = client.create(input.size());
      Progress progress("put", input.size(), progressWanted);
      if (uint8_t* target = buffer.data()) {
        // Shared memory (or a file-backed value's mapping): read straight into it.
        for (uint64_t done = 0; done < input.size();) {
          uint64_t step = std::min(kStep, input.size() - done);
          input.read(done, target + done, step);
          done += step;
          progress.update(done);
        }
      } else {
        // The copy path (TCP): one step's buffer at a time.
        std::vector<uint8_t> chunk(std::min(kStep, input.size()));
        for (uint64_t done = 0; done < input.size();) {
          uint64_t step = std::min(kStep, input.size() - done);
          input.read(done, chunk.data(), step);
          buffer.write(done, chunk.data(), step);
          done += step;
          progress.update(done);
        }
      }
      Ref ref = buffer.seal();
      progress.finish();
      std::string printed, key;
      if (!name.empty()) {
        ref.saveAs(name);
        printed = name;
        key = "name";
      } else {
        printed = ref.share(ttlSeconds);
        key = "token";
      }
      if (json) {
        printf("{\"%s\": %s, \"size\": %llu}\n", key.c_str(), jsonString(printed).c_str(),
               (unsigned long long)input.size());
      } else {
        printf("%s\n", printed.c_str());
      }
    });
  }

  Globals& globals;
  std::string name;
  uint32_t ttlSeconds = 3600;
  bool json = false;
  bool progressWanted = true;
};

}  // namespace

std::unique_ptr<Command> newPutCommand(Globals& globals) {
  return std::make_unique<PutCommand>(globals);
}

}  // namespace refstore::tools
