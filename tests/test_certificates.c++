#include "tests/test_certificates.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/random.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace refstore::testing {
namespace {

std::string readAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path);
}

// EC P-256: a key in milliseconds, where RSA takes a noticeable fraction of a second.
const char* const kNewKey = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

}  // namespace

TestCertificates::TestCertificates() {
  const char* tmp = getenv("TEST_TMPDIR");
  uint32_t random = 0;
  if (getrandom(&random, sizeof(random), 0) != sizeof(random)) abort();
  dir = std::string(tmp ? tmp : "/tmp") + "/pki-" + std::to_string(random);
  if (mkdir(dir.c_str(), 0700) != 0) throw std::runtime_error("cannot make " + dir);
  caCert = makeCa("ca");
  otherCaCert = makeCa("other-ca");
}

TestCertificates::~TestCertificates() {
  std::string command = "rm -rf '" + dir + "'";
  if (system(command.c_str()) != 0) fprintf(stderr, "could not remove %s\n", dir.c_str());
}

void TestCertificates::run(const std::string& command) {
  std::string log = dir + "/openssl.log";
  std::string line = "cd '" + dir + "' && " + command + " > '" + log + "' 2>&1";
  if (system(line.c_str()) != 0) {
    throw std::runtime_error("failed: " + command + "\n" + readAll(log));
  }
}

// A self-signed CA `name`.pem / `name`.key, with its own `openssl ca` database so that it can
// sign certificates with any validity period (`openssl x509 -req` cannot backdate one).
std::string TestCertificates::makeCa(const std::string& name) {
  run(std::string("openssl req -x509 ") + kNewKey + " -keyout " + name + ".key -out " + name +
      ".pem -days 2 -subj /CN=refstore-test-" + name);
  run("touch " + name + ".index");
  writeFile(dir + "/" + name + ".cnf",
            "[ ca ]\n"
            "default_ca = this_ca\n"
            "[ this_ca ]\n"
            "database = " + dir + "/" + name + ".index\n"
            "new_certs_dir = " + dir + "\n"
            "serial = " + dir + "/" + name + ".serial\n"
            "default_md = sha256\n"
            "policy = any_name\n"
            "copy_extensions = copy\n"  // the subjectAltName the request asks for
            "unique_subject = no\n"
            "[ any_name ]\n"
            "commonName = supplied\n");
  writeFile(dir + "/" + name + ".serial", "1000\n");
  return dir + "/" + name + ".pem";
}

TlsFiles TestCertificates::issue(const std::string& ip, Issuer issuer, Validity validity,
                                 bool ipOnly) {
  std::string base = "host-" + std::to_string(++serial);
  std::string ca = issuer == Issuer::CA ? "ca" : "other-ca";
  run(std::string("openssl req -new ") + kNewKey + " -keyout " + base + ".key -out " + base +
      ".csr -subj /CN=refstore-test-host -addext subjectAltName=IP:" + ip +
      (ipOnly ? "" : ",DNS:" + ip));
  std::string period = validity == Validity::CURRENT
                           ? std::string("-days 2")
                           : std::string("-startdate 20200101000000Z -enddate 20200102000000Z");
  run("openssl ca -batch -notext -config " + ca + ".cnf -cert " + ca + ".pem -keyfile " + ca +
      ".key -in " + base + ".csr -out " + base + ".pem " + period);
  return TlsFiles{dir + "/" + base + ".pem", dir + "/" + base + ".key", caCert};
}

}  // namespace refstore::testing
