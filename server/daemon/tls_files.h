// Checks of refstored's --tls-cert, --tls-key and --tls-ca files before the daemon starts, so
// that a wrong file is one line naming it, not an OpenSSL error queue at the first handshake.
// (kj::TlsContext takes a key that does not match the certificate without a word: OpenSSL drops
// the key, and every handshake then fails.)
#pragma once

#include <kj/string.h>

namespace refstore::server {

// Whether `pem` holds at least one PEM certificate, and nothing else that fails to parse.
bool holdsPemCertificate(kj::StringPtr pem);
// Whether `pem` holds an unencrypted PEM private key.
bool holdsPemPrivateKey(kj::StringPtr pem);
// Whether the key of `keyPem` belongs to the first certificate of `certPem` (both valid).
bool keyMatchesCertificate(kj::StringPtr certPem, kj::StringPtr keyPem);

}  // namespace refstore::server
