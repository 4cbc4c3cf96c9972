// The backend against a peer the test plays by hand over a unix socket: the replies it gets,
// the order they come in, and when the connection can no longer be trusted.
#include <CppUTest/TestHarness.h>

#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <string>

#include "backend.h"
#include "config.h"
#include "log.h"
#include "../peer_socket.h"

struct Answer {
    int calls = 0;
    BackendFailure failure = BACKEND_OK;
    std::string value;
    bool distrust = false;  // the callback finds the reply nonsensical
    Backend *backend = nullptr;
};

static void on_answer(void *arg, redisReply *reply, BackendFailure failure)
{
    Answer *a = (Answer *)arg;
    a->calls++;
    a->failure = failure;
    if (reply != nullptr && reply->type == REDIS_REPLY_STRING)
        a->value.assign(reply->str, reply->len);
    if (reply != nullptr && a->distrust)
        backend_distrust(a->backend);
}

static int untrusted_calls;
static void on_untrusted(void *) { untrusted_calls++; }

// GET key, as backend_command sends it.
static bool backend_get(Backend *b, const char *key, size_t len, BackendReplyFn fn, void *arg)
{
    const char *argv[2] = {"GET", key};
    size_t lens[2] = {3, len};
    return backend_command(b, 2, argv, lens, fn, arg);
}

TEST_GROUP(Backend)
{
    Config config;
    event_base *base;
    WorkerStats stats;
    PeerSocket sock;  // the Redis the test plays
    Backend *backend = nullptr;

    void setup() override
    {
        log_set_level(-1);
        config_defaults(&config);
        base = event_base_new();
        memset(&stats, 0, sizeof(stats));
        untrusted_calls = 0;
        sock.listen_as("test_backend", base);
    }

    void teardown() override
    {
        backend_destroy(backend);
        sock.close_all();
        event_base_free(base);
        log_set_level(2);
    }

    void start()
    {
        BackendTarget target;
        char err[256];
        CHECK(backend_target_resolve(sock.address().c_str(), &target, err, sizeof(err)));
        BackendHooks hooks = {};
        hooks.on_untrusted = on_untrusted;
        backend = backend_create(base, &config, &target, &stats, 42, &hooks);
        CHECK(backend != nullptr);
        sock.accept_one();
        run_until([&] { return backend_ready(backend); });
    }

    template <typename F> void run_until(F done) { sock.run_until(done); }
    // What the backend wrote to the peer so far, once it has written `expect` bytes.
    std::string peer_reads(size_t expect) { return sock.reads(expect); }
    void peer_writes(const std::string &bytes) { sock.writes(bytes); }
    bool peer_sees_close() { return sock.sees_close(); }
};

TEST(Backend, test_get_is_sent_as_multibulk_and_its_reply_delivered)
{
    start();
    Answer a;
    CHECK(backend_get(backend, "k\r\n", 3, on_answer, &a));
    STRCMP_EQUAL("*2\r\n$3\r\nGET\r\n$3\r\nk\r\n\r\n", peer_reads(22).c_str());
    peer_writes("$5\r\nva");
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    LONGS_EQUAL(0, a.calls);  // half a reply is not a reply
    peer_writes("lue\r\n");
    run_until([&] { return a.calls > 0; });
    LONGS_EQUAL(BACKEND_OK, a.failure);
    STRCMP_EQUAL("value", a.value.c_str());
    LONGS_EQUAL(0, backend_outstanding(backend));
}

TEST(Backend, test_replies_go_to_their_commands_in_order)
{
    start();
    Answer a, b;
    CHECK(backend_get(backend, "a", 1, on_answer, &a));
    CHECK(backend_get(backend, "b", 1, on_answer, &b));
    peer_reads(2 * 20);
    peer_writes("$1\r\nA\r\n$1\r\nB\r\n");
    run_until([&] { return b.calls > 0; });
    STRCMP_EQUAL("A", a.value.c_str());
    STRCMP_EQUAL("B", b.value.c_str());
    LONGS_EQUAL(0, untrusted_calls);
}

TEST(Backend, test_more_replies_than_commands_in_one_read_deliver_none)
{
    start();
    Answer a;
    CHECK(backend_get(backend, "a", 1, on_answer, &a));
    peer_reads(20);
    peer_writes("$1\r\nA\r\n$5\r\nEXTRA\r\n");
    run_until([&] { return a.calls > 0; });
    LONGS_EQUAL(BACKEND_UNAVAILABLE, a.failure);
    STRCMP_EQUAL("", a.value.c_str());
    LONGS_EQUAL(1, untrusted_calls);
    LONGS_EQUAL(1, stats.redis_out_of_step);
    run_until([&] { return peer_sees_close(); });
}

TEST(Backend, test_a_reply_nobody_asked_for_drops_the_connection)
{
    start();
    Answer a;
    CHECK(backend_get(backend, "a", 1, on_answer, &a));
    peer_reads(20);
    peer_writes("$1\r\nA\r\n");
    run_until([&] { return a.calls > 0; });
    peer_writes("+UNSOLICITED\r\n");
    run_until([&] { return untrusted_calls > 0; });
    CHECK_FALSE(backend_ready(backend));
    run_until([&] { return peer_sees_close(); });
}

// A server that speaks before it is asked anything refuses the connection (Redis at maxclients,
// or in protected mode): a failed attempt, not a connection out of step. Nothing was read through
// it, so nothing read before is distrusted (the worker's cache is kept).
TEST(Backend, test_a_server_that_speaks_first_is_a_refused_attempt)
{
    start();
    peer_writes("-ERR max number of clients reached\r\n");
    run_until([&] { return !backend_ready(backend); });
    LONGS_EQUAL(0, untrusted_calls);
    LONGS_EQUAL(0, stats.redis_out_of_step);
    run_until([&] { return peer_sees_close(); });
}

TEST(Backend, test_unreadable_bytes_drop_the_connection)
{
    start();
    Answer a;
    CHECK(backend_get(backend, "a", 1, on_answer, &a));
    peer_reads(20);
    peer_writes("%1\r\n+a\r\n+b\r\n");  // a RESP3 map: hiredis 0.14 reads RESP2 only
    run_until([&] { return a.calls > 0; });
    LONGS_EQUAL(BACKEND_UNAVAILABLE, a.failure);
    LONGS_EQUAL(1, untrusted_calls);
}

TEST(Backend, test_a_callback_that_distrusts_its_reply_drops_the_connection_after_it)
{
    start();
    Answer a, b;
    a.distrust = true;
    a.backend = backend;
    CHECK(backend_get(backend, "a", 1, on_answer, &a));
    CHECK(backend_get(backend, "b", 1, on_answer, &b));
    peer_reads(2 * 20);
    peer_writes(":1\r\n$1\r\nB\r\n");
    run_until([&] { return b.calls > 0; });
    LONGS_EQUAL(BACKEND_OK, a.failure);           // a saw its (wrong) reply
    LONGS_EQUAL(BACKEND_UNAVAILABLE, b.failure);  // b's reply, from the same read, is not trusted
    LONGS_EQUAL(1, untrusted_calls);
}

TEST(Backend, test_a_reply_past_max_reply_size_is_skipped_as_it_streams_and_the_connection_stays)
{
    config.redis_max_reply_size = 1024;
    start();
    Answer a, b;
    CHECK(backend_get(backend, "a", 1, on_answer, &a));
    CHECK(backend_get(backend, "b", 1, on_answer, &b));
    peer_reads(40);
    peer_writes("$100000\r\n" + std::string(50000, 'x'));
    run_until([&] { return a.calls > 0; });  // answered as soon as its length is known
    LONGS_EQUAL(BACKEND_TOO_LARGE, a.failure);
    LONGS_EQUAL(0, b.calls);
    peer_writes(std::string(50000, 'x') + "\r\n$1\r\nB\r\n");
    run_until([&] { return b.calls > 0; });
    LONGS_EQUAL(BACKEND_OK, b.failure);
    STRCMP_EQUAL("B", b.value.c_str());
    LONGS_EQUAL(1, stats.redis_replies_too_large);
    LONGS_EQUAL(0, untrusted_calls);
    CHECK(backend_ready(backend));
    CHECK_FALSE(peer_sees_close());
}

TEST(Backend, test_a_reply_past_max_reply_size_read_whole_in_one_read_is_skipped_too)
{
    config.redis_max_reply_size = 1024;
    start();
    Answer a, b, c;
    CHECK(backend_get(backend, "a", 1, on_answer, &a));
    CHECK(backend_get(backend, "b", 1, on_answer, &b));
    CHECK(backend_get(backend, "c", 1, on_answer, &c));
    peer_reads(60);
    // One write, one read: a small reply, one of 2,000 bytes, complete, and another small one.
    peer_writes("$2\r\nok\r\n$2000\r\n" + std::string(2000, 'x') + "\r\n$1\r\nC\r\n");
    run_until([&] { return c.calls > 0; });
    STRCMP_EQUAL("ok", a.value.c_str());
    LONGS_EQUAL(BACKEND_TOO_LARGE, b.failure);
    STRCMP_EQUAL("C", c.value.c_str());
    CHECK_FALSE(peer_sees_close());
}

TEST(Backend, test_an_array_whose_elements_together_pass_max_reply_size_is_skipped)
{
    config.redis_max_reply_size = 1024;
    start();
    Answer a, b;
    const char *argv[] = {"MGET", "x", "y"};
    size_t lens[] = {4, 1, 1};
    CHECK(backend_command(backend, 3, argv, lens, on_answer, &a));
    CHECK(backend_get(backend, "b", 1, on_answer, &b));
    peer_reads(20 + 26);
    std::string element = "$600\r\n" + std::string(600, 'v') + "\r\n";
    peer_writes("*2\r\n" + element + element + "$1\r\nB\r\n");
    run_until([&] { return b.calls > 0; });
    LONGS_EQUAL(BACKEND_TOO_LARGE, a.failure);
    STRCMP_EQUAL("B", b.value.c_str());
    LONGS_EQUAL(0, untrusted_calls);
}

TEST(Backend, test_many_small_replies_are_not_one_big_reply)
{
    config.redis_max_reply_size = 1024;
    start();
    const int n = 200;  // 200 replies of 11 bytes: 2,200 bytes in all, each far below the bound
    Answer answers[n];
    std::string replies;
    for (int i = 0; i < n; i++) {
        CHECK(backend_get(backend, "k", 1, on_answer, &answers[i]));
        replies += "$4\r\nvvvv\r\n";
    }
    peer_reads(n * 20);
    peer_writes(replies);
    run_until([&] { return answers[n - 1].calls > 0; });
    for (int i = 0; i < n; i++)
        STRCMP_EQUAL("vvvv", answers[i].value.c_str());
}

TEST(Backend, test_commands_are_refused_at_once_while_disconnected)
{
    start();
    // Nobody listens any more: every reconnect fails, whenever its timer fires.
    close(sock.listener);
    sock.listener = -1;
    unlink(sock.path);
    close(sock.peer);
    sock.peer = -1;
    run_until([&] { return !backend_ready(backend); });
    Answer a;
    CHECK_FALSE(backend_get(backend, "a", 1, on_answer, &a));
    LONGS_EQUAL(0, a.calls);
}

TEST(Backend, test_commands_are_refused_until_the_handshake_is_answered)
{
    snprintf(config.redis_password, sizeof(config.redis_password), "secret");
    BackendTarget target;
    char err[256];
    CHECK(backend_target_resolve(sock.address().c_str(), &target, err, sizeof(err)));
    backend = backend_create(base, &config, &target, &stats, 42, nullptr);
    sock.accept_one();
    std::string auth = "*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n";
    STRCMP_EQUAL(auth.c_str(), peer_reads(auth.size()).c_str());
    Answer a;
    CHECK_FALSE(backend_get(backend, "a", 1, on_answer, &a));  // connected, AUTH not answered yet
    peer_writes("+OK\r\n");
    run_until([&] { return backend_ready(backend); });
    CHECK(backend_get(backend, "a", 1, on_answer, &a));
}

TEST(Backend, test_a_late_reply_times_out_only_its_own_command)
{
    config.command_timeout_ms = 100;
    start();
    Answer late, young;
    CHECK(backend_get(backend, "late", 4, on_answer, &late));
    usleep(60 * 1000);
    CHECK(backend_get(backend, "young", 5, on_answer, &young));
    run_until([&] { return late.calls > 0; });
    LONGS_EQUAL(BACKEND_TIMEOUT, late.failure);
    LONGS_EQUAL(0, young.calls);  // its own deadline is still ahead
    // Both replies come now: the late one is dropped, the younger command gets its own.
    peer_writes("$4\r\nLATE\r\n$5\r\nYOUNG\r\n");
    run_until([&] { return young.calls > 0; });
    LONGS_EQUAL(BACKEND_OK, young.failure);
    STRCMP_EQUAL("YOUNG", young.value.c_str());
    LONGS_EQUAL(1, late.calls);
    CHECK(backend_ready(backend));  // the connection was kept
    LONGS_EQUAL(0, backend_outstanding(backend));
    LONGS_EQUAL(1, stats.redis_timeouts);
}

TEST(Backend, test_a_command_sent_after_one_was_abandoned_keeps_its_own_deadline)
{
    config.command_timeout_ms = 200;
    start();
    Answer first, second;
    CHECK(backend_get(backend, "a", 1, on_answer, &first));
    run_until([&] { return first.calls > 0; });  // abandoned: the timer now waits for the reset
    struct timespec sent;
    clock_gettime(CLOCK_MONOTONIC, &sent);
    CHECK(backend_get(backend, "b", 1, on_answer, &second));
    run_until([&] { return second.calls > 0; });
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long waited_ms = (now.tv_sec - sent.tv_sec) * 1000 + (now.tv_nsec - sent.tv_nsec) / 1000000;
    LONGS_EQUAL(BACKEND_TIMEOUT, second.failure);
    CHECK_TEXT(waited_ms < 300, "answered by the reset, not by its own deadline");
    CHECK(backend_ready(backend));  // and the connection was kept
}

TEST(Backend, test_no_reply_within_command_timeout_then_abandoned_commands_reset_the_connection)
{
    config.command_timeout_ms = 50;
    start();
    Answer a;
    CHECK(backend_get(backend, "a", 1, on_answer, &a));
    run_until([&] { return a.calls > 0; });
    LONGS_EQUAL(BACKEND_TIMEOUT, a.failure);
    LONGS_EQUAL(0, untrusted_calls);  // late is not out of step
    CHECK(backend_ready(backend));  // abandoned in place, for now
    // Still no reply at 3 x command_timeout: the connection itself is given up on.
    run_until([&] { return peer_sees_close(); });
    LONGS_EQUAL(1, a.calls);
}
