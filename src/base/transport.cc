#include "transport.h"

#include <errno.h>
#include <event2/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "tls.h"

void transport_init(Transport *t, int fd)
{
    memset(t, 0, sizeof(*t));
    t->fd = fd;
}

// A TLS attempt that cannot go on (out of memory): nothing of it is kept.
static bool drop_ssl(Transport *t)
{
    SSL_free(t->ssl);
    t->ssl = NULL;
    ERR_clear_error();
    return false;
}

// Counts what OpenSSL reads from the socket (Transport.raw_read).
static long count_raw_reads(BIO *bio, int oper, const char *, size_t, int, long, int ret, size_t *processed)
{
    if (oper == (BIO_CB_READ | BIO_CB_RETURN) && ret > 0 && processed != NULL)
        ((Transport *)BIO_get_callback_arg(bio))->raw_read += *processed;
    return ret;
}

// TLS over the socket, either side: false when out of memory.
static bool new_ssl(Transport *t, SSL_CTX *ctx)
{
    t->ssl = SSL_new(ctx);
    if (t->ssl == NULL || SSL_set_fd(t->ssl, t->fd) != 1)
        return drop_ssl(t);
    BIO *rbio = SSL_get_rbio(t->ssl);
    BIO_set_callback_ex(rbio, count_raw_reads);
    BIO_set_callback_arg(rbio, (char *)t);
    return true;
}

bool transport_start_tls(Transport *t, SSL_CTX *ctx, const char *server_name)
{
    if (!new_ssl(t, ctx))
        return false;
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, server_name, ip) == 1 || inet_pton(AF_INET6, server_name, ip) == 1;
    if (!is_ip && server_name[0] != '\0')
        SSL_set_tlsext_host_name(t->ssl, server_name);  // SNI names a host, never an address
    if (SSL_get_verify_mode(t->ssl) & SSL_VERIFY_PEER) {
        X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int set = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, server_name)
                        : X509_VERIFY_PARAM_set1_host(param, server_name, 0);
        if (set != 1)
            return drop_ssl(t);
    }
    SSL_set_connect_state(t->ssl);
    return true;
}

bool transport_start_tls_server(Transport *t, SSL_CTX *ctx)
{
    if (!new_ssl(t, ctx))
        return false;
    SSL_set_accept_state(t->ssl);
    return true;
}

TransportStep transport_handshake(Transport *t, char *why, size_t len)
{
    if (t->ssl == NULL || t->handshaken)
        return TRANSPORT_DONE;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->handshaken = true;
        return TRANSPORT_DONE;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return TRANSPORT_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE)
        return TRANSPORT_WANT_WRITE;
    // The chain's verdict only when it was asked for, and is why (OpenSSL records one with
    // checking off too, which would misname another failure).
    long verify = (SSL_get_verify_mode(t->ssl) & SSL_VERIFY_PEER) ? SSL_get_verify_result(t->ssl) : X509_V_OK;
    char reason[200];
    t->tls_refused = e == SSL_ERROR_SSL;
    if (verify != X509_V_OK) {
        ERR_clear_error();
        snprintf(why, len, "TLS handshake: certificate verify failed: %s", X509_verify_cert_error_string(verify));
    } else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        snprintf(why, len, "TLS handshake: %s", r == 0 || errno == 0 ? "connection closed by server" : strerror(errno));
    } else {
        snprintf(why, len, "TLS handshake: %s", tls_error_text(reason, sizeof(reason), "failed"));
    }
    return TRANSPORT_FAILED;
}

// What an SSL_read or SSL_write that moved nothing means, as recv's -1 and errno (or 0 at the end).
static ssize_t tls_outcome(Transport *t, int r, bool reading)
{
    int e = SSL_get_error(t->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        if (!reading)
            t->write_wants_read = true;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        if (reading)
            t->read_wants_write = true;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:  // the peer's close_notify
        return 0;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) {
            if (r == 0 || errno == 0)
                return 0;  // the socket closed without close_notify: the end, as recv says it
            return -1;     // errno says why
        }
        break;
    default:
        break;
    }
    char reason[120];
    snprintf(t->error, sizeof(t->error), "TLS: %s", tls_error_text(reason, sizeof(reason), "protocol error"));
    t->tls_refused = true;  // (an alert after the handshake: a client certificate refused, ...)
    errno = EPROTO;
    return -1;
}

ssize_t transport_recv(Transport *t, void *buf, size_t len)
{
    if (t->ssl == NULL)
        return recv(t->fd, buf, len, 0);
    t->read_wants_write = false;
    ERR_clear_error();
    int r = SSL_read(t->ssl, buf, len > (size_t)INT32_MAX ? INT32_MAX : (int)len);
    return r > 0 ? r : tls_outcome(t, r, true);
}

bool transport_pending(const Transport *t) { return t->ssl != NULL && SSL_pending(t->ssl) > 0; }

int transport_send(Transport *t, evbuffer *out)
{
    if (t->ssl == NULL)
        return evbuffer_write(out, t->fd);
    t->write_wants_read = false;
    int total = 0;
    while (evbuffer_get_length(out) > 0) {
        evbuffer_iovec v;
        if (evbuffer_peek(out, -1, NULL, &v, 1) < 1)
            break;
        // Up to 16 KiB at a time (a TLS record): the first chunk only, so the rest is not copied.
        size_t n = v.iov_len < 16384 ? v.iov_len : 16384;
        ERR_clear_error();
        int r = SSL_write(t->ssl, v.iov_base, (int)n);
        if (r <= 0) {
            ssize_t o = tls_outcome(t, r, false);
            if (total > 0 && o < 0 && errno == EAGAIN)
                return total;
            return o == 0 ? (errno = EPIPE, -1) : (int)o;
        }
        evbuffer_drain(out, (size_t)r);
        total += r;
    }
    return total;
}

void transport_close(Transport *t)
{
    if (t->ssl != NULL) {
        if (t->handshaken)
            SSL_shutdown(t->ssl);  // our close_notify; the peer's is not waited for
        SSL_free(t->ssl);
        ERR_clear_error();
        t->ssl = NULL;
    }
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    t->handshaken = t->read_wants_write = t->write_wants_read = false;
}
