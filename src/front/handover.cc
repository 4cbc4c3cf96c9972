#include "handover.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static const uint32_t HANDOVER_MAGIC = 0x72706878;  // "rphx"

struct HandoverHeader {
    uint32_t magic;
    uint32_t kind;
};

bool handover_send(int channel, HandoverKind kind, const int *fds, int nfds, const void *data, size_t len)
{
    if (nfds < 0 || nfds > HANDOVER_MAX_FDS) {
        errno = EINVAL;
        return false;
    }
    HandoverHeader header = {HANDOVER_MAGIC, (uint32_t)kind};
    struct iovec iov[2] = {{&header, sizeof(header)}, {(void *)data, len}};
    char control[CMSG_SPACE(sizeof(int) * HANDOVER_MAX_FDS)];
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = len > 0 ? 2 : 1;
    if (nfds > 0) {
        memset(control, 0, sizeof(control));
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * (size_t)nfds);
    }
    return sendmsg(channel, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)(sizeof(header) + len);
}

int handover_recv(int channel, HandoverKind *kind, int *fds, int max_fds, int *nfds, void *data, size_t cap,
                  size_t *len)
{
    HandoverHeader header;
    struct iovec iov[2] = {{&header, sizeof(header)}, {data, cap}};
    char control[CMSG_SPACE(sizeof(int) * HANDOVER_MAX_FDS)];
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    *nfds = 0;
    ssize_t got = recvmsg(channel, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (got == 0)
        return -2;
    if (got < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -2;
    for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg != NULL; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
        if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
            continue;
        int n = (int)((cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cmsg) + (size_t)i * sizeof(int), sizeof(int));
            if (*nfds < max_fds)
                fds[(*nfds)++] = fd;
            else
                close(fd);
        }
    }
    if (got < (ssize_t)sizeof(header) || header.magic != HANDOVER_MAGIC || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        for (int i = 0; i < *nfds; i++)
            close(fds[i]);
        *nfds = 0;
        return -1;
    }
    *kind = (HandoverKind)header.kind;
    *len = (size_t)got - sizeof(header);
    return 1;
}
