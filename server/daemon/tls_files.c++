#include "server/daemon/tls_files.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <kj/common.h>

namespace refstore::server {
namespace {

BIO* memoryOf(kj::StringPtr pem) { return BIO_new_mem_buf(pem.begin(), pem.size()); }

// A passphrase callback that supplies none: an encrypted key fails instead of prompting.
int noPassphrase(char*, int, int, void*) { return 0; }

}  // namespace

bool holdsPemCertificate(kj::StringPtr pem) {
  BIO* bio = memoryOf(pem);
  KJ_DEFER(BIO_free(bio));
  size_t count = 0;
  while (X509* certificate = PEM_read_bio_X509(bio, nullptr, noPassphrase, nullptr)) {
    X509_free(certificate);
    count++;
  }
  // The loop ends at the end of the text (PEM_R_NO_START_LINE) or at something broken.
  unsigned long last = ERR_peek_last_error();
  bool clean = ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
  ERR_clear_error();
  return count > 0 && clean;
}

bool holdsPemPrivateKey(kj::StringPtr pem) {
  BIO* bio = memoryOf(pem);
  KJ_DEFER(BIO_free(bio));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, noPassphrase, nullptr);
  ERR_clear_error();
  if (key == nullptr) return false;
  EVP_PKEY_free(key);
  return true;
}

bool keyMatchesCertificate(kj::StringPtr certPem, kj::StringPtr keyPem) {
  BIO* certBio = memoryOf(certPem);
  KJ_DEFER(BIO_free(certBio));
  BIO* keyBio = memoryOf(keyPem);
  KJ_DEFER(BIO_free(keyBio));
  X509* certificate = PEM_read_bio_X509(certBio, nullptr, noPassphrase, nullptr);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(keyBio, nullptr, noPassphrase, nullptr);
  bool matches = certificate != nullptr && key != nullptr &&
                 X509_check_private_key(certificate, key) == 1;
  if (certificate != nullptr) X509_free(certificate);
  if (key != nullptr) EVP_PKEY_free(key);
  ERR_clear_error();
  return matches;
}

}  // namespace refstore::server
