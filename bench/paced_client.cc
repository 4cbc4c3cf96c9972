// An open-loop HTTP load generator: sends GETs at a fixed rate over keep-alive connections and
// reports latency percentiles, measured from when each request was *due*, so time spent queued
// behind a slow answer counts (no coordinated omission). wrk2 does this; Debian has no wrk2.
// usage: paced-client PORT RATE SECONDS CONNECTIONS KEYS [PREFIX SUFFIX]
//   requests GET PREFIX key:%012d SUFFIX, a random key each (PREFIX "/" and SUFFIX "" by default;
//   webdis: "/GET/" and ".txt")
// Prints one line of name=value fields: the rate reached, errors, percentiles, and quantiles_ms,
// the distribution as quantile:milliseconds pairs.
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <deque>
#include <vector>

static double now_us()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

struct Conn;
struct Load {
    event_base *base;
    int port, keys;
    const char *prefix = "/", *suffix = "";
    double rate, start_us, end_us;
    long scheduled = 0, errors = 0;
    std::deque<double> due;  // requests due but not yet sent: every connection was busy
    std::vector<Conn *> idle;
    std::vector<double> latencies_us;
    event *tick;
};

struct Conn {
    Load *load;
    bufferevent *bev;
    double due_us;  // of the request in flight
    bool busy;
};

static void send_request(Conn *c, double due_us)
{
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %skey:%012d%s HTTP/1.1\r\nHost: bench\r\n\r\n", c->load->prefix,
                     rand() % c->load->keys, c->load->suffix);
    c->due_us = due_us;
    c->busy = true;
    bufferevent_write(c->bev, req, (size_t)n);
}

// Reads one whole response (headers, then Content-Length bytes of body) if it has arrived.
static void on_read(bufferevent *bev, void *arg)
{
    Conn *c = (Conn *)arg;
    evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0)
            return;
        size_t header_len = (size_t)end.pos + 4;
        char *head = (char *)evbuffer_pullup(in, (ev_ssize_t)header_len);
        const char *cl = strcasestr(head, "\r\nContent-Length:");
        size_t body = cl ? strtoul(cl + 17, NULL, 10) : 0;
        if (evbuffer_get_length(in) < header_len + body)
            return;
        if (strncmp(head, "HTTP/1.1 200", 12) != 0)
            c->load->errors++;
        evbuffer_drain(in, header_len + body);
        Load *l = c->load;
        l->latencies_us.push_back(now_us() - c->due_us);
        c->busy = false;
        if (!l->due.empty()) {
            double due = l->due.front();
            l->due.pop_front();
            send_request(c, due);
        } else {
            l->idle.push_back(c);
        }
    }
}

static void on_event(bufferevent *, short what, void *)
{
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
        fprintf(stderr, "paced-client: connection failed\n");
        exit(1);
    }
}

static void on_tick(evutil_socket_t, short, void *arg)
{
    Load *l = (Load *)arg;
    double now = now_us();
    double until = now < l->end_us ? now : l->end_us;
    // Every request due by now goes out (or queues, with its due time, if all connections are busy).
    while (l->start_us + l->scheduled * 1e6 / l->rate <= until) {
        double due = l->start_us + l->scheduled * 1e6 / l->rate;
        l->scheduled++;
        if (!l->idle.empty()) {
            Conn *c = l->idle.back();
            l->idle.pop_back();
            send_request(c, due);
        } else {
            l->due.push_back(due);
        }
    }
    if (now >= l->end_us && l->due.empty() && (long)l->latencies_us.size() >= l->scheduled)
        event_base_loopbreak(l->base);
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 8) {
        fprintf(stderr, "usage: paced-client PORT RATE SECONDS CONNECTIONS KEYS [PREFIX SUFFIX]\n");
        return 2;
    }
    Load l;
    l.port = atoi(argv[1]);
    l.rate = atof(argv[2]);
    double seconds = atof(argv[3]);
    int conns = atoi(argv[4]);
    l.keys = atoi(argv[5]);
    if (argc == 8) {
        l.prefix = argv[6];
        l.suffix = argv[7];
    }
    // Without PRECISE_TIMER libevent 2.1 keeps time with CLOCK_MONOTONIC_COARSE (4 ms ticks here)
    // and sleeps in whole milliseconds: requests would leave up to 4 ms after they are due, and
    // that delay would be counted as the server's latency.
    event_config *cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    l.base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)l.port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < conns; i++) {
        Conn *c = new Conn{&l, bufferevent_socket_new(l.base, -1, BEV_OPT_CLOSE_ON_FREE), 0, false};
        bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
            fprintf(stderr, "paced-client: cannot connect\n");
            return 1;
        }
        int on = 1;
        setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        l.idle.push_back(c);
    }
    l.start_us = now_us() + 100000;  // let the connections establish
    l.end_us = l.start_us + seconds * 1e6;
    l.tick = event_new(l.base, -1, EV_PERSIST, on_tick, &l);
    struct timeval tv = {0, 100};  // fine-grained: requests go out close to when they are due
    event_add(l.tick, &tv);
    event_base_dispatch(l.base);
    std::vector<double> &v = l.latencies_us;
    std::sort(v.begin(), v.end());
    auto pct = [&](double p) { return v.empty() ? 0.0 : v[(size_t)(p * (double)(v.size() - 1))] / 1000.0; };
    printf("requests=%zu rate=%.0f errors=%ld p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f",
           v.size(), (double)v.size() / seconds, l.errors, pct(0.5), pct(0.99), pct(0.999), pct(1.0));
    // The whole distribution, for the bench's latency plot: quantile:ms pairs, from the median
    // to the maximum, denser in the tail, where the servers differ.
    static const double quantiles[] = {0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0};
    printf(" quantiles_ms=");
    for (size_t i = 0; i < sizeof(quantiles) / sizeof(quantiles[0]); i++)
        printf("%s%g:%.3f", i ? "," : "", quantiles[i], pct(quantiles[i]));
    printf("\n");
    return 0;
}
