// Redis Cluster's hash slot of a key, exactly as Redis computes it: CRC16 (XMODEM) of the key,
// or of its hash tag, modulo 16384. The hash tag is what lies between the first '{' and the first
// '}' after it, when that is not empty: "{user1000}.following" and "{user1000}.followers" share a
// slot. Pure; the cluster routes every command by it (cluster_routing.cc).
#pragma once

#include <stddef.h>
#include <stdint.h>

static const int CLUSTER_SLOTS = 16384;

uint16_t cluster_crc16(const char *bytes, size_t len);
int cluster_key_slot(const char *key, size_t len);
