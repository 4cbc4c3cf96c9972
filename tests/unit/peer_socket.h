// A Redis played by hand for unit tests: a unix socket the code under test connects to, the
// peer's end of that connection, and a loop driver to run the code's event base until something
// happened. Shared by the backend's tests and lookup's.
#pragma once

#include <CppUTest/TestHarness.h>

#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <string>

struct PeerSocket {
    char path[108];
    int listener = -1, peer = -1;
    event_base *base = nullptr;

    // Listens on /tmp/<name>_<pid>.sock; `base` is the loop the code under test runs on.
    void listen_as(const char *name, event_base *loop)
    {
        base = loop;
        snprintf(path, sizeof(path), "/tmp/%s_%d.sock", name, (int)getpid());
        unlink(path);
        listener = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sun;
        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        strcpy(sun.sun_path, path);
        CHECK(bind(listener, (struct sockaddr *)&sun, sizeof(sun)) == 0);
        CHECK(::listen(listener, 4) == 0);
    }

    std::string address() const { return std::string("unix:") + path; }

    void accept_one()
    {
        peer = accept(listener, nullptr, nullptr);
        CHECK(peer >= 0);
    }

    void close_all()
    {
        if (peer >= 0)
            close(peer);
        if (listener >= 0)
            close(listener);
        peer = listener = -1;
        unlink(path);
    }

    // Runs the loop until done(), for 5 s at most.
    template <typename F> void run_until(F done)
    {
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        while (!done()) {
            event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            CHECK_TEXT(now.tv_sec - start.tv_sec < 5, "timed out");
            usleep(100);
        }
    }

    // What the code wrote to the peer so far, once it has written `expect` bytes.
    std::string reads(size_t expect)
    {
        std::string got;
        run_until([&] {
            char buf[4096];
            ssize_t n = recv(peer, buf, sizeof(buf), MSG_DONTWAIT);
            if (n > 0)
                got.append(buf, (size_t)n);
            return got.size() >= expect;
        });
        return got;
    }

    // Whatever more it wrote after one more turn of the loop (empty: nothing).
    std::string more()
    {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        char buf[4096];
        ssize_t n = recv(peer, buf, sizeof(buf), MSG_DONTWAIT);
        return n > 0 ? std::string(buf, (size_t)n) : std::string();
    }

    void writes(const std::string &bytes) { CHECK(write(peer, bytes.data(), bytes.size()) == (ssize_t)bytes.size()); }

    bool sees_close()
    {
        char c;
        return recv(peer, &c, 1, MSG_DONTWAIT) == 0;
    }
};
