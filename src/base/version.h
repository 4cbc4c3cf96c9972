// The one place the version is written: -v, HELLO and INFO report it.
#pragma once

#define REDIS_PROXY_VERSION "0.1.0"
