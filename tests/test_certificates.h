// Test support: throwaway X.509 material for TLS tests, made with Debian's `openssl` command at
// test start (tools/setup installs it) in a fresh directory under $TEST_TMPDIR:
//
//   TestCertificates pki;                                  // two unrelated CAs, EC P-256 keys
//   TlsFiles files = pki.issue("127.0.0.2");               // cert with IP:127.0.0.2 in its SAN
//   refstored ... --tls-cert files.cert --tls-key files.key --tls-ca files.ca
//   pki.issue(ip, Issuer::OTHER_CA)                        // signed by the unrelated CA
//   pki.issue(ip, Issuer::CA, Validity::EXPIRED)           // valid in 2020 only
//
// Every certificate's common name is "refstore-test-host", never its IP: a peer that accepts it
// for an IP address must have checked the subjectAltName. The IP is there twice, as IP:<ip> and
// as DNS:<ip>: kj-tls 0.9.2 checks a server's name with OpenSSL's host check, which matches DNS
// names only (README "TLS between hosts").
#pragma once

#include <string>
#include <vector>

namespace refstore::testing {

struct TlsFiles {
  std::string cert, key, ca;  // PEM files: the host's certificate, its key, the CA it trusts
  // The refstored flags naming them.
  std::vector<std::string> flags() const {
    return {"--tls-cert", cert, "--tls-key", key, "--tls-ca", ca};
  }
};

class TestCertificates {
 public:
  enum class Issuer { CA, OTHER_CA };
  enum class Validity { CURRENT, EXPIRED };

  // Makes the directory and both CAs; throws std::runtime_error with openssl's output if it fails.
  TestCertificates();
  ~TestCertificates();  // removes the directory

  // A new key and a certificate for `ip` (in subjectAltName, as IP and DNS name; `ipOnly`: as IP
  // only), signed by `issuer`; `ca` in the result is always the main CA (what every
  // well-configured host trusts).
  TlsFiles issue(const std::string& ip, Issuer issuer = Issuer::CA,
                 Validity validity = Validity::CURRENT, bool ipOnly = false);

  const std::string& directory() const { return dir; }
  const std::string& caFile() const { return caCert; }
  const std::string& otherCaFile() const { return otherCaCert; }

 private:
  // Runs `command` (a shell line) with output to a log; throws with the log if it fails.
  void run(const std::string& command);
  std::string makeCa(const std::string& name);

  std::string dir, caCert, otherCaCert;
  int serial = 0;
};

}  // namespace refstore::testing
