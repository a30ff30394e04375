// refctl unname NAME: drop a name pin.
#include "tools/refctl/command.h"

namespace refstore::tools {

namespace {

class UnnameCommand final: public Command {
 public:
  explicit UnnameCommand(Globals& globals): globals(globals) {}

  kj::MainFunc getMain() override {
    return kj::MainBuilder(globals.context, "refctl unname",
                           "Drop the name pin NAME; the value is freed if nothing else holds it.")
        .expectArg("NAME", KJ_BIND_METHOD(*this, unname))
        .build();
  }

 private:
  kj::MainBuilder::Validity unname(kj::StringPtr target) {
    return globals.guarded([&]() { globals.connect().unname(target.cStr()); });
  }

  Globals& globals;
};

}  // namespace

std::unique_ptr<Command> newUnnameCommand(Globals& globals) {
  return std::make_unique<UnnameCommand>(globals);
}

}  // namespace refstore::tools
