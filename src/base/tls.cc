#include "tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
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

// Of the files given (empty: none), the first that cannot be read, or NULL; *why says why ("No
// such file or directory" says more than OpenSSL's "system library" error). Only regular files:
// reading a FIFO would hang the check, the start or a reload.
static const char *first_unreadable(const char *a, const char *b, const char *c, const char **why)
{
    const char *paths[] = {a, b, c};
    for (const char *path : paths) {
        if (path[0] == '\0')
            continue;
        struct stat st;
        if (access(path, R_OK) != 0 || stat(path, &st) != 0) {
            *why = strerror(errno);
            return path;
        }
        if (!S_ISREG(st.st_mode)) {
            *why = "not a regular file";
            return path;
        }
    }
    return NULL;
}

static int refuse_passphrase(char *, int, int, void *) { return 0; }

// Whether a PEM key file is encrypted (PKCS#8's ENCRYPTED PRIVATE KEY, or the traditional form's
// Proc-Type header), read from the file: OpenSSL's error for it is "bad decrypt" only most of the
// time (a wrong passphrase's output passes the padding check once in 256 and fails later, as
// "unsupported").
static bool key_file_is_encrypted(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    char line[256];
    bool encrypted = false;
    for (int i = 0; i < 64 && !encrypted && fgets(line, sizeof(line), f) != NULL; i++)
        encrypted = strstr(line, "-----BEGIN ENCRYPTED PRIVATE KEY-----") != NULL ||
                    strncmp(line, "Proc-Type: 4,ENCRYPTED", 22) == 0;
    fclose(f);
    return encrypted;
}

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
    const char *why_unreadable;
    const char *unreadable = first_unreadable(c->ca_file, c->cert_file, c->key_file, &why_unreadable);
    if (unreadable != NULL) {
        snprintf(err, errlen, "[redis] tls: %s: %s", unreadable, why_unreadable);
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
            if (key_file_is_encrypted(c->key_file))
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

bool tls_parse_protocols(const char *text, int *min_version, int *max_version)
{
    *min_version = *max_version = 0;
    const char *at = text;
    while (*at != '\0') {
        while (*at == ' ' || *at == ',' || *at == '\t')
            at++;
        if (*at == '\0')
            break;
        size_t n = strcspn(at, " ,\t");
        int v = n == 7 && strncasecmp(at, "TLSv1.2", 7) == 0   ? TLS1_2_VERSION
                : n == 7 && strncasecmp(at, "TLSv1.3", 7) == 0 ? TLS1_3_VERSION
                                                                : 0;
        if (v == 0)
            return false;
        if (*min_version == 0 || v < *min_version)
            *min_version = v;
        if (v > *max_version)
            *max_version = v;
        at += n;
    }
    return *min_version != 0;
}

// ALPN: http/1.1 when the client offers it (an HTTPS client that offers only h2 gets no
// protocol, and speaks HTTP/1.1 as before ALPN); a RESP client offers none.
static int select_alpn(SSL *, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *)
{
    static const unsigned char http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    unsigned char *selected;
    if (SSL_select_next_proto(&selected, outlen, http11, sizeof(http11), in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

SSL_CTX *tls_server_context(const TlsServerFiles *f, char *err, size_t errlen)
{
    char why[256];
    int min_version, max_version;
    if (!tls_parse_protocols(f->protocols, &min_version, &max_version)) {
        snprintf(err, errlen, "protocols in [tls] (%s): expected TLSv1.2, TLSv1.3 or both", f->protocols);
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "[tls]: %s", tls_error_text(why, sizeof(why), "out of memory"));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, min_version);
    SSL_CTX_set_max_proto_version(ctx, max_version);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_CIPHER_SERVER_PREFERENCE);
    // Record buffers are kept for the connection's life (no SSL_MODE_RELEASE_BUFFERS): freeing and
    // allocating them around every record cost TLS RESP about a fifth of its rate. What they hold
    // counts against max_client_memory (TLS_CONNECTION_BYTES, client_memory.h).
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_default_passwd_cb(ctx, refuse_passphrase);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    // Resumed sessions must belong to this service (OpenSSL refuses resumption with client
    // certificates asked for unless this is set).
    static const unsigned char session_context[] = "redis-proxy";
    SSL_CTX_set_session_id_context(ctx, session_context, sizeof(session_context) - 1);
    const char *why_unreadable;
    const char *unreadable = first_unreadable(f->cert_file, f->key_file, f->ca_file, &why_unreadable);
    if (f->cert_file[0] == '\0' || f->key_file[0] == '\0') {
        snprintf(err, errlen, "[tls] needs cert_file and key_file for a listener marked tls");
    } else if (unreadable != NULL) {
        const char *setting = unreadable == f->cert_file ? "cert_file" : unreadable == f->key_file ? "key_file" : "ca_file";
        snprintf(err, errlen, "%s in [tls]: %s: %s", setting, unreadable, why_unreadable);
    } else if (SSL_CTX_use_certificate_chain_file(ctx, f->cert_file) != 1) {
        snprintf(err, errlen, "cert_file in [tls] (%s): %s", f->cert_file,
                 tls_error_text(why, sizeof(why), "cannot be loaded"));
    } else if (SSL_CTX_use_PrivateKey_file(ctx, f->key_file, SSL_FILETYPE_PEM) != 1) {
        tls_error_text(why, sizeof(why), "cannot be loaded");
        if (key_file_is_encrypted(f->key_file))
            snprintf(err, errlen, "key_file in [tls] (%s): an encrypted key (with a passphrase) is not supported: "
                     "decrypt it (openssl pkey -in KEY -out KEY.plain) and keep it readable by the proxy only",
                     f->key_file);
        else if (strstr(why, "mismatch") != NULL)  // (OpenSSL checks the pair as it loads the key)
            snprintf(err, errlen, "key_file in [tls] (%s) does not match cert_file (%s): %s", f->key_file,
                     f->cert_file, why);
        else
            snprintf(err, errlen, "key_file in [tls] (%s): %s", f->key_file, why);
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "key_file in [tls] (%s) does not match cert_file (%s): %s", f->key_file, f->cert_file,
                 tls_error_text(why, sizeof(why), "key values mismatch"));
    } else if (f->ca_file[0] != '\0' && SSL_CTX_load_verify_locations(ctx, f->ca_file, NULL) != 1) {
        snprintf(err, errlen, "ca_file in [tls] (%s): %s", f->ca_file, tls_error_text(why, sizeof(why), "cannot be loaded"));
    } else if (f->ciphers[0] != '\0' && SSL_CTX_set_cipher_list(ctx, f->ciphers) != 1) {
        snprintf(err, errlen, "ciphers in [tls] (%s): %s", f->ciphers, tls_error_text(why, sizeof(why), "no cipher matches"));
    } else {
        if (f->ca_file[0] != '\0') {
            // Mutual TLS: only clients with a certificate from these CAs; their names are sent
            // in the request for a certificate, as clients choose by them.
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(f->ca_file);
            if (names != NULL)
                SSL_CTX_set_client_CA_list(ctx, names);
        }
        ERR_clear_error();
        return ctx;
    }
    SSL_CTX_free(ctx);
    return NULL;
}

void tls_context_free(SSL_CTX *ctx) { SSL_CTX_free(ctx); }
