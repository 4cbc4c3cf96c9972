// How a connection's bytes cross its socket: plainly, or through TLS (OpenSSL, non-blocking), so
// that the backend above does not know which (Redis 6's connection.h and tls.c, nginx's
// c->recv/c->send). Reads and writes answer as recv(2) and evbuffer_write do: bytes, 0 at the
// peer's end, or -1 with errno (EAGAIN: try again when the socket is ready). TLS may need the
// other direction than the one asked for: a read that needs the socket writable sets
// read_wants_write, a write that needs it readable write_wants_read; the owner then waits for
// that readiness and retries. TLS writes go through write(2): the process ignores SIGPIPE.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct evbuffer;
typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

struct Transport {
    int fd;                 // -1: closed
    SSL *ssl;               // NULL: plain
    bool handshaken;        // TLS: past the handshake
    bool read_wants_write;  // TLS: the last read waits for the socket to be writable
    bool write_wants_read;  // TLS: the last write waits for it to be readable
    char error[160];        // TLS: why the last read or write failed (errno EPROTO), OpenSSL's words
    bool tls_refused;       // TLS: the last failure was TLS's own (a certificate, an alert, no common
                            // protocol), not the connection's (a reset, an end before the handshake)
    uint64_t raw_read;      // TLS: bytes read from the socket, whole records or not (a bound on a
                            // request must start at its first byte, not at its record's last)
};

enum TransportStep { TRANSPORT_DONE, TRANSPORT_WANT_READ, TRANSPORT_WANT_WRITE, TRANSPORT_FAILED };

void transport_init(Transport *t, int fd);
// TLS from here on, as a client of `server_name`: sent as SNI, and, when the context verifies,
// checked against the certificate (a name, or an IP address). False when out of memory (no
// check of the name could be set up: the attempt must not go on without it).
bool transport_start_tls(Transport *t, SSL_CTX *ctx, const char *server_name);
// TLS from here on, as the server (a listener's accepted connection).
bool transport_start_tls_server(Transport *t, SSL_CTX *ctx);
// Plain: DONE at once. TLS: one step of the handshake; FAILED with OpenSSL's reason in why
// ("certificate verify failed: ...", "hostname mismatch").
TransportStep transport_handshake(Transport *t, char *why, size_t len);
ssize_t transport_recv(Transport *t, void *buf, size_t len);
// Whether a TLS read would find bytes already decrypted (no readiness will say so).
bool transport_pending(const Transport *t);
// Writes from the front of out, as much as the socket takes; drained by what was written.
int transport_send(Transport *t, evbuffer *out);
// Sends TLS's close_notify (without waiting for the peer's), then closes the socket.
void transport_close(Transport *t);
