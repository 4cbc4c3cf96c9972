#include "cluster_slot.h"

#include <string.h>

// CRC16-CCITT as XMODEM has it (polynomial 0x1021, initial value 0, no reflection), one byte at
// a time from a table built at compile time.
struct Crc16Table {
    uint16_t entry[256];
    constexpr Crc16Table() : entry()
    {
        for (int byte = 0; byte < 256; byte++) {
            uint16_t crc = (uint16_t)(byte << 8);
            for (int bit = 0; bit < 8; bit++)
                crc = (uint16_t)((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
            entry[byte] = crc;
        }
    }
};
static constexpr Crc16Table crc16_table;

uint16_t cluster_crc16(const char *bytes, size_t len)
{
    uint16_t crc = 0;
    const unsigned char *p = (const unsigned char *)bytes;
    for (size_t i = 0; i < len; i++)
        crc = (uint16_t)((crc << 8) ^ crc16_table.entry[((crc >> 8) ^ p[i]) & 0xff]);
    return crc;
}

int cluster_key_slot(const char *key, size_t len)
{
    const char *open = (const char *)memchr(key, '{', len);
    if (open != NULL) {
        size_t after = (size_t)(open - key) + 1;
        const char *close = (const char *)memchr(open + 1, '}', len - after);
        if (close != NULL && close > open + 1)  // an empty tag "{}" does not count
            return cluster_crc16(open + 1, (size_t)(close - open - 1)) & (CLUSTER_SLOTS - 1);
    }
    return cluster_crc16(key, len) & (CLUSTER_SLOTS - 1);
}
