// TLS with OpenSSL 3: the contexts the configuration describes, and OpenSSL's reasons as text.
// The client context for Redis ([redis] tls): the trust store (tls_ca_file, else the system's),
// an optional client certificate (mutual TLS), TLS 1.2 at least, renegotiation refused. Made once
// per worker and shared by every connection it opens to Redis (the data connections, the
// invalidation links, every cluster node's).
#pragma once

#include <stddef.h>

typedef struct ssl_ctx_st SSL_CTX;

// What a client context is made of ([redis]'s tls_* settings): files may be empty (none).
struct TlsClientFiles {
    const char *ca_file;    // empty: the system's trust store
    const char *cert_file;  // with key_file: the proxy's own certificate (mutual TLS)
    const char *key_file;
    bool verify;            // the server's certificate is checked
};

// NULL, with the reason in err (naming the setting and OpenSSL's words), when a file does not
// load or the certificate and key do not match.
SSL_CTX *tls_client_context(const TlsClientFiles *files, char *err, size_t errlen);
// A server context: a certificate chain and its key (PEM), TLS 1.2 at least, renegotiation
// refused. NULL with the reason in err. (For a TLS listener; the tests' servers use it too.)
SSL_CTX *tls_server_context(const char *cert_file, const char *key_file, char *err, size_t errlen);
void tls_context_free(SSL_CTX *ctx);

// The oldest error in OpenSSL's queue as words ("certificate verify failed", ...), the queue
// emptied; `fallback` when it is empty.
const char *tls_error_text(char *buf, size_t len, const char *fallback);
