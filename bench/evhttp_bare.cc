// The HTTP ceiling of the design's library: evhttp answering a fixed 32-byte body with the same
// headers a proxy hit carries, in N processes on SO_REUSEPORT sockets, as the proxy runs, and
// with the settings every production server needs and the proxy sets (an idle timeout, header
// and body limits). Without the idle timeout evhttp saves a timer re-arm on every read and write,
// about 1,300 instructions a request: that would measure a server nobody should deploy.
// usage: evhttp-bare PORT PROCESSES
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static const char BODY[] = "0123456789abcdef0123456789abcdef";

static void on_request(evhttp_request *req, void *)
{
    evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", "application/octet-stream");
    evhttp_add_header(headers, "X-Cache", "HIT");
    evbuffer_add(evhttp_request_get_output_buffer(req), BODY, sizeof(BODY) - 1);
    evhttp_send_reply(req, 200, "OK", NULL);
}

static int listen_socket(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(fd, SOMAXCONN) != 0) {
        perror("bind");
        exit(1);
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: evhttp-bare PORT PROCESSES\n");
        return 2;
    }
    int port = atoi(argv[1]), processes = atoi(argv[2]);
    signal(SIGPIPE, SIG_IGN);
    int fds[64];
    for (int i = 0; i < processes && i < 64; i++)
        fds[i] = listen_socket(port);
    for (int i = 0; i < processes && i < 64; i++) {
        if (fork() == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            event_base *base = event_base_new();
            evhttp *http = evhttp_new(base);
            evhttp_set_gencb(http, on_request, NULL);
            evhttp_set_timeout(http, 60);
            evhttp_set_max_headers_size(http, 3 * 8192 + 16 * 1024);
            evhttp_set_max_body_size(http, 64 * 1024);
            evhttp_bind_listener(http, evconnlistener_new(base, NULL, NULL, 0, 0, fds[i]));
            event_base_dispatch(base);
            return 0;
        }
    }
    fprintf(stderr, "evhttp-bare: ready on 127.0.0.1:%d with %d processes\n", port, processes);
    while (wait(NULL) > 0) {
    }
    return 0;
}
