// refctl: command-line access to refstored (put a file, get a value, stats, list objects).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include <kj/main.h>

#include "client/cpp/refstore_client.h"

namespace refstore::tools {
namespace {

// JSON string escaping for labels (the only free text we print).
std::string jsonString(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c: text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c < 0x20) {
      char escaped[8];
      snprintf(escaped, sizeof(escaped), "\\u%04x", c);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

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

class RefctlMain {
 public:
  explicit RefctlMain(kj::ProcessContext& context): context(context) {}

  kj::MainFunc getMain() {
    return kj::MainBuilder(context, "refctl 0.1",
                           "Command-line client for refstored. The socket defaults to "
                           "$REFSTORE_SOCKET or refstored's default.")
        .addOptionWithArg({'s', "socket"}, KJ_BIND_METHOD(*this, setSocket), "<address>",
                          "refstored address: a socket path, unix:<path> or tcp:<host:port>.")
        .addSubCommand("put", KJ_BIND_METHOD(*this, putCommand), "store a file, print a token")
        .addSubCommand("get", KJ_BIND_METHOD(*this, getCommand), "write the value of a token")
        .addSubCommand("stats", KJ_BIND_METHOD(*this, statsCommand), "daemon counters")
        .addSubCommand("ls", KJ_BIND_METHOD(*this, lsCommand), "list live objects")
        .addSubCommand("unname", KJ_BIND_METHOD(*this, unnameCommand), "drop a name pin")
        .build();
  }

 private:
  kj::MainBuilder::Validity setSocket(kj::StringPtr address) {
    socket = address.cStr();
    return true;
  }

  Client connect() {
    ConnectOptions options;
    options.address = socket;
    options.clientName = "refctl";
    return Client::connect(options);
  }

  // Runs a command body, turning client errors into a clean message and exit status 1.
  template <typename Body>
  kj::MainBuilder::Validity guarded(Body&& body) {
    try {
      body();
      // KJ_MAIN exits with _exit(), which does not flush stdio.
      fflush(stdout);
      return true;
    } catch (const Error& e) {
      context.exitError(kj::str("refctl: ", e.what()));
    }
    // exitError never returns (KJ_NORETURN), but g++ does not see that through the virtual
    // call and would warn that control reaches the end of a non-void function.
    KJ_UNREACHABLE;
  }

  // --- put ---------------------------------------------------------------------------------
  kj::MainFunc putCommand() {
    return kj::MainBuilder(context, "refctl put",
                           "Store FILE; print a share token for it (or pin it under a name).")
        .addOptionWithArg({"ttl"}, KJ_BIND_METHOD(*this, setTtl), "<seconds>",
                          "How long the token (and so the value) lives (default 3600).")
        .addOptionWithArg({"name"}, KJ_BIND_METHOD(*this, setName), "<name>",
                          "Pin the value under NAME instead of printing a token; it lives until "
                          "`refctl unname NAME`.")
        .expectArg("FILE", KJ_BIND_METHOD(*this, put))
        .build();
  }
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
  kj::MainBuilder::Validity put(kj::StringPtr path) {
    int fd = open(path.cStr(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kj::str("cannot open ", path, ": ", strerror(errno));
    KJ_DEFER(close(fd));
    struct stat info;
    if (fstat(fd, &info) < 0) return kj::str("cannot stat ", path, ": ", strerror(errno));
    if (info.st_size == 0) return kj::str(path, " is empty: refstore values are at least 1 byte");
    return guarded([&]() {
      Client client = connect();
      WriteBuffer buffer = client.create(info.st_size);
      std::vector<uint8_t> staging;
      uint8_t* target = buffer.data();
      if (target == nullptr) {
        staging.resize(info.st_size);
        target = staging.data();
      }
      for (uint64_t done = 0; done < uint64_t(info.st_size);) {
        ssize_t n = ::pread(fd, target + done, info.st_size - done, done);
        if (n <= 0) throw Error(ErrorCode::IO, std::string("read failed: ") + strerror(errno));
        done += n;
      }
      if (!staging.empty()) buffer.write(0, staging.data(), staging.size());
      Ref ref = buffer.seal();
      if (!name.empty()) {
        ref.saveAs(name);
        printf("%s\n", name.c_str());
      } else {
        printf("%s\n", ref.share(ttlSeconds).c_str());
      }
    });
  }

  // --- get ---------------------------------------------------------------------------------
  kj::MainFunc getCommand() {
    return kj::MainBuilder(context, "refctl get",
                           "Write the value of a share token or a name to stdout or a file.")
        .addOptionWithArg({'o', "output"}, KJ_BIND_METHOD(*this, setOutput), "<file>",
                          "Write to this file instead of stdout.")
        .expectArg("NAME|TOKEN", KJ_BIND_METHOD(*this, get))
        .build();
  }
  kj::MainBuilder::Validity setOutput(kj::StringPtr path) {
    output = path.cStr();
    return true;
  }
  kj::MainBuilder::Validity get(kj::StringPtr what) {
    return guarded([&]() {
      Client client = connect();
      // Tokens have a fixed prefix; anything else is a name.
      Ref ref = what.startsWith("rs1.") ? client.restore(what.cStr()) : client.lookup(what.cStr());
      int fd = STDOUT_FILENO;
      if (!output.empty()) {
        fd = open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) throw Error(ErrorCode::IO, "cannot create " + output + ": " + strerror(errno));
      }
      KJ_DEFER(if (fd != STDOUT_FILENO) close(fd));
      if (client.sharedMemory()) {
        View view = ref.view();
        writeAll(fd, view.data(), view.size());
      } else {
        std::vector<uint8_t> bytes = ref.readAll();
        writeAll(fd, bytes.data(), bytes.size());
      }
    });
  }

  // --- stats -------------------------------------------------------------------------------
  kj::MainFunc statsCommand() {
    return kj::MainBuilder(context, "refctl stats", "Print the daemon's counters.")
        .addOption({"json"}, KJ_BIND_METHOD(*this, setJson), "One JSON object.")
        .callAfterParsing(KJ_BIND_METHOD(*this, stats))
        .build();
  }
  kj::MainBuilder::Validity setJson() {
    json = true;
    return true;
  }
  kj::MainBuilder::Validity stats() {
    return guarded([&]() {
      Client client = connect();
      Stats s = client.stats();
      // `clients` includes this refctl connection.
      const std::pair<const char*, uint64_t> fields[] = {
          {"objects", s.objects},         {"bytes_used", s.bytesUsed},
          {"capacity", s.capacity},       {"clients", s.clients},
          {"segments", s.segments},       {"segment_bytes", s.segmentBytes},
          {"holders", s.holders},         {"tokens", s.tokens},
          {"pinned_dead", s.pinnedDead},  {"creating", s.creating},
          {"sealed", s.sealed},           {"uptime_ms", s.uptimeMs},
          {"puts_total", s.putsTotal},    {"reclaimed_total", s.reclaimedTotal},
          {"promised", s.promised},       {"failed", s.failed},
          {"names", s.names},
          {"bytes_in_memory", s.bytesUsed},
          {"spilled", s.spilled},         {"bytes_spilled", s.spilledBytes},
          {"spill_files", s.spillFiles},  {"spills_total", s.spillsTotal},
          {"spilled_bytes_total", s.spilledBytesTotal},
          {"restores_total", s.restoresTotal},
          {"restored_bytes_total", s.restoredBytesTotal},
          {"spill_failures_total", s.spillFailuresTotal},
          {"file_backed_bytes", s.fileBackedBytes},
          {"queue_length", s.queueLength},
          {"oldest_waiter_ms", s.oldestWaiterMs},
          {"background_hashes_total", s.backgroundHashesTotal},
          {"last_reclaim_mono_us", s.lastReclaimMonoUs},
      };
      if (json) {
        printf("{");
        bool first = true;
        for (auto& field: fields) {
          printf("%s\"%s\": %llu", first ? "" : ", ", field.first,
                 (unsigned long long)field.second);
          first = false;
        }
        printf("}\n");
      } else {
        for (auto& field: fields) printf("%-16s %llu\n", field.first, (unsigned long long)field.second);
      }
    });
  }

  // --- ls ----------------------------------------------------------------------------------
  kj::MainFunc lsCommand() {
    return kj::MainBuilder(context, "refctl ls", "List live objects and who holds them.")
        .addOption({"json"}, KJ_BIND_METHOD(*this, setJson), "A JSON array, one entry per object.")
        .addOption({"leaks"}, KJ_BIND_METHOD(*this, setLeaks),
                   "Only objects kept alive solely by clients that have held them longer than "
                   "--threshold (no name, token or parent keeps them).")
        .addOptionWithArg({"threshold"}, KJ_BIND_METHOD(*this, setThreshold), "<seconds>",
                          "Age that makes a sole hold a suspected leak (default 300).")
        .callAfterParsing(KJ_BIND_METHOD(*this, ls))
        .build();
  }
  kj::MainBuilder::Validity setLeaks() {
    leaksOnly = true;
    return true;
  }
  kj::MainBuilder::Validity setThreshold(kj::StringPtr text) {
    char* end;
    double value = strtod(text.cStr(), &end);
    if (*end != '\0' || value < 0) return "threshold must be a non-negative number of seconds";
    leakThresholdMs = value * 1000;
    return true;
  }
  bool isSuspectedLeak(const ObjectListing& o) const {
    if (o.holders.empty() || o.tokens > 0 || !o.names.empty() || !o.parents.empty()) return false;
    for (auto& holder: o.holders) {
      if (holder.heldMs < leakThresholdMs) return false;
    }
    return true;
  }
  static std::string jsonIds(const std::vector<ObjectId>& ids) {
    std::string out = "[";
    for (size_t i = 0; i < ids.size(); i++) out += (i ? ", \"" : "\"") + ids[i].hex() + "\"";
    return out + "]";
  }
  kj::MainBuilder::Validity ls() {
    return guarded([&]() {
      Client client = connect();
      std::vector<ObjectListing> objects;
      for (auto& o: client.list()) {
        if (!leaksOnly || isSuspectedLeak(o)) objects.push_back(std::move(o));
      }
      if (json) {
        printf("[");
        for (size_t i = 0; i < objects.size(); i++) {
          auto& o = objects[i];
          printf("%s{\"id\": \"%s\", \"size\": %llu, \"state\": \"%s\", \"dead\": %s, "
                 "\"holders\": [", i ? ", " : "", o.info.id.hex().c_str(),
                 (unsigned long long)o.info.size, o.info.state.c_str(), o.dead ? "true" : "false");
          for (size_t h = 0; h < o.holders.size(); h++) {
            printf("%s{\"client\": %llu, \"label\": %s, \"pid\": %d, \"held_ms\": %llu}",
                   h ? ", " : "", (unsigned long long)o.holders[h].clientId,
                   jsonString(o.holders[h].label).c_str(), o.holders[h].pid,
                   (unsigned long long)o.holders[h].heldMs);
          }
          printf("], \"tokens\": [");
          for (size_t t = 0; t < o.tokenExpiriesMs.size(); t++) {
            printf("%s{\"expires_in_ms\": %llu}", t ? ", " : "",
                   (unsigned long long)o.tokenExpiriesMs[t]);
          }
          printf("], \"names\": [");
          for (size_t n = 0; n < o.names.size(); n++) {
            printf("%s%s", n ? ", " : "", jsonString(o.names[n]).c_str());
          }
          printf("], \"parents\": %s, \"children\": %s, \"pins\": %u, \"age_ms\": %llu}",
                 jsonIds(o.parents).c_str(), jsonIds(o.children).c_str(), o.pins,
                 (unsigned long long)o.ageMs);
        }
        printf("]\n");
        return;
      }
      printf("%-32s %12s %-9s %6s %4s  %-24s %s\n", "ID", "SIZE", "STATE", "TOKENS", "PINS",
             "NAMES", "HELD BY");
      for (auto& o: objects) {
        std::string heldBy, names;
        for (auto& h: o.holders) {
          if (!heldBy.empty()) heldBy += ", ";
          heldBy += (h.label.empty() ? "?" : h.label) + "[" + std::to_string(h.pid) + "] " +
                    std::to_string(h.heldMs / 1000) + "s";
        }
        for (auto& n: o.names) names += (names.empty() ? "" : ",") + n;
        if (!o.parents.empty()) heldBy += (heldBy.empty() ? "" : ", ") + std::to_string(o.parents.size()) + " parent(s)";
        printf("%-32s %12llu %-9s %6u %4u  %-24s %s\n", o.info.id.hex().c_str(),
               (unsigned long long)o.info.size, o.dead ? "dead" : o.info.state.c_str(),
               o.tokens, o.pins, names.c_str(), heldBy.c_str());
      }
    });
  }

  // --- unname ------------------------------------------------------------------------------
  kj::MainFunc unnameCommand() {
    return kj::MainBuilder(context, "refctl unname",
                           "Drop the name pin NAME; the value is freed if nothing else holds it.")
        .expectArg("NAME", KJ_BIND_METHOD(*this, unname))
        .build();
  }
  kj::MainBuilder::Validity unname(kj::StringPtr target) {
    return guarded([&]() { connect().unname(target.cStr()); });
  }

  kj::ProcessContext& context;
  std::string socket;
  std::string output;
  std::string name;
  uint32_t ttlSeconds = 3600;
  bool json = false;
  bool leaksOnly = false;
  uint64_t leakThresholdMs = 300000;
};

}  // namespace
}  // namespace refstore::tools

KJ_MAIN(refstore::tools::RefctlMain)
