#include "listen_group.h"

#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "address.h"

static bool resolve(const char *text, struct sockaddr_storage *ss, socklen_t *len, char *err, size_t errlen)
{
    Address a;
    const char *why;
    if (!address_parse(text, false, &a, &why)) {
        snprintf(err, errlen, "'%s': %s", text, why);
        return false;
    }
    return address_resolve(&a, true, ss, len, err, errlen);
}

// One more socket in the group, bound to g->bound (which carries the port the kernel picked
// when the configured one is 0).
static int add_socket(ListenGroup *g, char *err, size_t errlen)
{
    int on = 1;
    int fd = socket(g->bound.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
        bind(fd, (struct sockaddr *)&g->bound, g->bound_len) != 0 || listen(fd, SOMAXCONN) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", g->text, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

ListenGroup *listen_group_open(const char *what, const char *text, int sockets, char *err, size_t errlen)
{
    ListenGroup *g = (ListenGroup *)calloc(1, sizeof(ListenGroup));
    if (g == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    g->what = what;
    snprintf(g->text, sizeof(g->text), "%s", text);
    char why[300];
    if (!resolve(text, &g->requested, &g->requested_len, why, sizeof(why))) {
        snprintf(err, errlen, "%s listen %s", what, why);
        free(g);
        return NULL;
    }
    g->bound = g->requested;
    g->bound_len = g->requested_len;
    const struct sockaddr_in *in = (const struct sockaddr_in *)&g->requested;  // port: same place in v6
    if (in->sin_port != 0) {
        // SO_REUSEPORT would let us join a group that another process (say, a second
        // redis-proxy) already listens on, silently splitting its traffic. A plain bind first
        // turns that into the usual "Address already in use".
        int on = 1;
        int probe = socket(g->requested.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool free_port = probe >= 0 && setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == 0 &&
                         bind(probe, (struct sockaddr *)&g->requested, g->requested_len) == 0;
        int probe_errno = errno;
        if (probe >= 0)
            close(probe);
        if (!free_port) {
            snprintf(err, errlen, "cannot listen on %s: %s", text, strerror(probe_errno));
            free(g);
            errno = probe_errno;  // for the caller: in use, or not allowed, or not there (yet)
            return NULL;
        }
    }
    if (!listen_group_grow(g, sockets, err, errlen)) {
        listen_group_close(g);
        return NULL;
    }
    return g;
}

bool listen_group_same_address(const ListenGroup *g, const char *text)
{
    if (strcmp(g->text, text) == 0)
        return true;
    struct sockaddr_storage ss;
    socklen_t len;
    char err[300];
    return resolve(text, &ss, &len, err, sizeof(err)) && len == g->requested_len &&
           memcmp(&ss, &g->requested, len) == 0;
}

// Picks one of `n` sockets (by index in the group, in `targets`) from the client's address and
// port. The kernel runs it with the packet's payload at offset 0 (a SYN has none), so the headers
// are read through SKF_NET_OFF. An IPv4 header with options makes it read the wrong port: still
// a valid pick. A load past the packet makes the program return 0: the first socket, also a
// valid pick. The multiply-and-shift spreads ports that all have the same parity (as Linux hands
// them out); a table of one comparison per target turns the pick into a socket's index (CBPF has
// no arrays).
static bool attach_steering(ListenGroup *g, const int *targets, int n)
{
    struct sock_filter code[15 + 2 * LISTEN_GROUP_MAX_SOCKETS];
    const struct sock_filter hash[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, (__u32)SKF_NET_OFF),  // IP version
        BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 4),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 6, 0, 4),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (__u32)SKF_NET_OFF + 20),  // IPv6: source address, last word
        BPF_STMT(BPF_MISC | BPF_TAX, 0),
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, (__u32)SKF_NET_OFF + 40),  // source port
        BPF_JUMP(BPF_JMP | BPF_JA, 3, 0, 0),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (__u32)SKF_NET_OFF + 12),  // IPv4: source address
        BPF_STMT(BPF_MISC | BPF_TAX, 0),
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, (__u32)SKF_NET_OFF + 20),  // source port
        BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
        BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, 0x9E3779B1u),
        BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),
        BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, (__u32)n),
    };
    if (n < 1 || n > LISTEN_GROUP_MAX_SOCKETS)
        return false;
    size_t len = sizeof(hash) / sizeof(hash[0]);
    memcpy(code, hash, sizeof(hash));
    for (int k = 0; k < n; k++) {
        code[len++] = BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (__u32)k, 0, 1);
        code[len++] = BPF_STMT(BPF_RET | BPF_K, (__u32)targets[k]);
    }
    code[len++] = BPF_STMT(BPF_RET | BPF_A, 0);  // unreachable: A < n
    struct sock_fprog prog = {(unsigned short)len, code};
    // The program belongs to the kernel's group: set on any one socket, it applies to all.
    if (setsockopt(g->fds[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) != 0)
        return false;
    g->steered = true;
    return true;
}

static bool steer_to_first(ListenGroup *g, int active)
{
    int targets[LISTEN_GROUP_MAX_SOCKETS];
    for (int i = 0; i < active; i++)
        targets[i] = i;
    if (!attach_steering(g, targets, active))
        return false;
    g->active = active;
    return true;
}

bool listen_group_steer(ListenGroup *g, int active)
{
    if (active < 1 || active > g->count)
        return false;
    if (!g->steered && active == g->count) {
        g->active = active;
        return true;  // the kernel's own spreading over every socket
    }
    return steer_to_first(g, active);
}

bool listen_group_steer_to(ListenGroup *g, const bool *serving)
{
    int targets[LISTEN_GROUP_MAX_SOCKETS], n = 0;
    for (int i = 0; i < g->active; i++)
        if (serving[i])
            targets[n++] = i;
    if (n == g->active)
        return listen_group_steer(g, g->active);
    if (n == 0)
        return true;  // nobody serves: wherever they queue, they wait
    return attach_steering(g, targets, n);
}

bool listen_group_grow(ListenGroup *g, int sockets, char *err, size_t errlen)
{
    if (sockets <= g->count)
        return true;
    int *fds = (int *)realloc(g->fds, (size_t)sockets * sizeof(int));
    if (fds == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    g->fds = fds;
    // Sockets joining a group that already serves traffic must get no connections before a
    // worker serves them: steer to the present ones first.
    if (g->count > 0)
        steer_to_first(g, g->active);
    int had = g->count;
    while (g->count < sockets) {
        int fd = add_socket(g, err, errlen);
        if (fd < 0) {
            listen_group_shrink(g, had);
            return false;
        }
        if (g->count == 0) {
            // With port 0 the kernel picked a port for the first socket: the others share it.
            g->bound_len = sizeof(g->bound);
            getsockname(fd, (struct sockaddr *)&g->bound, &g->bound_len);
        }
        g->fds[g->count++] = fd;
    }
    if (had == 0)
        g->active = g->count;
    return true;
}

void listen_group_shrink(ListenGroup *g, int sockets)
{
    // From the last: the kernel moves the group's last socket into a closed one's place, so
    // this keeps the order of the ones left.
    while (g->count > sockets)
        close(g->fds[--g->count]);
    if (g->active > g->count)
        g->active = g->count;
}

int listen_group_sockets_of(const ListenGroup *g, int slot, int workers, int *out)
{
    int n = 0;
    for (int i = slot; i < g->count; i += workers)
        out[n++] = g->fds[i];
    return n;
}

void listen_group_close(ListenGroup *g)
{
    if (g == NULL)
        return;
    for (int i = 0; i < g->count; i++)
        close(g->fds[i]);
    free(g->fds);
    free(g);
}
