#include "coherence.h"

#include "fetch_table.h"

bool coherence_entry_is_hit(uint64_t stored_us, bool absent, const KeyTrust *trust)
{
    return stored_us > trust->distrusted_us && !(absent && trust->migrating);
}

bool coherence_may_join(const Flight *f, const KeyTrust *trust)
{
    return !f->invalidated && f->sent_us > trust->distrusted_us;
}

bool coherence_reply_cacheable(const Flight *f, const KeyTrust *trust, bool from_owner, bool absent)
{
    return from_owner && trust->caching && !(absent && trust->migrating) && coherence_may_join(f, trust);
}
