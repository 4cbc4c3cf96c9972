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
// What a server context is made of ([tls]): the listeners marked tls serve with it.
struct TlsServerFiles {
    const char *cert_file;  // the certificate chain (PEM)
    const char *key_file;   // its private key (PEM, not encrypted)
    const char *ca_file;    // empty: no client certificate asked; else one these CAs signed is required
    const char *protocols;  // "TLSv1.2 TLSv1.3", or one of them
    const char *ciphers;    // OpenSSL's cipher list for TLS 1.2; empty: OpenSSL's default
};

// A server context: TLS 1.2 and 1.3 (or as protocols says), renegotiation refused, ALPN
// http/1.1 when the client offers it, session tickets for resumption. Made by the master, so
// that every worker of a generation shares its ticket keys. NULL with the reason in err, which
// names the setting of [tls] at fault.
SSL_CTX *tls_server_context(const TlsServerFiles *files, char *err, size_t errlen);
// protocols' text as OpenSSL's lowest and highest versions; false when it names none or others.
bool tls_parse_protocols(const char *text, int *min_version, int *max_version);
void tls_context_free(SSL_CTX *ctx);

// The oldest error in OpenSSL's queue as words ("certificate verify failed", ...), the queue
// emptied; `fallback` when it is empty.
const char *tls_error_text(char *buf, size_t len, const char *fallback);
