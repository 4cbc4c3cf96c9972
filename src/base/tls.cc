#include "tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>


const char *tls_error_text(char *buf, size_t len, const char *fallback)
{
    unsigned long e = ERR_get_error();
    if (e == 0) {
        snprintf(buf, len, "%s", fallback);
    } else {
        const char *reason = ERR_reason_error_string(e);
        if (reason != NULL)
            snprintf(buf, len, "%s", reason);
        else
            ERR_error_string_n(e, buf, len);
    }
    ERR_clear_error();
    return buf;
}

// Of the files given (empty: none), the first that cannot be read (errno says why), or NULL:
// "No such file or directory" says more than OpenSSL's "system library" error.
static const char *first_unreadable(const char *a, const char *b, const char *c)
{
    const char *paths[] = {a, b, c};
    for (const char *path : paths)
        if (path[0] != '\0' && access(path, R_OK) != 0)
            return path;
    return NULL;
}

static int refuse_passphrase(char *, int, int, void *) { return 0; }

SSL_CTX *tls_client_context(const TlsClientFiles *c, char *err, size_t errlen)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "[redis] tls: %s", tls_error_text(why, sizeof(why), "out of memory"));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    // A close without close_notify is an end like any other (RESP's framing already tells a reply
    // cut short), not a TLS failure: a Redis restarting or killed must not count as one.
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    // An encrypted key would have OpenSSL ask for its passphrase on the terminal: refused instead.
    SSL_CTX_set_default_passwd_cb(ctx, refuse_passphrase);
    // A partial write is taken as such (the rest is written from where it stopped): the commands
    // are in an evbuffer that is drained by what SSL_write took.
    // An idle connection's read and write buffers (about 34 KiB) go back between records.
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    const char *unreadable = first_unreadable(c->ca_file, c->cert_file, c->key_file);
    if (unreadable != NULL) {
        snprintf(err, errlen, "[redis] tls: %s: %s", unreadable, strerror(errno));
        SSL_CTX_free(ctx);
        return NULL;
    }
    bool loaded = c->ca_file[0] != '\0' ? SSL_CTX_load_verify_locations(ctx, c->ca_file, NULL) == 1
                                                  : SSL_CTX_set_default_verify_paths(ctx) == 1;
    if (!loaded) {
        snprintf(err, errlen, "tls_ca_file in [redis] (%s): %s",
                 c->ca_file[0] ? c->ca_file : "the system's trust store",
                 tls_error_text(why, sizeof(why), "cannot be loaded"));
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (c->cert_file[0] != '\0') {
        if (SSL_CTX_use_certificate_chain_file(ctx, c->cert_file) != 1) {
            snprintf(err, errlen, "tls_cert_file in [redis] (%s): %s", c->cert_file,
                     tls_error_text(why, sizeof(why), "cannot be loaded"));
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, c->key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(err, errlen, "tls_key_file in [redis] (%s): %s", c->key_file,
                     tls_error_text(why, sizeof(why), "does not match tls_cert_file"));
            if (strstr(err, "bad decrypt") != NULL || strstr(err, "processing error") != NULL)
                snprintf(err, errlen, "tls_key_file in [redis] (%s): an encrypted key (with a passphrase) is not "
                         "supported: decrypt it (openssl pkey -in KEY -out KEY.plain) and keep it readable by the "
                         "proxy only", c->key_file);
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    SSL_CTX_set_verify(ctx, c->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    return ctx;
}

SSL_CTX *tls_server_context(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "%s", tls_error_text(why, sizeof(why), "out of memory"));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(ctx, refuse_passphrase);
    const char *unreadable = first_unreadable(cert_file, key_file, "");
    if (unreadable != NULL) {
        snprintf(err, errlen, "%s: %s", unreadable, strerror(errno));
    } else if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        snprintf(err, errlen, "%s: %s", cert_file, tls_error_text(why, sizeof(why), "cannot be loaded"));
    } else if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "%s: %s", key_file, tls_error_text(why, sizeof(why), "does not match the certificate"));
    } else {
        return ctx;
    }
    SSL_CTX_free(ctx);
    return NULL;
}

void tls_context_free(SSL_CTX *ctx) { SSL_CTX_free(ctx); }
