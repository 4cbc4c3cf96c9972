#include "service_notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"

static void send(const char *state)
{
    const char *socket = getenv("NOTIFY_SOCKET");
    if (socket == NULL || socket[0] == '\0')
        return;  // not started by a service manager (sd_notify itself refuses an empty one)
    int rc = sd_notify(0, state);
    if (rc < 0)
        log_warn("cannot notify the service manager at %s (%.*s): %s", socket, (int)strcspn(state, "\n"),
                 state, strerror(-rc));
}

void notify_ready(const char *status)
{
    char state[320];
    snprintf(state, sizeof(state), "READY=1\nSTATUS=%s", status);
    send(state);
}

void notify_status(const char *status)
{
    char state[320];
    snprintf(state, sizeof(state), "STATUS=%s", status);
    send(state);
}

void notify_stopping(void) { send("STOPPING=1\nSTATUS=stopping"); }

void notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char state[96];
    snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    send(state);
}
