// Workload 3: small objects, 64 B .. 64 KiB. Operations per second of one "put + get" pair:
//
//   refstore, unpipelined: the public blocking C++ client. put (copy path, one round trip),
//     view (one round trip, zero-copy), read every byte, drop the View and the Ref (Release
//     messages, no round trip: the value is freed).
//   refstore, pipelined (depth D): the client's asynchronous API (refstore_async.h). D puts and,
//     pipelined on each put's returned Ref (Cap'n Proto promise pipelining), D views, all sent
//     before waiting: one round trip for the batch.
//   refstore read, unpipelined / pipelined: the same, but the get is Ref.read, the copy path: the
//     bytes come back inline in the reply, no View capability, no segment descriptor, no
//     Release for either. Not the zero-copy path, but what a small value is cheapest by.
//   refstore batched (depth D): Store.putMany of D values, then Store.readMany of their D Refs:
//     two round trips and two calls for D pairs (at depth 1, one value per call).
//   Redis, unpipelined: SET key value, GET key (two round trips), read every byte.
//   Redis, pipelined (depth D): D SETs and D GETs appended, then 2D replies read.
//
// Each at one client and at eight (eight threads, each with its own connection), the daemon and
// Redis both being single-threaded servers. Rates are measured in fixed time windows, refstore's
// and Redis's windows alternating (both sets of clients stay connected throughout).
#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "client/cpp/refstore_client.h"
#include "client/cpp/refstore_async.h"
#include "tools/bench/bytes.h"
#include "tools/bench/timing.h"
#include "tools/bench/workloads.h"

namespace refbench {
namespace {

constexpr int kDepth = 16;

// One client's operation, set up and run on its own thread. run() does one batch and returns
// how many put+get pairs it completed.
struct Operation {
  virtual ~Operation() noexcept(false) = default;  // KJ members may throw on destruction
  virtual size_t run() = 0;
};

struct RefstoreOp final: Operation {
  RefstoreOp(const std::string& socket, uint64_t size)
      : client(refstore::Client::connect(socket)), value(size) {
    fillPattern(value.data(), size, 11);
  }
  size_t run() override {
    refstore::Ref ref = client.put(value.data(), value.size());
    refstore::View view = ref.view();
    volatile uint64_t sum = checksum(view.data(), view.size());
    (void)sum;
    return 1;
  }
  refstore::Client client;
  WarmBuffer value;
};

struct RefstorePipelinedOp final: Operation {
  RefstorePipelinedOp(const std::string& socket, uint64_t size)
      : client(refstore::Client::connect(socket)), value(size) {
    fillPattern(value.data(), size, 12);
  }
  size_t run() override {
    auto& io = refstore::async::ioContext(client);
    auto store = refstore::async::store(client);
    auto puts = kj::heapArrayBuilder<kj::Promise<void>>(kDepth);
    auto views = kj::heapArrayBuilder<kj::Promise<refstore::View>>(kDepth);
    std::vector<refstore::Ref> refs;
    refs.reserve(kDepth);
    for (int i = 0; i < kDepth; i++) {
      auto request = store.putRequest();
      request.setData(kj::arrayPtr(value.data(), value.size()));
      auto put = request.send();
      refs.push_back(refstore::async::wrap(client, put.getRef()));  // usable before the answer
      views.add(refstore::async::view(refs.back()));               // pipelined on it
      puts.add(put.ignoreResult());
    }
    auto viewed = kj::joinPromises(views.finish()).wait(io.waitScope);
    kj::joinPromises(puts.finish()).wait(io.waitScope);
    for (auto& view: viewed) {
      volatile uint64_t sum = checksum(view.data(), view.size());
      (void)sum;
    }
    return kDepth;
  }
  refstore::Client client;
  WarmBuffer value;
};

struct RefstoreReadOp final: Operation {
  RefstoreReadOp(const std::string& socket, uint64_t size, bool pipelined)
      : client(refstore::Client::connect(socket)), value(size), pipelined(pipelined) {
    fillPattern(value.data(), size, 14);
  }
  size_t run() override {
    if (!pipelined) {
      refstore::Ref ref = client.put(value.data(), value.size());
      std::vector<uint8_t> bytes = ref.read(0, value.size());
      volatile uint64_t sum = checksum(bytes.data(), bytes.size());
      (void)sum;
      return 1;
    }
    auto& io = refstore::async::ioContext(client);
    auto store = refstore::async::store(client);
    auto reads = kj::heapArrayBuilder<kj::Promise<void>>(kDepth);
    for (int i = 0; i < kDepth; i++) {
      auto request = store.putRequest();
      request.setData(kj::arrayPtr(value.data(), value.size()));
      auto put = request.send();
      auto read = put.getRef().readRequest();  // pipelined on the put's answer
      read.setOffset(0);
      read.setLength(value.size());
      reads.add(read.send().then([](auto reply) {
        auto data = reply.getData();
        volatile uint64_t sum = checksum(data.begin(), data.size());
        (void)sum;
      }).attach(kj::mv(put)));
    }
    kj::joinPromises(reads.finish()).wait(io.waitScope);
    return kDepth;
  }
  refstore::Client client;
  WarmBuffer value;
  bool pipelined;
};

struct RefstoreBatchedOp final: Operation {
  RefstoreBatchedOp(const std::string& socket, uint64_t size, int depth)
      : client(refstore::Client::connect(socket)), value(size), depth(depth) {
    fillPattern(value.data(), size, 15);
  }
  size_t run() override {
    std::vector<refstore::Bytes> values(depth, refstore::Bytes{value.data(), value.size()});
    std::vector<refstore::Ref> refs = client.putMany(values);
    std::vector<const refstore::Ref*> pointers;
    for (auto& ref: refs) pointers.push_back(&ref);
    for (auto& bytes: client.readMany(pointers)) {
      volatile uint64_t sum = checksum(bytes.data(), bytes.size());
      (void)sum;
    }
    return depth;
  }
  refstore::Client client;
  WarmBuffer value;
  int depth;
};

struct RedisOp final: Operation {
  RedisOp(const std::string& socket, uint64_t size, int thread, bool pipelined)
      : redis(redisConnectUnix(socket.c_str())), value(size), pipelined(pipelined) {
    if (redis == nullptr || redis->err) throw std::runtime_error("cannot connect to Redis");
    fillPattern(value.data(), size, 13);
    for (int i = 0; i < kDepth; i++) keys.push_back("k" + std::to_string(thread) + ":" + std::to_string(i));
  }
  ~RedisOp() { redisFree(redis); }
  size_t run() override {
    int depth = pipelined ? kDepth : 1;
    if (!pipelined) {
      command("SET %b %b", keys[0], true);
      consume(command("GET %b", keys[0], false));
      return 1;
    }
    for (int i = 0; i < depth; i++) {
      redisAppendCommand(redis, "SET %b %b", keys[i].data(), keys[i].size(), value.data(),
                         value.size());
    }
    for (int i = 0; i < depth; i++) {
      redisAppendCommand(redis, "GET %b", keys[i].data(), keys[i].size());
    }
    for (int i = 0; i < 2 * depth; i++) {
      void* reply = nullptr;
      if (redisGetReply(redis, &reply) != REDIS_OK) throw std::runtime_error("Redis reply failed");
      if (i >= depth) consume(static_cast<redisReply*>(reply));
      else freeReplyObject(reply);
    }
    return depth;
  }
  redisReply* command(const char* format, const std::string& key, bool withValue) {
    void* reply = withValue ? redisCommand(redis, format, key.data(), key.size(), value.data(),
                                           value.size())
                            : redisCommand(redis, format, key.data(), key.size());
    if (reply == nullptr) throw std::runtime_error("Redis command failed");
    if (withValue) {
      freeReplyObject(reply);
      return nullptr;
    }
    return static_cast<redisReply*>(reply);
  }
  void consume(redisReply* reply) {
    if (reply->type != REDIS_REPLY_STRING) throw std::runtime_error("Redis GET: no value");
    volatile uint64_t sum = checksum(reinterpret_cast<const uint8_t*>(reply->str), reply->len);
    (void)sum;
    freeReplyObject(reply);
  }
  redisContext* redis;
  WarmBuffer value;
  bool pipelined;
  std::vector<std::string> keys;
};

using Factory = std::function<std::unique_ptr<Operation>(int thread)>;

// Connects `clients` clients of every group (each on its own thread, with its own connection)
// and runs measurement windows group by group in rotation: a warm-up window per group, then
// `reps` measured windows per group. Returns, per group, the aggregate put+get pairs per second
// of each measured window.
std::vector<std::vector<double>> alternatingRates(int clients, int reps, double window,
                                                  const std::vector<Factory>& groups) {
  int total = clients * int(groups.size());
  int rounds = (reps + 1) * int(groups.size());  // the first round per group is a warm-up
  std::mutex mutex;
  std::condition_variable changed;
  int ready = 0, finished = 0;
  int round = -1;          // the round now running (set by the coordinator)
  double windowStart = 0;  // when it starts
  std::vector<size_t> counts(total);
  std::vector<double> ends(total);
  std::exception_ptr error;

  std::vector<std::thread> threads;
  for (int t = 0; t < total; t++) {
    threads.emplace_back([&, t]() {
      int group = t / clients;
      std::unique_ptr<Operation> op;
      try {
        op = groups[group](t % clients);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!error) error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        ready++;
        changed.notify_all();
      }
      for (int r = group; r < rounds; r += int(groups.size())) {
        double start;
        {
          std::unique_lock<std::mutex> lock(mutex);
          changed.wait(lock, [&]() { return round == r; });
          start = windowStart;
        }
        size_t ops = 0;
        double end = start;
        if (op) {
          while (now() < start) {}
          try {
            do {
              ops += op->run();
              end = now();
            } while (end < start + window);
          } catch (...) {
            std::lock_guard<std::mutex> lock(mutex);
            if (!error) error = std::current_exception();
          }
        }
        std::lock_guard<std::mutex> lock(mutex);
        counts[t] = ops;
        ends[t] = end;
        finished++;
        changed.notify_all();
      }
      op.reset();  // disconnect on this thread, where the connection lives
    });
  }

  std::vector<std::vector<double>> rates(groups.size());
  {
    std::unique_lock<std::mutex> lock(mutex);
    changed.wait(lock, [&]() { return ready == total; });
  }
  for (int r = 0; r < rounds; r++) {
    std::unique_lock<std::mutex> lock(mutex);
    int group = r % int(groups.size());
    finished = 0;
    windowStart = now() + 0.002;  // the group's clients start together
    round = r;
    changed.notify_all();
    changed.wait(lock, [&]() { return finished == clients; });
    size_t pairs = 0;
    double last = windowStart;
    for (int t = group * clients; t < (group + 1) * clients; t++) {
      pairs += counts[t];
      last = std::max(last, ends[t]);
    }
    if (r >= int(groups.size())) rates[group].push_back(pairs / (last - windowStart));
  }
  for (auto& thread: threads) thread.join();
  if (error) std::rethrow_exception(error);
  return rates;
}

double geometricMean(const std::vector<double>& values) {
  double logSum = 0;
  for (double v: values) logSum += std::log(v);
  return values.empty() ? 0 : std::exp(logSum / values.size());
}

}  // namespace

void runSmallOps(Context& ctx) {
  std::vector<uint64_t> sizes =
      ctx.quick() ? std::vector<uint64_t>{64, 4 * KiB, 64 * KiB} : sizeRange(64, 64 * KiB, 4);
  if (!ctx.options.smallSizes.empty()) sizes = ctx.options.smallSizes;
  auto wanted = [&](int clients, bool pipelined) {
    auto& modes = ctx.options.smallModes;
    std::string mode = std::to_string(clients) + "x" + (pipelined ? std::to_string(kDepth) : "1");
    return modes.empty() || std::find(modes.begin(), modes.end(), mode) != modes.end();
  };
  double window = ctx.quick() ? 0.05 : 0.2;
  int reps = ctx.options.reps > 0 ? ctx.options.reps : std::min(ctx.reps, 5);
  std::string refstoreSocket = ctx.daemon->socket(), redisSocket = ctx.redis->socket();

  std::vector<std::string> columns = {"size_bytes", "size", "clients", "depth"};
  for (auto prefix: {"refstore_ops", "refstore_read_ops", "refstore_batched_ops", "redis_ops"}) {
    for (auto& c: Table::summaryColumns(prefix)) columns.push_back(c);
  }
  columns.push_back("refstore_vs_redis");
  columns.push_back("refstore_read_vs_redis");
  columns.push_back("refstore_batched_vs_redis");
  Table& table = ctx.report.table("small_ops", columns);

  // ratios[clients == 8][pipelined]: view-based gets; readRatios: Ref.read-based gets.
  std::vector<double> ratios[2][2], readRatios[2][2], batchedRatios[2][2];
  for (uint64_t size: sizes) {
    for (int clients: {1, 8}) {
      for (bool pipelined: {false, true}) {
        if (!wanted(clients, pipelined)) continue;
        auto rates = alternatingRates(clients, reps, window, {
            [&](int) -> std::unique_ptr<Operation> {
              if (pipelined) return std::make_unique<RefstorePipelinedOp>(refstoreSocket, size);
              return std::make_unique<RefstoreOp>(refstoreSocket, size);
            },
            [&](int) -> std::unique_ptr<Operation> {
              return std::make_unique<RefstoreReadOp>(refstoreSocket, size, pipelined);
            },
            [&](int) -> std::unique_ptr<Operation> {
              return std::make_unique<RefstoreBatchedOp>(refstoreSocket, size,
                                                         pipelined ? kDepth : 1);
            },
            [&](int thread) -> std::unique_ptr<Operation> {
              return std::make_unique<RedisOp>(redisSocket, size, thread, pipelined);
            },
        });
        Summary ours = summarize(rates[0]), copied = summarize(rates[1]),
                batched = summarize(rates[2]), theirs = summarize(rates[3]);
        double ratio = ours.median / theirs.median, readRatio = copied.median / theirs.median,
               batchedRatio = batched.median / theirs.median;
        std::vector<Value> row = {size, sizeName(size), clients, pipelined ? kDepth : 1};
        Table::appendSummary(row, ours);
        Table::appendSummary(row, copied);
        Table::appendSummary(row, batched);
        Table::appendSummary(row, theirs);
        row.push_back(ratio);
        row.push_back(readRatio);
        row.push_back(batchedRatio);
        table.add(row);
        ratios[clients == 8][pipelined].push_back(ratio);
        readRatios[clients == 8][pipelined].push_back(readRatio);
        batchedRatios[clients == 8][pipelined].push_back(batchedRatio);
      }
    }
  }
  // Headlines: geometric means over the sizes (each size counts the same).
  if (!ctx.options.smallSizes.empty() || !ctx.options.smallModes.empty()) return;  // profiling
  ctx.report.set("small_ops_vs_redis", geometricMean(ratios[0][0]));
  ctx.report.set("small_ops_pipelined_vs_redis", geometricMean(ratios[0][1]));
  ctx.report.set("small_ops_8clients_vs_redis", geometricMean(ratios[1][0]));
  ctx.report.set("small_ops_8clients_pipelined_vs_redis", geometricMean(ratios[1][1]));
  ctx.report.set("small_ops_read_vs_redis", geometricMean(readRatios[0][0]));
  ctx.report.set("small_ops_read_pipelined_vs_redis", geometricMean(readRatios[0][1]));
  ctx.report.set("small_ops_batched_vs_redis", geometricMean(batchedRatios[0][1]));
  ctx.report.set("small_ops_8clients_batched_vs_redis", geometricMean(batchedRatios[1][1]));
  ctx.report.set("small_ops_vs_redis_min",
                 *std::min_element(ratios[0][0].begin(), ratios[0][0].end()));
  ctx.report.set("small_ops_pipeline_depth", kDepth);
}

}  // namespace refbench
