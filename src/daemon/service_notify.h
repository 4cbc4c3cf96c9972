// The systemd notify protocol (sd_notify(3), Type=notify): READY=1 once the proxy serves,
// STATUS= lines, STOPPING=1. Each call is a no-op when NOTIFY_SOCKET is not set, so the proxy
// runs the same outside systemd.
#pragma once

void notify_ready(const char *status);
void notify_status(const char *status);
void notify_stopping(void);
// RELOADING=1 with MONOTONIC_USEC (systemd 253+ wants it); READY=1 ends the reload.
void notify_reloading(void);
