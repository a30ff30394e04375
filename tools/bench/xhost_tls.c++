// pull_tls_vs_plain: what TLS costs the data plane. Two more hosts on the same link
// addresses (other ports) run with --tls-cert/--tls-key/--tls-ca: a CA and one certificate for
// every host address (made with openssl in the run's directory; kj-tls checks the peer's
// certificate against the address it dialled). The same pull as xhostPull (restore + view of a
// value made on the first host, timed on the second) on the TLS pair and the plain pair,
// interleaved. The key is plain time / TLS time: the fraction of the plain pull's throughput
// that TLS keeps (bigger is better, 1 = free).
#include <stdlib.h>
#include <unistd.h>

#include <stdexcept>

#include "tools/bench/bytes.h"
#include "tools/bench/context.h"
#include "tools/bench/timing.h"
#include "tools/bench/xhost.h"

namespace refbench {
namespace {

// Writes ca.pem, host.pem and host.key under `dir`; false if openssl is missing or fails.
bool makeCertificates(const std::string& dir, const BenchHosts& hosts) {
  if (access("/usr/bin/openssl", X_OK) != 0) return false;
  std::string names;
  for (size_t i = 0; i < hosts.size(); i++) {
    names += std::string(i == 0 ? "" : ",") + "DNS:" + hosts.ip(i) + ",IP:" + hosts.ip(i);
  }
  std::string script =
      "cd '" + dir + "' && exec >openssl.log 2>&1 && "
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
      "-subj /CN=refbench-ca && "
      "openssl req -newkey rsa:2048 -nodes -keyout host.key -out host.csr -subj /CN=refbench && "
      "printf 'subjectAltName=" + names + "\\nextendedKeyUsage=serverAuth,clientAuth\\n' >ext && "
      "openssl x509 -req -in host.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
      "-extfile ext -out host.pem";
  return system(script.c_str()) == 0;
}

}  // namespace

void xhostTls(Xhost& x) {
  const uint64_t size = x.ctx.quick() ? 64 * MiB : 256 * MiB;
  std::string dir = x.ctx.tmp.path();
  if (!makeCertificates(dir, x.hosts)) {
    x.ctx.progress("xhost TLS: skipped (openssl missing or failed; see %s/openssl.log)",
                   dir.c_str());
    return;
  }
  BenchHosts tlsHosts(x.ctx, x.link(), 2, "tls", "1G",
                      {"--tls-cert", dir + "/host.pem", "--tls-key", dir + "/host.key",
                       "--tls-ca", dir + "/ca.pem"});
  Xhost tls(x.ctx, tlsHosts);
  refstore::Ref plainValue = x.makeValue(0, size, 81), tlsValue = tls.makeValue(0, size, 81);
  auto samples = interleave(warmupFor(x.ctx, size), repsFor(x.ctx, size), {
      [&]() { return timePull(x, plainValue, 81); },
      [&]() { return timePull(tls, tlsValue, 81); },
  });
  Summary plain = summarize(samples[0]), secured = summarize(samples[1]);
  std::vector<std::string> columns = {"size_bytes", "size"};
  for (auto& c: Table::summaryColumns("plain_ms")) columns.push_back(c);
  for (auto& c: Table::summaryColumns("tls_ms")) columns.push_back(c);
  for (auto c: {"plain_gbps", "tls_gbps", "tls_vs_plain"}) columns.push_back(c);
  Table& table = x.ctx.report.table("xhost_tls", columns);
  std::vector<Value> row = {size, sizeName(size)};
  Table::appendSummary(row, plain, 1e3);
  Table::appendSummary(row, secured, 1e3);
  double ratio = plain.median / secured.median;
  row.push_back(size / plain.median * 1e-9);
  row.push_back(size / secured.median * 1e-9);
  row.push_back(ratio);
  table.add(row);
  x.ctx.report.set("pull_tls_vs_plain", ratio);
  x.ctx.report.set("pull_tls_" + sizeName(size) + "_ms", secured.median * 1e3);
  x.ctx.progress("xhost TLS pull %s: %.1f ms (%.2f GB/s), plain %.1f ms: %.2f",
                 sizeName(size).c_str(), secured.median * 1e3, size / secured.median * 1e-9,
                 plain.median * 1e3, ratio);
}

}  // namespace refbench
