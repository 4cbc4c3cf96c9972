// The container's health check (redis-proxy --health, health_probe.cc).
#pragma once

struct Config;

// Asks /readyz at the configuration's admin address. 0 when it answers 200 (every worker serves
// and reaches Redis), 1 otherwise (also when nothing answers within 2 s); its body on stdout.
int health_probe(const Config *config);
