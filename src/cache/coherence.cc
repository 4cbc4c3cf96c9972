#include "coherence.h"

Flight *coherence_joinable_flight(FetchTable *t, const char *key, size_t len, uint64_t hash, const KeyTrust *trust,
                                  FlightKind kind)
{
    Flight *f = fetch_table_find(t, key, len, hash, kind);
    if (f != NULL && !coherence_may_join(f, trust)) {
        fetch_table_detach(t, f);
        return NULL;
    }
    return f;
}
