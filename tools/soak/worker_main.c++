// soak_worker: one simulated client of the soak (tools/soak/README.md), a real process so that
// SIGKILLing it is a real client death. It connects to its host's refstored over the Unix
// socket and executes the coordinator's commands, one line on stdin each, answering one line
// on stdout each:
//
//   ok [WORD]            done (WORD: a share token, a count)
//   err CODE MESSAGE     refstore::Error CODE (the coordinator decides whether it was expected)
//   bad MESSAGE          the daemon answered, but wrongly: bytes or a count differ from what
//                        the coordinator said to expect (always a failure)
//
// The worker keeps no model of its own: the coordinator names every Ref and Fulfiller it holds
// by a number (H, F), says what each value must contain (SIZE and SEED of the deterministic
// pattern of tests/daemon.h, which any process can check), and judges every answer.
//
//   put H SIZE SEED KIDS          Client::put (copy path); KIDS: "-" or handles "1,2,3"
//   create H SIZE SEED KIDS       create, fill in place, seal(KIDS)
//   sealshare H SIZE SEED TTL USES   create, fill, sealAndShare        -> ok TOKEN
//   share H TTL USES                                                   -> ok TOKEN
//   restore H TOKEN
//   restoreview TOKEN SIZE SEED   restoreView and check the bytes (no Ref kept)
//   view H SIZE SEED | readall H SIZE SEED | slice H SIZE SEED OFFSET LENGTH
//   readmany H:SIZE:SEED,...      Client::readMany, every value checked
//   poll H MILLIS                 whenReady(MILLIS)
//   drop H
//   children H NEW,NEW,...|-      Ref::children, their count checked, held as NEW...
//   name H NAME | lookup H NAME | unname NAME
//   promise H F                   Client::promise: the Ref as H, the Fulfiller as F
//   fulfill F SIZE SEED KIDS | fulfillwith F H | reject F REASON | break F (drop it)
//   adopt H TOKEN ADDRESS         restore TOKEN on a second client ("-": another connection to
//                                 our own daemon; else "tcp:HOST:PORT" of another host's daemon,
//                                 with the cluster secret), Client::adopt it onto ours as H,
//                                 then drop the second client
//   quit                          drop everything, answer "ok", exit 0
#include <kj/main.h>
#include <stdio.h>
#include <stdlib.h>

#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "client/cpp/refstore_client.h"
#include "tests/daemon.h"

namespace refstore::soak {
namespace {

using testing::fillPattern;
using testing::patternByte;

// Thrown for "bad": the daemon's answer contradicts what the coordinator expects.
struct Mismatch {
  std::string what;
};

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  std::string part;
  while (std::getline(stream, part, separator)) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

uint64_t number(const std::string& text) { return std::stoull(text); }

// The first mismatching byte of `data` against pattern `seed` from `offset`, or "" if none.
std::string comparePattern(const uint8_t* data, uint64_t size, uint64_t seed, uint64_t offset) {
  for (uint64_t i = 0; i < size; i++) {
    if (data[i] != patternByte(seed, offset + i)) {
      return "byte " + std::to_string(offset + i) + " is " + std::to_string(data[i]) +
             ", pattern " + std::to_string(seed) + " has " +
             std::to_string(patternByte(seed, offset + i));
    }
  }
  return "";
}

void checkValue(const uint8_t* data, uint64_t size, uint64_t expectedSize, uint64_t seed) {
  if (size != expectedSize) {
    throw Mismatch{"size " + std::to_string(size) + ", expected " +
                   std::to_string(expectedSize)};
  }
  std::string wrong = comparePattern(data, size, seed, 0);
  if (!wrong.empty()) throw Mismatch{wrong};
}

class Worker {
 public:
  Worker(std::string socket, std::string secret, std::string label)
      : socket(std::move(socket)), secret(std::move(secret)), label(std::move(label)),
        client(connect(this->socket)) {}

  // Runs one command; returns the reply line (without its newline).
  std::string execute(const std::string& line) {
    std::vector<std::string> words = split(line, ' ');
    if (words.empty()) return "bad empty command";
    try {
      return "ok" + run(words);
    } catch (const Error& e) {
      std::string message = e.what();
      for (char& c: message) {
        if (c == '\n') c = ' ';
      }
      return std::string("err ") + errorCodeName(e.code()) + " " + message;
    } catch (const Mismatch& m) {
      return "bad " + m.what;
    }
  }

  bool quitting = false;

 private:
  Client connect(const std::string& address) {
    ConnectOptions options;
    options.address = address;
    options.clientName = label;
    if (address.rfind("tcp:", 0) == 0) options.secret = secret;
    return Client::connect(options);
  }

  Ref& ref(const std::string& handle) {
    auto found = refs.find(number(handle));
    if (found == refs.end()) throw std::logic_error("no Ref " + handle);
    return found->second;
  }

  Fulfiller& fulfiller(const std::string& handle) {
    auto found = fulfillers.find(number(handle));
    if (found == fulfillers.end()) throw std::logic_error("no Fulfiller " + handle);
    return found->second;
  }

  std::vector<const Ref*> kids(const std::string& list) {
    std::vector<const Ref*> out;
    if (list == "-") return out;
    for (auto& handle: split(list, ',')) out.push_back(&ref(handle));
    return out;
  }

  void hold(const std::string& handle, Ref value) {
    refs.erase(number(handle));
    refs.emplace(number(handle), std::move(value));
  }

  static std::vector<uint8_t> pattern(uint64_t size, uint64_t seed) {
    std::vector<uint8_t> bytes(size);
    fillPattern(bytes.data(), size, seed);
    return bytes;
  }

  WriteBuffer filledBuffer(uint64_t size, uint64_t seed) {
    WriteBuffer buffer = client.create(size);
    fillPattern(buffer.data(), size, seed);
    return buffer;
  }

  // Returns what follows "ok" in the reply.
  std::string run(const std::vector<std::string>& w) {
    const std::string& command = w[0];
    // Promises are waited for at most this long: an owner that died fails them sooner
    // (OWNER_LOST), so a longer wait is a hang the coordinator reports.
    constexpr double kWaitSeconds = 60;
    if (command == "put") {
      auto bytes = pattern(number(w[2]), number(w[3]));
      hold(w[1], client.put(bytes.data(), bytes.size(), kids(w[4])));
    } else if (command == "create") {
      hold(w[1], filledBuffer(number(w[2]), number(w[3])).seal(kids(w[4])));
    } else if (command == "sealshare") {
      SharedValue shared = filledBuffer(number(w[2]), number(w[3]))
                               .sealAndShare(uint32_t(number(w[4])), uint32_t(number(w[5])));
      hold(w[1], std::move(shared.ref));
      return " " + shared.token;
    } else if (command == "share") {
      return " " + ref(w[1]).share(uint32_t(number(w[2])), uint32_t(number(w[3])));
    } else if (command == "restore") {
      hold(w[1], client.restore(w[2]));
    } else if (command == "restoreview") {
      View view = client.restoreView(w[1], kWaitSeconds);
      checkValue(view.data(), view.size(), number(w[2]), number(w[3]));
    } else if (command == "view") {
      View view = ref(w[1]).view(kWaitSeconds);
      checkValue(view.data(), view.size(), number(w[2]), number(w[3]));
    } else if (command == "readall") {
      auto bytes = ref(w[1]).readAll(kWaitSeconds);
      checkValue(bytes.data(), bytes.size(), number(w[2]), number(w[3]));
    } else if (command == "slice") {
      uint64_t offset = number(w[4]), length = number(w[5]);
      auto bytes = ref(w[1]).read(offset, length);
      if (bytes.size() != length) {
        throw Mismatch{"read " + std::to_string(bytes.size()) + " bytes at " +
                       std::to_string(offset) + ", expected " + std::to_string(length)};
      }
      std::string wrong = comparePattern(bytes.data(), length, number(w[3]), offset);
      if (!wrong.empty()) throw Mismatch{wrong};
    } else if (command == "readmany") {
      std::vector<const Ref*> which;
      std::vector<std::pair<uint64_t, uint64_t>> expected;
      for (auto& item: split(w[1], ',')) {
        auto parts = split(item, ':');
        which.push_back(&ref(parts.at(0)));
        expected.emplace_back(number(parts.at(1)), number(parts.at(2)));
      }
      auto values = client.readMany(which);
      if (values.size() != which.size()) throw Mismatch{"readMany answered a wrong count"};
      for (size_t i = 0; i < values.size(); i++) {
        try {
          checkValue(values[i].data(), values[i].size(), expected[i].first, expected[i].second);
        } catch (Mismatch& m) {
          throw Mismatch{"value " + std::to_string(i) + ": " + m.what};
        }
      }
    } else if (command == "poll") {
      ref(w[1]).whenReady(number(w[2]) / 1000.0);
    } else if (command == "drop") {
      refs.erase(number(w[1]));
    } else if (command == "children") {
      std::vector<Ref> children = ref(w[1]).children();
      std::vector<std::string> handles = w[2] == "-" ? std::vector<std::string>{}
                                                     : split(w[2], ',');
      if (children.size() != handles.size()) {
        throw Mismatch{"children: " + std::to_string(children.size()) + ", expected " +
                       std::to_string(handles.size())};
      }
      for (size_t i = 0; i < handles.size(); i++) hold(handles[i], std::move(children[i]));
    } else if (command == "name") {
      ref(w[1]).saveAs(w[2]);
    } else if (command == "lookup") {
      hold(w[1], client.lookup(w[2]));
    } else if (command == "unname") {
      client.unname(w[1]);
    } else if (command == "promise") {
      Promise promise = client.promise();
      hold(w[1], std::move(promise.ref));
      fulfillers.erase(number(w[2]));
      fulfillers.emplace(number(w[2]), std::move(promise.fulfiller));
    } else if (command == "fulfill") {
      auto bytes = pattern(number(w[2]), number(w[3]));
      fulfiller(w[1]).fulfill(bytes.data(), bytes.size(), kids(w[4]));
      fulfillers.erase(number(w[1]));
    } else if (command == "fulfillwith") {
      fulfiller(w[1]).fulfillWith(ref(w[2]));
      fulfillers.erase(number(w[1]));
    } else if (command == "reject") {
      fulfiller(w[1]).reject(w[2]);
      fulfillers.erase(number(w[1]));
    } else if (command == "break") {
      fulfiller(w[1]);  // it must exist
      fulfillers.erase(number(w[1]));
    } else if (command == "adopt") {
      Client side = connect(w[3] == "-" ? socket : w[3]);
      Ref received = side.restore(w[2]);
      hold(w[1], client.adopt(received));
    } else if (command == "quit") {
      fulfillers.clear();
      refs.clear();
      quitting = true;
    } else {
      throw std::logic_error("unknown command " + command);
    }
    return "";
  }

  std::string socket, secret, label;
  Client client;
  std::map<uint64_t, Ref> refs;
  std::map<uint64_t, Fulfiller> fulfillers;
};

class WorkerMain {
 public:
  explicit WorkerMain(kj::ProcessContext& context): context(context) {}

  kj::MainFunc getMain() {
    return kj::MainBuilder(context, "soak_worker",
                           "One client process of the soak (tools/soak/README.md): executes the "
                           "coordinator's commands from stdin, one reply line each on stdout.")
        .addOptionWithArg({"socket"}, KJ_BIND_METHOD(*this, setSocket), "<path>",
                          "Unix socket of this host's refstored.")
        .addOptionWithArg({"secret-file"}, KJ_BIND_METHOD(*this, setSecretFile), "<file>",
                          "Cluster secret, for TCP connections to other hosts' daemons.")
        .addOptionWithArg({"label"}, KJ_BIND_METHOD(*this, setLabel), "<name>",
                          "Client label shown in the daemon's listings.")
        .callAfterParsing(KJ_BIND_METHOD(*this, run))
        .build();
  }

 private:
  kj::MainBuilder::Validity setSocket(kj::StringPtr path) {
    socket = path.cStr();
    return true;
  }
  kj::MainBuilder::Validity setSecretFile(kj::StringPtr path) {
    std::ifstream in(path.cStr());
    if (!in) return "cannot read the secret file";
    std::getline(in, secret, '\0');
    return true;
  }
  kj::MainBuilder::Validity setLabel(kj::StringPtr name) {
    label = name.cStr();
    return true;
  }

  kj::MainBuilder::Validity run() {
    if (socket.empty()) return "--socket is required";
    {
      Worker worker(socket, secret, label);
      std::string line;
      while (std::getline(std::cin, line)) {
        std::string reply;
        try {
          reply = worker.execute(line);
        } catch (const std::exception& e) {
          // Not a refstore::Error: a bug of the soak or of the client library.
          reply = std::string("err EXCEPTION ") + e.what();
        }
        std::cout << reply << std::endl;
        if (worker.quitting) break;
      }
    }  // the connection closes here, after every Ref and Fulfiller
    return true;
  }

  kj::ProcessContext& context;
  std::string socket, secret, label;
};

}  // namespace
}  // namespace refstore::soak

KJ_MAIN(refstore::soak::WorkerMain)
