#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "address.h"
#include "cpus.h"
#include "log.h"

enum SettingType {
    SETTING_STRING,    // free text
    SETTING_LISTEN,    // host:port [tls], ... (config_split_listen)
    SETTING_OPTIONAL_LISTEN,  // the same, or empty for off
    SETTING_UPSTREAM,  // host:port or unix:/path
    SETTING_SEEDS,     // empty, or host:port host:port ... (spaces or commas between)
    SETTING_COUNT,     // integer within [min, max]
    SETTING_WORKERS,   // integer, or "auto" (stored as 0)
    SETTING_DURATION,  // milliseconds
    SETTING_SIZE,      // bytes
    SETTING_LOG_LEVEL,     // one of the names below, stored as its index
    SETTING_INVALIDATION,
    SETTING_AUTO_SWITCH,
    SETTING_SWITCH,    // "off" (0) or "on" (1)
};

static const char *const log_level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const invalidation_names[] = {"tracking", "off", NULL};  // enum Invalidation
static const char *const auto_switch_names[] = {"auto", "on", "off", NULL};  // enum AutoSwitch
static const char *const switch_names[] = {"off", "on", NULL};

// The names a choice setting takes, NULL for the other types.
static const char *const *choice_names(SettingType type)
{
    return type == SETTING_LOG_LEVEL      ? log_level_names
           : type == SETTING_INVALIDATION ? invalidation_names
           : type == SETTING_AUTO_SWITCH  ? auto_switch_names
           : type == SETTING_SWITCH       ? switch_names
                                          : NULL;
}

struct Setting {
    const char *section;
    const char *name;
    SettingType type;
    size_t offset;  // into Config
    size_t size;    // of a string field
    const char *default_value;
    int64_t min, max;  // bounds of numeric values, in stored units
    bool secret;       // masked by -T
    const char *help;  // one line of meaning: conf/proxy.ini's comment, docs/configuration.md's column
};

#define FIELD(f) offsetof(Config, f), sizeof(((Config *)0)->f)
#define KIB 1024LL
#define MIB (1024LL * 1024)
#define GIB (1024LL * 1024 * 1024)
#define MINUTE_MS (60LL * 1000)
#define HOUR_MS (3600LL * 1000)

static const Setting settings[] = {
    {"proxy", "listen", SETTING_LISTEN, FIELD(listen), "127.0.0.1:8080", 0, 0, false,
     "HTTP front, host:port ([::1]:8080 for IPv6, *:8080 for all IPv4); several with commas, each maybe "
     "followed by tls (HTTPS, [tls])"},
    {"proxy", "resp_listen", SETTING_OPTIONAL_LISTEN, FIELD(resp_listen), "", 0, 0, false,
     "Redis-protocol front for redis-cli and client libraries, addresses as listen (tls: redis-cli --tls); "
     "empty = off"},
    {"proxy", "resp_max_args", SETTING_COUNT, FIELD(resp_max_args), "10000", 2, 1000000, false,
     "most arguments in one RESP command (keys in an MGET)"},
    {"proxy", "workers", SETTING_WORKERS, FIELD(workers), "auto", 1, CONFIG_MAX_WORKERS, false,
     "worker processes; auto = one per CPU it may use (affinity, cgroup quota)"},
    {"proxy", "max_clients", SETTING_COUNT, FIELD(max_clients), "10000", 1, 1000000, false,
     "client connections across all workers; past it, new ones wait in the kernel backlog"},
    {"proxy", "client_timeout", SETTING_DURATION, FIELD(client_timeout_ms), "60s", 1000, 24 * HOUR_MS, false,
     "idle keep-alive connections are closed after this"},
    {"proxy", "request_timeout", SETTING_DURATION, FIELD(request_timeout_ms), "10s", 100, HOUR_MS, false,
     "a request (or RESP command) must be complete this long after its first byte"},
    {"proxy", "shutdown_timeout", SETTING_DURATION, FIELD(shutdown_timeout_ms), "10s", 100, HOUR_MS, false,
     "SIGTERM waits this long at most for answers in flight"},
    {"proxy", "pid_file", SETTING_STRING, FIELD(pid_file), "", 0, 0, false,
     "the master's PID, for redis-proxy -s reload|stop|quit|reopen; empty = none"},
    {"proxy", "protected_mode", SETTING_SWITCH, FIELD(protected_mode), "on", 0, 0, false,
     "while nobody must log in (no [users], or default nopass): loopback clients only, as Redis's; off: any"},
    {"proxy", "max_key_size", SETTING_SIZE, FIELD(max_key_size), "8k", 1, 65535, false,
     "longer keys are refused (HTTP 414)"},
    {"proxy", "max_request_size", SETTING_SIZE, FIELD(max_request_size), "4m", 1024, GIB, false,
     "the largest RESP command; past it: an error, and the client is closed"},
    {"proxy", "max_client_output", SETTING_SIZE, FIELD(max_client_output), "64m", 64 * KIB, 64 * GIB, false,
     "one client's answers not yet read; past it the client is closed"},
    {"proxy", "max_client_memory", SETTING_SIZE, FIELD(max_client_memory), "1g", 0, 1024 * GIB, false,
     "per worker, all clients together; past it the one holding the most is closed"},
    {"redis", "address", SETTING_UPSTREAM, FIELD(redis_address), "127.0.0.1:6379", 0, 0, false,
     "host:port, [ipv6]:port or unix:/path/to/redis.sock"},
    {"redis", "cluster", SETTING_SEEDS, FIELD(redis_cluster), "", 0, 0, false,
     "a Redis Cluster's seed nodes, instead of address"},
    {"redis", "cluster_refresh", SETTING_DURATION, FIELD(cluster_refresh_ms), "1s", 100, MINUTE_MS, false,
     "with cluster: how often the slot map is reread"},
    {"redis", "username", SETTING_STRING, FIELD(redis_username), "", 0, 0, false,
     "ACL user (Redis 6+); leave empty for the default user"},
    {"redis", "password", SETTING_STRING, FIELD(redis_password), "", 0, 0, true,
     "sent with AUTH after each connect when set"},
    {"redis", "password_file", SETTING_STRING, FIELD(redis_password_file), "", 0, 0, false,
     "the password read from this file instead (not readable by others; read at each reload)"},
    {"redis", "tls", SETTING_SWITCH, FIELD(redis_tls), "off", 0, 0, false,
     "on: every connection to Redis (data, invalidation, cluster nodes) is TLS"},
    {"redis", "tls_ca_file", SETTING_STRING, FIELD(redis_tls_ca_file), "", 0, 0, false,
     "the CAs Redis's certificate must chain to (PEM); empty: the system's trust store"},
    {"redis", "tls_cert_file", SETTING_STRING, FIELD(redis_tls_cert_file), "", 0, 0, false,
     "the proxy's certificate chain, for Redis's tls-auth-clients (mutual TLS); empty: none"},
    {"redis", "tls_key_file", SETTING_STRING, FIELD(redis_tls_key_file), "", 0, 0, false,
     "tls_cert_file's private key (PEM)"},
    {"redis", "tls_server_name", SETTING_STRING, FIELD(redis_tls_server_name), "", 0, 0, false,
     "sent as SNI and checked against the certificate; empty: the address's host"},
    {"redis", "tls_verify", SETTING_SWITCH, FIELD(redis_tls_verify), "on", 0, 0, false,
     "off: Redis's certificate is not checked (warned at start): for tests only"},
    {"redis", "database", SETTING_COUNT, FIELD(redis_database), "0", 0, 1000000, false,
     "SELECTed after each connect when not 0"},
    {"redis", "connect_timeout", SETTING_DURATION, FIELD(connect_timeout_ms), "1s", 1, MINUTE_MS, false,
     "give up a connection attempt after this, then retry with backoff"},
    // A worker holds every request behind a slow reply: a minute is already far past useful.
    {"redis", "command_timeout", SETTING_DURATION, FIELD(command_timeout_ms), "1s", 1, MINUTE_MS, false,
     "a GET unanswered after this fails with 504 (that GET only)"},
    {"redis", "max_reply_size", SETTING_SIZE, FIELD(redis_max_reply_size), "8m", 1024, 2 * GIB, false,
     "largest reply taken from Redis (a value, or a whole MGET answer)"},
    {"cache", "ttl", SETTING_DURATION, FIELD(ttl_ms), "60s", 1, 365 * 24 * HOUR_MS, false,
     "an entry expires this long after it was added (reads do not extend it)"},
    {"cache", "capacity", SETTING_COUNT, FIELD(capacity), "10000", 1, 1000000000, false,
     "keys, per worker (with workers = 1 the proxy holds exactly this many)"},
    {"cache", "max_value_size", SETTING_SIZE, FIELD(max_value_size), "1m", 0, 512 * MIB, false,
     "larger values are served but not cached"},
    {"cache", "max_memory", SETTING_SIZE, FIELD(max_memory), "0", 0, 1024 * GIB, false,
     "bytes per worker, e.g. 256m (LRU evicts until it fits); 0 = keys only"},
    {"cache", "invalidation", SETTING_INVALIDATION, FIELD(invalidation), "tracking", 0, 0, false,
     "Redis tells each worker when a cached key changes | off (TTL only)"},
    {"cache", "heartbeat", SETTING_DURATION, FIELD(heartbeat_ms), "1s", 100, MINUTE_MS, false,
     "with tracking: staleness bound if the invalidation link dies silently"},
    {"cache", "cache_not_found", SETTING_AUTO_SWITCH, FIELD(cache_not_found), "auto", 0, 0, false,
     "cache \"no such key\" too: on | off | auto (on with tracking)"},
    {"cache", "stale_if_error", SETTING_DURATION, FIELD(stale_if_error_ms), "0s", 0, 24 * HOUR_MS, false,
     "answer an entry expired no longer ago than this while Redis is down"},
    {"cache", "follow_key_expiry", SETTING_SWITCH, FIELD(follow_key_expiry), "on", 0, 0, false,
     "an entry never outlives its key in Redis (a PTTL with each miss)"},
    {"http", "content_type", SETTING_STRING, FIELD(http_content_type), "application/octet-stream", 0, 0, false,
     "of a value's answer; e.g. text/plain; charset=utf-8"},
    {"http", "etag", SETTING_SWITCH, FIELD(http_etag), "off", 0, 0, false,
     "on: an ETag per value (8 bytes per entry) and If-None-Match answered 304"},
    {"http", "cache_control", SETTING_STRING, FIELD(http_cache_control), "", 0, 0, false,
     "e.g. public, max-age=30: sent with Age on every 200; empty: none"},
    {"admin", "listen", SETTING_OPTIONAL_LISTEN, FIELD(admin_listen), "127.0.0.1:9121", 0, 0, false,
     "/metrics (Prometheus), /healthz, /readyz, addresses as [proxy] listen; empty = off"},
    {"admin", "max_clients", SETTING_COUNT, FIELD(admin_max_clients), "16", 1, 10000, false,
     "admin connections per worker; past it new ones wait"},
    {"admin", "timeout", SETTING_DURATION, FIELD(admin_timeout_ms), "10s", 1000, HOUR_MS, false,
     "an admin connection is closed this long after it opened"},
    {"admin", "token", SETTING_STRING, FIELD(admin_token), "", 0, 0, true,
     "when set, /metrics asks for Authorization: Bearer <token>; /healthz and /readyz stay open"},
    {"admin", "token_file", SETTING_STRING, FIELD(admin_token_file), "", 0, 0, false,
     "the token read from this file instead (not readable by others; read at each reload)"},
    {"tls", "cert_file", SETTING_STRING, FIELD(tls_cert_file), "", 0, 0, false,
     "for listeners marked tls: the proxy's certificate chain (PEM); read again at each reload"},
    {"tls", "key_file", SETTING_STRING, FIELD(tls_key_file), "", 0, 0, false,
     "cert_file's private key (PEM, not encrypted)"},
    {"tls", "ca_file", SETTING_STRING, FIELD(tls_ca_file), "", 0, 0, false,
     "when set, TLS clients must present a certificate these CAs signed (mutual TLS)"},
    {"tls", "protocols", SETTING_STRING, FIELD(tls_protocols), "TLSv1.2 TLSv1.3", 0, 0, false,
     "TLSv1.2, TLSv1.3 or both"},
    {"tls", "ciphers", SETTING_STRING, FIELD(tls_ciphers), "", 0, 0, false,
     "OpenSSL cipher list for TLS 1.2; empty: OpenSSL's default (TLS 1.3's suites are OpenSSL's)"},
    {"log", "level", SETTING_LOG_LEVEL, FIELD(log_level), "info", 0, 0, false,
     "error | warn | info | debug"},
    {"log", "access", SETTING_STRING, FIELD(log_access), "off", 0, 0, false,
     "one line per request: off | stderr | a file's path (reopened on SIGUSR1)"},
};
static const size_t settings_count = sizeof(settings) / sizeof(settings[0]);
static_assert(sizeof(settings) / sizeof(settings[0]) <= (size_t)CONFIG_MAX_SETTINGS, "raise CONFIG_MAX_SETTINGS");

static bool parse_with_suffix(const char *text, int64_t *out, const char *const *suffixes,
                              const int64_t *factors, size_t n, int64_t bare_factor)
{
    if (!isdigit((unsigned char)text[0]))
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0)
        return false;
    int64_t factor = -1;
    if (*end == '\0') {
        factor = bare_factor;
    } else {
        for (size_t i = 0; i < n; i++)
            if (strcasecmp(end, suffixes[i]) == 0)
                factor = factors[i];
    }
    if (factor < 0 || v > (unsigned long long)(INT64_MAX / factor))
        return false;
    *out = (int64_t)v * factor;
    return true;
}

bool parse_duration_ms(const char *text, int64_t *out)
{
    static const char *const suffixes[] = {"ms", "s", "m", "h"};
    static const int64_t factors[] = {1, 1000, 60 * 1000, HOUR_MS};
    return parse_with_suffix(text, out, suffixes, factors, 4, 1000);
}

bool parse_size(const char *text, int64_t *out)
{
    static const char *const suffixes[] = {"k", "m", "g", "kb", "mb", "gb"};
    static const int64_t factors[] = {KIB, MIB, GIB, KIB, MIB, GIB};
    return parse_with_suffix(text, out, suffixes, factors, 6, 1);
}

static void format_value(const Setting *s, const Config *c, char *out, size_t outlen)
{
    const char *field = (const char *)c + s->offset;
    int64_t v = 0;
    bool is_text = s->type == SETTING_STRING || s->type == SETTING_LISTEN ||
                   s->type == SETTING_OPTIONAL_LISTEN || s->type == SETTING_UPSTREAM || s->type == SETTING_SEEDS;
    if (!is_text)
        memcpy(&v, field, sizeof(v));
    switch (s->type) {
    case SETTING_STRING:
    case SETTING_LISTEN:
    case SETTING_OPTIONAL_LISTEN:
    case SETTING_UPSTREAM:
    case SETTING_SEEDS:
        snprintf(out, outlen, "%s", (s->secret && field[0]) ? "********" : field);
        break;
    case SETTING_WORKERS:
        if (v == 0)
            snprintf(out, outlen, "auto");
        else
            snprintf(out, outlen, "%lld", (long long)v);
        break;
    case SETTING_COUNT:
        snprintf(out, outlen, "%lld", (long long)v);
        break;
    case SETTING_DURATION:
        if (v % 1000 != 0)
            snprintf(out, outlen, "%lldms", (long long)v);
        else
            snprintf(out, outlen, "%llds", (long long)(v / 1000));
        break;
    case SETTING_SIZE:
        if (v != 0 && v % MIB == 0)
            snprintf(out, outlen, "%lldm", (long long)(v / MIB));
        else if (v != 0 && v % KIB == 0)
            snprintf(out, outlen, "%lldk", (long long)(v / KIB));
        else
            snprintf(out, outlen, "%lld", (long long)v);
        break;
    case SETTING_LOG_LEVEL:
    case SETTING_INVALIDATION:
    case SETTING_AUTO_SWITCH:
    case SETTING_SWITCH:
        snprintf(out, outlen, "%s", choice_names(s->type)[v]);
        break;
    }
}

// Stores one value into its field, or explains in err why it cannot.
static bool setting_apply(const Setting *s, Config *c, const char *value, char *err, size_t errlen)
{
    char *field = (char *)c + s->offset;
    int64_t v = 0;
    const char *why = NULL;
    switch (s->type) {
    case SETTING_STRING:
    case SETTING_LISTEN:
    case SETTING_OPTIONAL_LISTEN:
    case SETTING_UPSTREAM:
    case SETTING_SEEDS:
        if (strlen(value) >= s->size) {
            snprintf(err, errlen, "value for %s in [%s] is too long (at most %zu characters)",
                     s->name, s->section, s->size - 1);
            return false;
        }
        if (s->type == SETTING_SEEDS) {
            if (config_split_seeds(value, NULL, err, errlen) < 0) {
                char why_seeds[256];
                snprintf(why_seeds, sizeof(why_seeds), "%s", err);
                snprintf(err, errlen, "invalid value for %s in [%s]: %s", s->name, s->section, why_seeds);
                return false;
            }
        } else if (s->type == SETTING_LISTEN || s->type == SETTING_OPTIONAL_LISTEN) {
            char what[64];
            snprintf(what, sizeof(what), "%s in [%s]", s->name, s->section);
            int n = config_split_listen(value, what, NULL, err, errlen);
            if (n < 0)
                return false;
            if (n == 0 && s->type == SETTING_LISTEN) {
                snprintf(err, errlen, "invalid address '' for %s: expected host:port", what);
                return false;
            }
        } else if (s->type != SETTING_STRING) {
            Address a;
            if (!address_parse(value, s->type == SETTING_UPSTREAM, &a, &why)) {
                snprintf(err, errlen, "invalid address '%s' for %s in [%s]: %s", value, s->name,
                         s->section, why);
                return false;
            }
        }
        strcpy(field, value);
        return true;
    case SETTING_WORKERS:
        if (strcmp(value, "auto") == 0) {
            memcpy(field, &v, sizeof(v));
            return true;
        }
        /* fall through */
    case SETTING_COUNT: {
        char *end;
        errno = 0;
        long long n = strtoll(value, &end, 10);
        if (value[0] == '\0' || *end != '\0' || errno != 0) {
            snprintf(err, errlen, "invalid value '%s' for %s in [%s]: expected a whole number%s",
                     value, s->name, s->section, s->type == SETTING_WORKERS ? " or auto" : "");
            return false;
        }
        v = n;
        break;
    }
    case SETTING_DURATION:
        if (!parse_duration_ms(value, &v)) {
            snprintf(err, errlen,
                     "invalid value '%s' for %s in [%s]: expected a duration like 500ms, 30s, 5m, 1h",
                     value, s->name, s->section);
            return false;
        }
        break;
    case SETTING_SIZE:
        if (!parse_size(value, &v)) {
            snprintf(err, errlen,
                     "invalid value '%s' for %s in [%s]: expected a size like 512, 8k, 1m, 1g",
                     value, s->name, s->section);
            return false;
        }
        break;
    case SETTING_LOG_LEVEL:
    case SETTING_INVALIDATION:
    case SETTING_AUTO_SWITCH:
    case SETTING_SWITCH: {
        const char *const *names = choice_names(s->type);
        for (v = 0; names[v] != NULL; v++)
            if (strcmp(value, names[v]) == 0)
                break;
        if (names[v] == NULL) {
            char expected[80] = "";
            for (int i = 0; names[i] != NULL; i++)
                snprintf(expected + strlen(expected), sizeof(expected) - strlen(expected), "%s%s",
                         i == 0 ? "" : names[i + 1] == NULL ? " or " : ", ", names[i]);
            snprintf(err, errlen, "invalid value '%s' for %s in [%s]: expected %s", value, s->name, s->section,
                     expected);
            return false;
        }
        memcpy(field, &v, sizeof(v));
        return true;
    }
    }
    if (v < s->min || v > s->max) {
        Config bounds;
        char lo[32], hi[32];
        memcpy((char *)&bounds + s->offset, &s->min, sizeof(v));
        format_value(s, &bounds, lo, sizeof(lo));
        memcpy((char *)&bounds + s->offset, &s->max, sizeof(v));
        format_value(s, &bounds, hi, sizeof(hi));
        snprintf(err, errlen, "%s in [%s] must be between %s and %s (got '%s')", s->name,
                 s->section, lo, hi, value);
        return false;
    }
    memcpy(field, &v, sizeof(v));
    return true;
}

static const Setting *setting_find(const char *section, const char *name)
{
    for (size_t i = 0; i < settings_count; i++)
        if (strcmp(settings[i].section, section) == 0 && strcmp(settings[i].name, name) == 0)
            return &settings[i];
    return NULL;
}

static bool section_known(const char *section)
{
    if (strcmp(section, "users") == 0)
        return true;
    for (size_t i = 0; i < settings_count; i++)
        if (strcmp(settings[i].section, section) == 0)
            return true;
    return false;
}

void config_defaults(Config *c)
{
    memset(c, 0, sizeof(*c));
    char err[256];
    for (size_t i = 0; i < settings_count; i++)
        if (!setting_apply(&settings[i], c, settings[i].default_value, err, sizeof(err)))
            abort();  // a bad default is a programming error
}

// State of one file load. inih (built without INI_HANDLER_LINENO) does not tell the handler
// which line it is on, so our own reader counts lines and screens what inih cannot report.
struct FileLoad {
    Config *config;
    FILE *file;
    int line;
    int set_on_line[sizeof(settings) / sizeof(settings[0])];
    int error_line;
    char error[512];
    char *text;  // the line being read (getline's buffer)
    size_t text_cap;
};

static void load_error(FileLoad *load, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void load_error(FileLoad *load, const char *fmt, ...)
{
    if (load->error_line != 0)
        return;  // report the first error only
    load->error_line = load->line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(load->error, sizeof(load->error), fmt, ap);
    va_end(ap);
}

// Hands inih one line at a time. Leading blanks are stripped so that an indented line is read
// as a line of its own, not as inih's multi-line continuation. A line longer than inih's
// buffer would be split silently by inih, and one with a NUL byte cut short at it: both are
// refused here instead.
static char *read_line(char *buf, int size, void *arg)
{
    FileLoad *load = (FileLoad *)arg;
    ssize_t got = getline(&load->text, &load->text_cap, load->file);
    if (got < 0)
        return NULL;
    load->line++;
    if (memchr(load->text, '\0', (size_t)got) != NULL) {
        load_error(load, "line contains a NUL byte");
        strcpy(buf, "\n");
        return buf;
    }
    const char *start = load->text;
    while (*start == ' ' || *start == '\t')
        start++;
    if (strlen(start) > (size_t)size - 1) {
        load_error(load, "line is too long (at most %d characters)", size - 2);
        strcpy(buf, "\n");
        return buf;
    }
    if (start[0] == '[') {
        const char *close = strchr(start, ']');
        if (close != NULL) {
            char section[64];
            size_t n = (size_t)(close - start - 1);
            if (n >= sizeof(section))
                n = sizeof(section) - 1;
            memcpy(section, start + 1, n);
            section[n] = '\0';
            if (!section_known(section))
                load_error(load, "unknown section [%s] (known: proxy, redis, cache, http, admin, log, users)", section);
        }
    }
    strcpy(buf, start);
    return buf;
}

static const char PASSWORD_FILE_SUFFIX[] = ".password_file";

// One line of [users]: `name = rules` (acl.h), applied over what earlier lines said of the user,
// as ACL SETUSER applies them (a user's rules may go on over several lines); or
// `name.password_file = PATH`, a password of the user's read from a file.
static bool config_apply_user(Config *c, const char *name, const char *value, char *err, size_t errlen)
{
    size_t len = strlen(name), suffix = sizeof(PASSWORD_FILE_SUFFIX) - 1;
    if (len > suffix && strcmp(name + len - suffix, PASSWORD_FILE_SUFFIX) == 0) {
        char user[ACL_MAX_NAME + 1], why[400];
        if (len - suffix > ACL_MAX_NAME) {
            snprintf(err, errlen, "user name in [users] '%.*s' is longer than %zu bytes", (int)(len - suffix), name,
                     ACL_MAX_NAME);
            return false;
        }
        memcpy(user, name, len - suffix);
        user[len - suffix] = '\0';
        char password[ACL_SECRET_MAX + 1];
        bool ok = acl_read_secret_file(value, password, sizeof(password), why, sizeof(why));
        if (ok)
            ok = acl_user_add_password(&c->users, user, password, strlen(password), why, sizeof(why));
        explicit_bzero(password, sizeof(password));
        if (!ok)
            snprintf(err, errlen, "%s in [users]: %s", name, why);
        return ok;
    }
    return acl_user_parse(&c->users, name, value, err, errlen);
}

static int on_ini_value(void *arg, const char *section, const char *name, const char *value)
{
    FileLoad *load = (FileLoad *)arg;
    if (section[0] == '\0') {
        load_error(load, "key '%s' is outside of any section", name);
        return 0;
    }
    if (!section_known(section))
        return 0;  // already reported at the section header
    if (strcmp(section, "users") == 0) {
        char err[512];
        if (!config_apply_user(load->config, name, value, err, sizeof(err))) {
            load_error(load, "%s", err);
            return 0;
        }
        return 1;
    }
    const Setting *s = setting_find(section, name);
    if (s == NULL) {
        load_error(load, "unknown key '%s' in [%s]", name, section);
        return 0;
    }
    size_t index = (size_t)(s - settings);
    // A list of seeds may go on over several lines (`cluster = ...` again adds to it): sixteen of
    // them do not fit in one of inih's 200-character lines.
    char joined[sizeof(load->config->redis_cluster) + 2];
    if (load->set_on_line[index] != 0 && s->type == SETTING_SEEDS) {
        const char *before = (const char *)load->config + s->offset;
        if ((size_t)snprintf(joined, sizeof(joined), "%s %s", before, value) >= sizeof(joined)) {
            load_error(load, "value for %s in [%s] is too long (at most %zu characters over all its lines)", name,
                       section, s->size - 1);
            return 0;
        }
        value = joined;
    } else if (load->set_on_line[index] != 0) {
        load_error(load, "duplicate key '%s' in [%s] (first set on line %d)", name, section,
                   load->set_on_line[index]);
        return 0;
    } else {
        load->set_on_line[index] = load->line;
        load->config->source_line[index] = load->line;
    }
    char err[512];
    if (!setting_apply(s, load->config, value, err, sizeof(err))) {
        load_error(load, "%s", err);
        return 0;
    }
    return 1;
}

bool config_load_file(Config *c, const char *path, char *err, size_t errlen)
{
    FileLoad load;
    memset(&load, 0, sizeof(load));
    load.config = c;
    load.file = fopen(path, "r");
    if (load.file == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return false;
    }
    snprintf(c->source_path, sizeof(c->source_path), "%s", path);
    int rc = ini_parse_stream(read_line, &load, on_ini_value, &load);
    bool read_failed = ferror(load.file);
    fclose(load.file);
    free(load.text);
    if (read_failed) {
        snprintf(err, errlen, "%s: read error", path);
        return false;
    }
    if (load.error_line != 0 && (rc <= 0 || load.error_line <= rc)) {
        snprintf(err, errlen, "%s:%d: %s", path, load.error_line, load.error);
        return false;
    }
    if (rc > 0) {
        snprintf(err, errlen, "%s:%d: syntax error: expected [section], key = value or a comment",
                 path, rc);
        return false;
    }
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot parse (out of memory)", path);
        return false;
    }
    return true;
}

bool config_override(Config *c, const char *arg, char *err, size_t errlen)
{
    const char *dot = strchr(arg, '.');
    const char *eq = strchr(arg, '=');
    if (dot == NULL || eq == NULL || dot > eq) {
        snprintf(err, errlen, "-o %s: expected section.key=value", arg);
        return false;
    }
    char section[64], name[128];
    size_t section_len = (size_t)(dot - arg), name_len = (size_t)(eq - dot - 1);
    if (section_len >= sizeof(section) || name_len >= sizeof(name)) {
        snprintf(err, errlen, "-o %s: unknown setting", arg);
        return false;
    }
    memcpy(section, arg, section_len);
    section[section_len] = '\0';
    memcpy(name, dot + 1, name_len);
    name[name_len] = '\0';
    char why[512];
    if (strcmp(section, "users") == 0) {
        if (!config_apply_user(c, name, eq + 1, why, sizeof(why))) {
            snprintf(err, errlen, "-o users.%s: %s", name, why);
            return false;
        }
        return true;
    }
    const Setting *s = setting_find(section, name);
    if (s == NULL) {
        snprintf(err, errlen, "-o %s: unknown setting %s.%s", arg, section, name);
        return false;
    }
    if (!setting_apply(s, c, eq + 1, why, sizeof(why))) {
        snprintf(err, errlen, "-o %s: %s", arg, why);
        return false;
    }
    c->source_line[s - settings] = -1;
    return true;
}

// Of two settings, the one given last: the override, else the later line, else the first.
// Text that goes into a header as it is: printable ASCII, spaces included, nothing that could end
// the header line.
static bool printable(const char *text)
{
    for (const char *ch = text; *ch != '\0'; ch++)
        if (*ch < ' ' || *ch > '~')
            return false;
    return true;
}

static const Setting *given_last(const Config *c, const Setting *a, const Setting *b)
{
    int la = c->source_line[a - settings], lb = c->source_line[b - settings];
    if (la == -1 || lb == -1)
        return la == -1 ? a : b;
    return lb > la ? b : a;
}

// An error about setting s: "FILE:LINE: what", "-o section.key: what", or plain for a default.
static bool validate_error(const Config *c, const Setting *s, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static bool validate_error(const Config *c, const Setting *s, char *err, size_t errlen, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    int line = c->source_line[s - settings];
    if (line > 0)
        snprintf(err, errlen, "%s:%d: %s", c->source_path, line, what);
    else if (line == -1)
        snprintf(err, errlen, "-o %s.%s: %s", s->section, s->name, what);
    else
        snprintf(err, errlen, "%s", what);
    return false;
}

// Two listen addresses that cannot both be bound: the same port on the same host, or on a
// wildcard address that covers the other. Port 0 (any free port) never clashes.
static bool listens_clash(const char *x, const char *y)
{
    Address a, b;
    const char *why;
    if (!address_parse(x, false, &a, &why) || !address_parse(y, false, &b, &why))
        return false;
    if (a.port != b.port || a.port == 0)
        return false;
    auto wildcard = [](const char *h) {
        return strcmp(h, "*") == 0 || strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0 || h[0] == '\0';
    };
    return strcmp(a.host, b.host) == 0 || wildcard(a.host) || wildcard(b.host);
}

int config_split_listen(const char *text, const char *what, ListenAddress *out, char *err, size_t errlen)
{
    int n = 0;
    const char *at = text;
    bool after_comma = false;
    while (true) {
        while (*at == ' ' || *at == '\t')
            at++;
        if (*at == '\0' && after_comma) {
            snprintf(err, errlen, "invalid value for %s: nothing after the last comma", what);
            return -1;
        }
        if (*at == '\0')
            break;
        size_t len = strcspn(at, ",");
        char item[sizeof(out->address)];
        if (len >= sizeof(item)) {
            snprintf(err, errlen, "invalid value for %s: an address is too long", what);
            return -1;
        }
        memcpy(item, at, len);
        item[len] = '\0';
        at += len;
        after_comma = *at == ',';
        if (after_comma)
            at++;
        // "host:port" or "host:port tls", spaces around either.
        char *end = item + strlen(item);
        while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        char *space = strpbrk(item, " \t");
        bool tls = false;
        if (space != NULL) {
            *space = '\0';
            const char *word = space + 1;
            while (*word == ' ' || *word == '\t')
                word++;
            if (strcmp(word, "tls") != 0) {
                snprintf(err, errlen, "invalid value for %s: '%s' after %s (an address may only be followed by tls)",
                         what, word, item);
                return -1;
            }
            tls = true;
        }
        if (item[0] == '\0') {
            snprintf(err, errlen, "invalid value for %s: an empty address between commas", what);
            return -1;
        }
        Address a;
        const char *why;
        if (!address_parse(item, false, &a, &why)) {
            snprintf(err, errlen, "invalid address '%s' for %s: %s", item, what, why);
            return -1;
        }
        if (n == CONFIG_MAX_LISTEN) {
            snprintf(err, errlen, "invalid value for %s: more than %d addresses", what, CONFIG_MAX_LISTEN);
            return -1;
        }
        if (out != NULL) {
            snprintf(out[n].address, sizeof(out[n].address), "%s", item);
            out[n].tls = tls;
        }
        n++;
    }
    return n;
}

const char *config_listen_text(const Config *c, int front)
{
    return front == 0 ? c->listen : front == 1 ? c->resp_listen : c->admin_listen;
}

bool config_listens_tls(const Config *c)
{
    char err[300];
    for (int front = 0; front < 3; front++) {
        ListenAddress at[CONFIG_MAX_LISTEN];
        int n = config_split_listen(config_listen_text(c, front), "", at, err, sizeof(err));
        for (int i = 0; i < n; i++)
            if (at[i].tls)
                return true;
    }
    return false;
}

// Two fronts' listen settings with addresses that clash; their texts in x and y.
static bool lists_clash(const char *x, const char *y, bool same, char *which, size_t len)
{
    ListenAddress a[CONFIG_MAX_LISTEN], b[CONFIG_MAX_LISTEN];
    char err[300];
    int na = config_split_listen(x, "", a, err, sizeof(err)), nb = config_split_listen(y, "", b, err, sizeof(err));
    for (int i = 0; i < na; i++)
        for (int j = same ? i + 1 : 0; j < nb; j++)
            if (listens_clash(a[i].address, b[j].address)) {
                // Named apart only when a list has more than one address: one each says it already.
                if (same)
                    snprintf(which, len, "%.250s and %.250s", a[i].address, b[j].address);
                else if (na > 1 || nb > 1)
                    snprintf(which, len, " (%.250s and %.250s)", a[i].address, b[j].address);
                else
                    which[0] = '\0';
                return true;
            }
    return false;
}

// Why the access log could not be appended to at `path`, or NULL when it could.
static const char *access_path_problem(const char *path)
{
    static char why[300];
    if (path[0] == '\0')
        return "is empty";
    struct stat st;
    if (stat(path, &st) == 0) {
        if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode))
            return "is not a regular file (a FIFO or a socket would stall a worker; for a pipe, use stderr)";
        if (access(path, W_OK) != 0) {
            snprintf(why, sizeof(why), "cannot be written: %s", strerror(errno));
            return why;
        }
        return NULL;
    }
    if (errno != ENOENT) {
        snprintf(why, sizeof(why), "cannot be looked at: %s", strerror(errno));
        return why;
    }
    char folder[sizeof(((Config *)0)->log_access)];
    snprintf(folder, sizeof(folder), "%s", path);
    char *slash = strrchr(folder, '/');
    if (slash == folder)
        folder[1] = '\0';
    else if (slash != NULL)
        *slash = '\0';
    else
        snprintf(folder, sizeof(folder), ".");
    if (access(folder, W_OK | X_OK) != 0) {
        snprintf(why, sizeof(why), "cannot be created: %s: %s", folder, strerror(errno));
        return why;
    }
    return NULL;
}

TlsClientFiles config_redis_tls(const Config *c)
{
    return {c->redis_tls_ca_file, c->redis_tls_cert_file, c->redis_tls_key_file, c->redis_tls_verify != 0};
}

TlsServerFiles config_client_tls(const Config *c)
{
    return {c->tls_cert_file, c->tls_key_file, c->tls_ca_file, c->tls_protocols, c->tls_ciphers};
}

bool config_validate(const Config *c, char *err, size_t errlen)
{
    const Setting *address = setting_find("redis", "address"), *cluster = setting_find("redis", "cluster");
    if (c->redis_cluster[0] != '\0' && c->source_line[address - settings] != 0)
        return validate_error(c, given_last(c, address, cluster), err, errlen,
                              "[redis] takes address (one Redis) or cluster (seed nodes of a Redis "
                              "Cluster), not both");
    const Setting *database = setting_find("redis", "database");
    if (c->redis_cluster[0] != '\0' && c->redis_database != 0)
        return validate_error(c, given_last(c, database, cluster), err, errlen,
                              "database in [redis] must be 0 with cluster: a Redis Cluster has one database");
    if (c->redis_username[0] != '\0' && c->redis_password[0] == '\0' && c->redis_password_file[0] == '\0')
        return validate_error(c, setting_find("redis", "username"), err, errlen,
                              "username in [redis] needs a password");
    const Setting *listen = setting_find("proxy", "listen"), *resp_listen = setting_find("proxy", "resp_listen");
    const Setting *admin = setting_find("admin", "listen");
    char which[600];
    static const char *const names[3] = {"listen in [proxy]", "resp_listen in [proxy]", "listen in [admin]"};
    const Setting *rows[3] = {listen, resp_listen, admin};
    for (int x = 0; x < 3; x++)
        if (lists_clash(config_listen_text(c, x), config_listen_text(c, x), true, which, sizeof(which)))
            return validate_error(c, rows[x], err, errlen, "%s: %s cannot share a port", names[x], which);
    if (lists_clash(c->resp_listen, c->listen, false, which, sizeof(which)))
        return validate_error(c, given_last(c, listen, resp_listen), err, errlen,
                              "resp_listen in [proxy] (%s) and listen (%s) cannot share a port%s",
                              c->resp_listen, c->listen, which);
    if (lists_clash(c->admin_listen, c->listen, false, which, sizeof(which)))
        return validate_error(c, given_last(c, listen, admin), err, errlen,
                              "listen in [admin] (%s) and listen in [proxy] (%s) cannot share a port%s",
                              c->admin_listen, c->listen, which);
    if (lists_clash(c->admin_listen, c->resp_listen, false, which, sizeof(which)))
        return validate_error(c, given_last(c, resp_listen, admin), err, errlen,
                              "listen in [admin] (%s) and resp_listen in [proxy] (%s) cannot share a port%s",
                              c->admin_listen, c->resp_listen, which);
    int min_version, max_version;
    if (!tls_parse_protocols(c->tls_protocols, &min_version, &max_version))
        return validate_error(c, setting_find("tls", "protocols"), err, errlen,
                              "protocols in [tls] (%s): expected TLSv1.2, TLSv1.3 or both", c->tls_protocols);
    if (config_listens_tls(c)) {
        // Loaded as the master will for the workers: a file that does not load, or a key that
        // does not match, fails the start or the reload (the running generation keeps serving).
        char why[600];
        TlsServerFiles files = config_client_tls(c);
        SSL_CTX *ctx = tls_server_context(&files, why, sizeof(why));
        const Setting *at = c->tls_cert_file[0] == '\0'  ? setting_find("tls", "cert_file")
                            : c->tls_key_file[0] == '\0' ? setting_find("tls", "key_file")
                            : strstr(why, "key_file") == why && strstr(why, "does not match") != NULL
                                ? given_last(c, setting_find("tls", "cert_file"), setting_find("tls", "key_file"))
                            : strstr(why, "key_file") == why ? setting_find("tls", "key_file")
                            : strstr(why, "ca_file") == why ? setting_find("tls", "ca_file")
                            : strstr(why, "ciphers") == why ? setting_find("tls", "ciphers")
                                                            : setting_find("tls", "cert_file");
        if (ctx == NULL)
            return validate_error(c, at, err, errlen, "%s", why);
        tls_context_free(ctx);
    }
    const Setting *reply = setting_find("redis", "max_reply_size"), *value = setting_find("cache", "max_value_size");
    if (c->redis_max_reply_size < c->max_value_size)
        return validate_error(c, given_last(c, reply, value), err, errlen,
                              "max_reply_size in [redis] (%lld bytes) is smaller than max_value_size in "
                              "[cache] (%lld bytes): such values could never be read",
                              (long long)c->redis_max_reply_size, (long long)c->max_value_size);
    if (c->http_content_type[0] == '\0' || !printable(c->http_content_type))
        return validate_error(c, setting_find("http", "content_type"), err, errlen,
                              "content_type in [http] must be a media type of printable characters, e.g. "
                              "text/plain; charset=utf-8");
    if (!printable(c->http_cache_control))
        return validate_error(c, setting_find("http", "cache_control"), err, errlen,
                              "cache_control in [http] must be printable characters, e.g. max-age=60");
    const Setting *request = setting_find("proxy", "max_request_size"), *key = setting_find("proxy", "max_key_size");
    if (c->max_request_size < c->max_key_size + 64)
        return validate_error(c, given_last(c, request, key), err, errlen,
                              "max_request_size in [proxy] (%lld bytes) cannot hold a GET of a key of max_key_size "
                              "(%lld bytes): make it at least %lld",
                              (long long)c->max_request_size, (long long)c->max_key_size,
                              (long long)c->max_key_size + 64);
    const Setting *memory = setting_find("proxy", "max_client_memory"), *output = setting_find("proxy", "max_client_output");
    if (c->max_client_memory != 0 && c->max_client_memory < c->max_client_output)
        return validate_error(c, given_last(c, memory, output), err, errlen,
                              "max_client_memory in [proxy] (%lld bytes) is smaller than max_client_output (%lld "
                              "bytes): one client could pass the whole worker's bound",
                              (long long)c->max_client_memory, (long long)c->max_client_output);
    const Setting *cert = setting_find("redis", "tls_cert_file"), *keyf = setting_find("redis", "tls_key_file");
    if ((c->redis_tls_cert_file[0] != '\0') != (c->redis_tls_key_file[0] != '\0'))
        return validate_error(c, given_last(c, cert, keyf), err, errlen,
                              "tls_cert_file and tls_key_file in [redis] go together: set both, or neither");
    if (c->redis_tls && strncmp(c->redis_address, "unix:", 5) == 0 && c->redis_cluster[0] == '\0')
        return validate_error(c, given_last(c, setting_find("redis", "tls"), setting_find("redis", "address")), err,
                              errlen, "tls in [redis] is for TCP: Redis serves no TLS on a unix socket (%s)",
                              c->redis_address);
    if (c->redis_tls) {
        // Loaded as each worker will: a file that does not load fails the start or the reload.
        char why[400];
        TlsClientFiles files = config_redis_tls(c);
        SSL_CTX *ctx = tls_client_context(&files, why, sizeof(why));
        if (ctx == NULL)
            return validate_error(c, setting_find("redis", "tls"), err, errlen, "%s", why);
        tls_context_free(ctx);
    }
    if (strcmp(c->log_access, "off") != 0 && strcmp(c->log_access, "stderr") != 0) {
        // Checked as each worker will open it, without creating or opening anything (-t must not
        // leave a root-owned file behind, nor wait on a FIFO): a file it may append to, or a
        // folder it may create one in.
        const char *why = access_path_problem(c->log_access);
        if (why != NULL)
            return validate_error(c, setting_find("log", "access"), err, errlen,
                                  "access in [log]: '%s' %s (off, stderr or a file's path)", c->log_access, why);
    }
    return true;
}

// A secret given as a file (password_file, token_file): read now, at every load, into its field.
// Refused when both are set, or when the file is readable by others (acl_read_secret_file).
static bool read_secret(Config *c, const char *section, const char *value_name, const char *file_name, char *err,
                        size_t errlen)
{
    const Setting *value = setting_find(section, value_name), *file = setting_find(section, file_name);
    char *field = (char *)c + value->offset;
    const char *path = (const char *)c + file->offset;
    if (path[0] == '\0')
        return true;
    if (field[0] != '\0')
        return validate_error(c, given_last(c, value, file), err, errlen,
                              "%s and %s in [%s]: set one or the other", value_name, file_name, section);
    char secret[ACL_SECRET_MAX + 1], why[400];
    bool ok = acl_read_secret_file(path, secret, sizeof(secret), why, sizeof(why));
    if (ok && strlen(secret) >= value->size)
        ok = snprintf(why, sizeof(why), "%s: longer than %zu bytes", path, value->size - 1) < 0;
    if (ok)
        memcpy(field, secret, strlen(secret) + 1);
    explicit_bzero(secret, sizeof(secret));
    if (!ok)
        return validate_error(c, file, err, errlen, "%s in [%s]: %s", file_name, section, why);
    return true;
}

bool config_load(Config *c, const ConfigSource *source, char *err, size_t errlen)
{
    config_defaults(c);
    if (!config_load_file(c, source->path, err, errlen))
        return false;
    for (int i = 0; i < source->override_count; i++)
        if (!config_override(c, source->overrides[i], err, errlen))
            return false;
    return config_validate(c, err, errlen) && read_secret(c, "redis", "password", "password_file", err, errlen) &&
           read_secret(c, "admin", "token", "token_file", err, errlen);
}

void config_print(const Config *c, FILE *out)
{
    for (size_t i = 0; i < settings_count; i++) {
        char value[300];
        format_value(&settings[i], c, value, sizeof(value));
        fprintf(out, "%s.%s = %s\n", settings[i].section, settings[i].name, value);
    }
    // The users, as their rules would say them, but for passwords: only how many (acl.h keeps
    // digests, and -T shows no secret, not even a digest).
    for (int i = 0; i < c->users.count; i++) {
        const AclUser *u = &c->users.users[i];
        fprintf(out, "users.%s = %s", u->name, u->enabled ? "on" : "off");
        if (u->nopass)
            fprintf(out, " nopass");
        else
            fprintf(out, " (%d password%s)", u->digest_count, u->digest_count == 1 ? "" : "s");
        if (u->allkeys)
            fprintf(out, " allkeys");
        for (int p = 0; p < u->pattern_count; p++) {
            int from = p == 0 ? 0 : u->pattern_end[p - 1];
            fprintf(out, " ~%.*s", u->pattern_end[p] - from, u->pattern_bytes + from);
        }
        fprintf(out, "\n");
    }
}

// What a setting takes, for the reference: a numeric one's bounds as the file writes them.
static void format_values(const Setting *s, char *out, size_t outlen)
{
    static const char *const text_kinds[] = {
        "text", "host:port [tls], ...", "host:port [tls], ..., or empty", "host:port, [ipv6]:port or unix:/path",
        "host:port ..."};
    const char *const *names = choice_names(s->type);
    switch (s->type) {
    case SETTING_STRING:
    case SETTING_LISTEN:
    case SETTING_OPTIONAL_LISTEN:
    case SETTING_UPSTREAM:
    case SETTING_SEEDS:
        snprintf(out, outlen, "%s", text_kinds[s->type - SETTING_STRING]);
        return;
    case SETTING_LOG_LEVEL:
    case SETTING_INVALIDATION:
    case SETTING_AUTO_SWITCH:
    case SETTING_SWITCH: {
        size_t at = 0;
        for (int i = 0; names[i] != NULL && at < outlen; i++)
            at += (size_t)snprintf(out + at, outlen - at, "%s%s", i ? " \\| " : "", names[i]);
        return;
    }
    default:
        break;
    }
    static Config scratch;  // a field to format each bound with, as -T formats a value
    char low[40], high[40];
    memcpy((char *)&scratch + s->offset, &s->min, sizeof(int64_t));
    format_value(s, &scratch, low, sizeof(low));
    memcpy((char *)&scratch + s->offset, &s->max, sizeof(int64_t));
    format_value(s, &scratch, high, sizeof(high));
    snprintf(out, outlen, "%s to %s%s", s->type == SETTING_WORKERS ? "1" : low, high,
             s->type == SETTING_WORKERS ? ", or auto" : "");
}

void config_print_reference(FILE *out)
{
    fprintf(out, "| section | setting | default | values | meaning |\n|---|---|---|---|---|\n");
    for (size_t i = 0; i < settings_count; i++) {
        const Setting *s = &settings[i];
        char values[200];
        format_values(s, values, sizeof(values));
        fprintf(out, "| %s | `%s` | %s%s%s | %s | ", s->section, s->name, s->default_value[0] ? "`" : "",
                s->default_value[0] ? s->default_value : "(empty)", s->default_value[0] ? "`" : "", values);
        for (const char *c = s->help; *c != '\0'; c++) {  // a | of the text is not a column's end
            if (*c == '|')
                fputc('\\', out);
            fputc(*c, out);
        }
        fprintf(out, " |\n");
    }
}

int config_split_seeds(const char *text, char (*seeds)[CONFIG_SEED_SIZE], char *err, size_t errlen)
{
    int n = 0;
    const char *at = text;
    for (;;) {
        at += strspn(at, " \t,");
        if (*at == '\0')
            break;
        size_t len = strcspn(at, " \t,");
        char seed[CONFIG_SEED_SIZE];
        if (len >= sizeof(seed)) {
            snprintf(err, errlen, "seed '%.*s...' is too long", 40, at);
            return -1;
        }
        memcpy(seed, at, len);
        seed[len] = '\0';
        Address a;
        const char *why;
        if (!address_parse(seed, false, &a, &why)) {
            snprintf(err, errlen, "seed '%s': %s", seed, why);
            return -1;
        }
        if (a.port == 0) {
            snprintf(err, errlen, "seed '%s': needs a port", seed);
            return -1;
        }
        if (n == CONFIG_MAX_SEEDS) {
            snprintf(err, errlen, "more than %d seed nodes", CONFIG_MAX_SEEDS);
            return -1;
        }
        if (seeds != NULL)
            memcpy(seeds[n], seed, len + 1);
        n++;
        at += len;
    }
    if (n == 0 && text[0] != '\0') {
        snprintf(err, errlen, "no seed node in '%s'", text);
        return -1;
    }
    return n;
}

int config_worker_count(const Config *c)
{
    if (c->workers > 0)
        return (int)c->workers;
    int n = cpus_usable();  // what the affinity mask and the cgroup's CPU quota allow
    return n > CONFIG_MAX_WORKERS ? CONFIG_MAX_WORKERS : n;
}

bool config_caches_not_found(const Config *c)
{
    return c->cache_not_found == SWITCH_ON ||
           (c->cache_not_found == SWITCH_AUTO && c->invalidation == INVALIDATION_TRACKING);
}
