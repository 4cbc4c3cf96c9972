// libFuzzer target: what a client sends to an address marked tls before its handshake ends. The
// server side of the transport (transport.h, as the RESP front uses it) runs on one end of a
// socketpair with a context made as the proxy makes it (tls_server_context); the input, written to
// the other end, is garbage, or a ClientHello cut off or altered (the corpus holds real ones, TLS
// 1.2 and 1.3). The first byte chooses whether the client's end is then half-closed (an EOF
// mid-handshake). A fixed input cannot finish a handshake (the server's random differs each
// run): records after one are fed by test_tls_clients.py (test_garbage_after_the_handshake), under
// SANITIZE=1.
// Beside memory safety (ASan/UBSan): every step ends (WANT_*, FAILED or DONE), a failure says
// why, and reads never report more than they were given room for.
#include <assert.h>
#include <event2/buffer.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tls.h"
#include "transport.h"

// A self-signed certificate, made once in memory and written where tls_server_context reads it.
static SSL_CTX *server_context()
{
    static SSL_CTX *ctx = NULL;
    if (ctx != NULL)
        return ctx;
    signal(SIGPIPE, SIG_IGN);
    char dir[] = "/tmp/fuzz-tls-XXXXXX";
    if (mkdtemp(dir) == NULL)
        abort();
    char cert_path[64], key_path[64];
    snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", dir);
    snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(cert, name);
    if (key == NULL || X509_sign(cert, key, EVP_sha256()) == 0)
        abort();
    FILE *f = fopen(cert_path, "w");
    PEM_write_X509(f, cert);
    fclose(f);
    f = fopen(key_path, "w");
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(cert);
    EVP_PKEY_free(key);
    char err[300];
    TlsServerFiles files = {cert_path, key_path, "", "TLSv1.2 TLSv1.3", ""};
    if ((ctx = tls_server_context(&files, err, sizeof(err))) == NULL) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    unlink(cert_path);
    unlink(key_path);
    rmdir(dir);
    return ctx;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    SSL_CTX *ctx = server_context();
    if (size < 1 || size > 60000)
        return 0;
    bool half_close = data[0] & 1;
    data++;
    size--;
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) != 0)
        return 0;
    int buffer = 256 * 1024;
    setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
    setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
    size_t written = 0;
    while (written < size) {
        ssize_t n = write(fds[0], data + written, size - written);
        if (n <= 0)
            break;
        written += (size_t)n;
    }
    if (half_close)
        shutdown(fds[0], SHUT_WR);
    Transport t;
    transport_init(&t, fds[1]);
    if (!transport_start_tls_server(&t, ctx))
        abort();
    char why[200] = "";
    TransportStep step = TRANSPORT_WANT_READ;
    for (int i = 0; i < 64 && step != TRANSPORT_DONE && step != TRANSPORT_FAILED; i++)
        step = transport_handshake(&t, why, sizeof(why));
    if (step == TRANSPORT_FAILED)
        assert(why[0] != '\0');
    if (step == TRANSPORT_DONE) {
        char in[4096];
        for (int i = 0; i < 64; i++) {
            ssize_t n = transport_recv(&t, in, sizeof(in));
            assert(n <= (ssize_t)sizeof(in));
            if (n <= 0)
                break;
        }
        evbuffer *out = evbuffer_new();
        evbuffer_add(out, "+PONG\r\n", 7);
        transport_send(&t, out);
        evbuffer_free(out);
    }
    transport_close(&t);  // closes fds[1]
    close(fds[0]);
    return 0;
}
