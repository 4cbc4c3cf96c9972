#include <CppUTest/TestHarness.h>

#include <errno.h>
#include <event2/buffer.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "tls.h"
#include "transport.h"

// A self-signed certificate for "localhost" and 127.0.0.1, written to files (the contexts take
// files, as the configuration gives them); it is its own CA for the client's trust.
static void make_certificate(const std::string &cert_path, const std::string &key_path)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    X509_add_ext(x, san, -1);
    X509_EXTENSION_free(san);
    X509_sign(x, key, EVP_sha256());
    FILE *f = fopen(cert_path.c_str(), "w");
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(key_path.c_str(), "w");
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
}

TEST_GROUP(Transport)
{
    char dir[64];
    std::string cert, key;
    SSL_CTX *server_ctx, *client_ctx;
    Transport client, server;
    char err[300];

    void setup() override
    {
        signal(SIGPIPE, SIG_IGN);  // as in the daemon: TLS writes go through write(2), no MSG_NOSIGNAL
        snprintf(dir, sizeof(dir), "/tmp/transport-test-XXXXXX");
        CHECK(mkdtemp(dir) != NULL);
        cert = std::string(dir) + "/cert.pem";
        key = std::string(dir) + "/key.pem";
        make_certificate(cert, key);
        TlsServerFiles served = {cert.c_str(), key.c_str(), "", "TLSv1.2 TLSv1.3", ""};
        server_ctx = tls_server_context(&served, err, sizeof(err));
        CHECK_TEXT(server_ctx != NULL, err);
        TlsClientFiles files = {cert.c_str(), "", "", true};
        client_ctx = tls_client_context(&files, err, sizeof(err));
        CHECK_TEXT(client_ctx != NULL, err);
        int fds[2];
        CHECK_EQUAL(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds));
        // Small buffers: a large write must stop half way (WANT_WRITE) and go on later.
        int small = 4096;
        for (int fd : fds) {
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        }
        transport_init(&client, fds[0]);
        transport_init(&server, fds[1]);
    }
    void teardown() override
    {
        transport_close(&client);
        transport_close(&server);
        tls_context_free(server_ctx);
        tls_context_free(client_ctx);
        unlink(cert.c_str());
        unlink(key.c_str());
        rmdir(dir);
    }

    // Steps both ends' handshakes in turn until each is done or has failed: the client's result.
    TransportStep handshake()
    {
        TransportStep c = TRANSPORT_WANT_WRITE, s = TRANSPORT_WANT_READ;
        for (int i = 0; i < 100 && (c != TRANSPORT_DONE || s != TRANSPORT_DONE); i++) {
            if (c != TRANSPORT_DONE && c != TRANSPORT_FAILED)
                c = transport_handshake(&client, err, sizeof(err));
            if (s != TRANSPORT_DONE && s != TRANSPORT_FAILED)
                s = transport_handshake(&server, err + 150, sizeof(err) - 150);
            if (c == TRANSPORT_FAILED || s == TRANSPORT_FAILED)
                break;
        }
        return c;
    }
};

TEST(Transport, PlainIsTheSocketItself)
{
    evbuffer *out = evbuffer_new();
    evbuffer_add(out, "hello", 5);
    CHECK_EQUAL(TRANSPORT_DONE, transport_handshake(&client, err, sizeof(err)));
    CHECK_EQUAL(5, transport_send(&client, out));
    char buf[16];
    CHECK_EQUAL(5, transport_recv(&server, buf, sizeof(buf)));
    CHECK_EQUAL(-1, transport_recv(&server, buf, sizeof(buf)));
    CHECK_EQUAL(EAGAIN, errno);
    evbuffer_free(out);
}

TEST(Transport, AHandshakeStepByStepThenALargeWriteThroughSmallBuffers)
{
    CHECK(transport_start_tls(&client, client_ctx, "localhost"));
    CHECK(transport_start_tls_server(&server, server_ctx));
    CHECK_EQUAL_TEXT(TRANSPORT_DONE, handshake(), err);
    std::string sent(1 << 20, '\0');
    for (size_t i = 0; i < sent.size(); i++)
        sent[i] = (char)(i * 131 + i / 7);
    evbuffer *out = evbuffer_new();
    evbuffer_add(out, sent.data(), sent.size());
    std::string got;
    char buf[65536];
    int stalls = 0;
    for (int turns = 0; turns < 100000 && got.size() < sent.size(); turns++) {
        if (evbuffer_get_length(out) > 0 && transport_send(&client, out) < 0) {
            CHECK_EQUAL(EAGAIN, errno);  // the socket is full: the rest waits
            stalls++;
        }
        ssize_t n;
        while ((n = transport_recv(&server, buf, sizeof(buf))) > 0)
            got.append(buf, (size_t)n);
    }
    CHECK(stalls > 0);
    CHECK_EQUAL(sent.size(), got.size());
    CHECK(sent == got);
    evbuffer_free(out);
}

TEST(Transport, ANameTheCertificateDoesNotHaveIsRefused)
{
    CHECK(transport_start_tls(&client, client_ctx, "not-localhost.example"));
    CHECK(transport_start_tls_server(&server, server_ctx));
    CHECK_EQUAL(TRANSPORT_FAILED, handshake());
    STRCMP_CONTAINS("certificate verify failed: hostname mismatch", err);
    CHECK(client.tls_refused);
}

TEST(Transport, AnAddressIsCheckedAgainstTheCertificatesAddresses)
{
    CHECK(transport_start_tls(&client, client_ctx, "127.0.0.1"));
    CHECK(transport_start_tls_server(&server, server_ctx));
    CHECK_EQUAL_TEXT(TRANSPORT_DONE, handshake(), err);
}

TEST(Transport, AnEndWithoutCloseNotifyIsAnEndNotAnError)
{
    CHECK(transport_start_tls(&client, client_ctx, "localhost"));
    CHECK(transport_start_tls_server(&server, server_ctx));
    CHECK_EQUAL_TEXT(TRANSPORT_DONE, handshake(), err);
    // The server's socket goes without a word (a Redis killed): the client reads an end.
    SSL_free(server.ssl);
    server.ssl = NULL;
    close(server.fd);
    server.fd = -1;
    char buf[16];
    CHECK_EQUAL(0, transport_recv(&client, buf, sizeof(buf)));
    CHECK_FALSE(client.tls_refused);
}

TEST(Transport, CloseNotifyEndsThePeersReads)
{
    CHECK(transport_start_tls(&client, client_ctx, "localhost"));
    CHECK(transport_start_tls_server(&server, server_ctx));
    CHECK_EQUAL_TEXT(TRANSPORT_DONE, handshake(), err);
    transport_close(&client);
    char buf[16];
    CHECK_EQUAL(0, transport_recv(&server, buf, sizeof(buf)));
}
