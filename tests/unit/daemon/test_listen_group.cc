// Listening groups on real loopback sockets (kernel-chosen ports): where the kernel puts new
// connections once the group is steered, grown or shrunk.
#include <CppUTest/TestHarness.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen_group.h"

static const int CLIENTS = 200;

static int port_of(const ListenGroup *g) { return ntohs(((const struct sockaddr_in *)&g->bound)->sin_port); }

// Opens `n` connections to the group and returns, per socket, how many it has queued (accepted
// here and closed).
static void connect_and_count(ListenGroup *g, int n, int *per_socket)
{
    int clients[CLIENTS];
    for (int i = 0; i < n; i++) {
        clients[i] = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(clients[i] >= 0);
        // The handshake completes in the kernel: the connection sits in one socket's queue.
        CHECK_EQUAL(0, connect(clients[i], (struct sockaddr *)&g->bound, g->bound_len));
    }
    for (int s = 0; s < g->count; s++) {
        per_socket[s] = 0;
        int fd;
        while ((fd = accept(g->fds[s], NULL, NULL)) >= 0) {  // non-blocking: EAGAIN when empty
            per_socket[s]++;
            close(fd);
        }
        LONGS_EQUAL(EAGAIN, errno);
    }
    for (int i = 0; i < n; i++)
        close(clients[i]);
}

TEST_GROUP(ListenGroup)
{
    ListenGroup *g = nullptr;
    char err[400];
    void teardown() override { listen_group_close(g); }
};

TEST(ListenGroup, test_sockets_share_the_port_the_kernel_picked)
{
    g = listen_group_open("HTTP", "127.0.0.1:0", 3, err, sizeof(err));
    CHECK_TEXT(g != nullptr, err);
    LONGS_EQUAL(3, g->count);
    LONGS_EQUAL(3, g->active);
    CHECK(port_of(g) != 0);
    int per[3];
    connect_and_count(g, CLIENTS, per);
    LONGS_EQUAL(CLIENTS, per[0] + per[1] + per[2]);
}

TEST(ListenGroup, test_steering_sends_nothing_to_surplus_sockets_and_spreads_the_rest)
{
    g = listen_group_open("HTTP", "127.0.0.1:0", 3, err, sizeof(err));
    CHECK_TEXT(g != nullptr, err);
    CHECK(listen_group_steer(g, 2));
    int per[3];
    connect_and_count(g, CLIENTS, per);
    LONGS_EQUAL(0, per[2]);
    LONGS_EQUAL(CLIENTS, per[0] + per[1]);
    // Linux gives one client's ports the same parity: a plain port % 2 would put all on one.
    CHECK_TEXT(per[0] > CLIENTS / 4 && per[1] > CLIENTS / 4, "uneven spread");
}

TEST(ListenGroup, test_grown_sockets_get_connections_only_once_steered_in)
{
    g = listen_group_open("HTTP", "127.0.0.1:0", 2, err, sizeof(err));
    CHECK_TEXT(g != nullptr, err);
    int port = port_of(g);
    CHECK_TEXT(listen_group_grow(g, 4, err, sizeof(err)), err);
    LONGS_EQUAL(4, g->count);
    LONGS_EQUAL(port, port_of(g));
    int per[4];
    connect_and_count(g, CLIENTS, per);
    LONGS_EQUAL(0, per[2] + per[3]);
    CHECK(listen_group_steer(g, 4));
    connect_and_count(g, CLIENTS, per);
    for (int s = 0; s < 4; s++)
        CHECK_TEXT(per[s] > CLIENTS / 10, "a steered-in socket got too few connections");
}

TEST(ListenGroup, test_an_address_another_socket_listens_on_is_refused)
{
    int other = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQUAL(0, bind(other, (struct sockaddr *)&sin, sizeof(sin)));
    CHECK_EQUAL(0, listen(other, 1));
    socklen_t len = sizeof(sin);
    getsockname(other, (struct sockaddr *)&sin, &len);
    char text[64];
    snprintf(text, sizeof(text), "127.0.0.1:%d", ntohs(sin.sin_port));
    g = listen_group_open("HTTP", text, 2, err, sizeof(err));
    close(other);
    POINTERS_EQUAL(nullptr, g);
    STRCMP_CONTAINS("Address already in use", err);
}

TEST(ListenGroup, test_same_address_compares_what_the_text_resolves_to)
{
    g = listen_group_open("HTTP", "127.0.0.1:0", 1, err, sizeof(err));
    CHECK_TEXT(g != nullptr, err);
    CHECK(listen_group_same_address(g, "127.0.0.1:0"));
    CHECK_FALSE(listen_group_same_address(g, "127.0.0.1:1"));
    CHECK_FALSE(listen_group_same_address(g, "not an address"));
}

TEST(ListenGroup, test_surplus_sockets_are_shared_out_among_the_workers)
{
    g = listen_group_open("HTTP", "127.0.0.1:0", 5, err, sizeof(err));
    CHECK_TEXT(g != nullptr, err);
    int out[5];
    LONGS_EQUAL(3, listen_group_sockets_of(g, 0, 2, out));
    LONGS_EQUAL(g->fds[0], out[0]);
    LONGS_EQUAL(g->fds[2], out[1]);
    LONGS_EQUAL(g->fds[4], out[2]);
    LONGS_EQUAL(2, listen_group_sockets_of(g, 1, 2, out));
    LONGS_EQUAL(g->fds[1], out[0]);
    LONGS_EQUAL(g->fds[3], out[1]);
}

TEST(ListenGroup, test_sockets_whose_worker_does_not_serve_get_no_new_connections)
{
    g = listen_group_open("HTTP", "127.0.0.1:0", 3, err, sizeof(err));
    CHECK_TEXT(g != nullptr, err);
    bool serving[3] = {true, false, true};  // the worker of socket 1 died and waits for its respawn
    CHECK(listen_group_steer_to(g, serving));
    int per[3];
    connect_and_count(g, CLIENTS, per);
    LONGS_EQUAL(0, per[1]);
    LONGS_EQUAL(CLIENTS, per[0] + per[2]);
    CHECK_TEXT(per[0] > CLIENTS / 4 && per[2] > CLIENTS / 4, "uneven spread");
    serving[1] = true;  // back
    CHECK(listen_group_steer_to(g, serving));
    connect_and_count(g, CLIENTS, per);
    for (int s = 0; s < 3; s++)
        CHECK_TEXT(per[s] > CLIENTS / 10, "a socket served again got too few connections");
    bool none[3] = {false, false, false};  // nobody serves: nothing to choose, nothing changes
    CHECK(listen_group_steer_to(g, none));
}
