// The settings: one table row per key drives parsing, defaults, validation, -o, -T and the
// README's reference. Adding a setting is adding a field here and a row in config.cc.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "acl.h"
#include "tls.h"

static const int CONFIG_MAX_SETTINGS = 64;
static const int CONFIG_MAX_WORKERS = 256;
static const int CONFIG_MAX_SEEDS = 16;
static const int CONFIG_SEED_SIZE = 280;
static const int CONFIG_MAX_LISTEN = 4;  // addresses per front (listen, resp_listen, [admin] listen)

enum Invalidation { INVALIDATION_TRACKING, INVALIDATION_OFF };
enum AutoSwitch { SWITCH_AUTO, SWITCH_ON, SWITCH_OFF };

struct Config {
    // [proxy]
    char listen[280];       // addresses, each maybe followed by "tls" (config_split_listen)
    char resp_listen[280];  // likewise; empty: no RESP front
    int64_t resp_max_args;
    int64_t workers;  // 0 = auto (one per CPU)
    int64_t max_clients;
    int64_t client_timeout_ms;
    int64_t request_timeout_ms;
    int64_t shutdown_timeout_ms;
    char pid_file[256];  // where the master writes its PID; empty: nowhere
    int64_t protected_mode;  // 1: with no [users], only loopback clients are served
    int64_t max_key_size;
    int64_t max_request_size;   // one RESP command's bytes
    int64_t max_client_output;  // one client's answers not yet read
    int64_t max_client_memory;  // per worker, all clients together; 0: no bound
    // [redis]
    char redis_address[280];
    char redis_cluster[1024];  // seed nodes; empty: one Redis at redis_address
    int64_t cluster_refresh_ms;
    char redis_username[128];
    char redis_password[256];
    char redis_password_file[256];  // the password read from this file instead (at each load)
    int64_t redis_tls;               // 1: every connection to Redis is TLS (tls.h)
    char redis_tls_ca_file[256];     // the CAs Redis's certificate is checked against; empty: the system's
    char redis_tls_cert_file[256];   // the proxy's own certificate (mutual TLS); empty: none
    char redis_tls_key_file[256];
    char redis_tls_server_name[256]; // sent as SNI and verified; empty: the address's host
    int64_t redis_tls_verify;        // 0: Redis's certificate is not checked (warned at start)
    int64_t redis_database;
    int64_t connect_timeout_ms;
    int64_t command_timeout_ms;
    int64_t redis_max_reply_size;
    // [cache]
    int64_t ttl_ms;
    int64_t capacity;
    int64_t max_value_size;
    int64_t max_memory;       // bytes per worker; 0: the capacity (keys) only
    int64_t invalidation;     // enum Invalidation
    int64_t heartbeat_ms;
    int64_t cache_not_found;  // enum AutoSwitch
    int64_t stale_if_error_ms;
    int64_t follow_key_expiry;  // 1: each miss asks the key's PTTL too; an entry never outlives its key
    // [http]
    char http_content_type[128];  // of a value's answer
    int64_t http_etag;            // 1: an ETag on every 200, and If-None-Match answered 304
    char http_cache_control[256]; // a Cache-Control header for downstream caches (with Age); empty: none
    char admin_listen[280];  // empty: off
    int64_t admin_max_clients;  // per worker
    int64_t admin_timeout_ms;   // an admin connection idle this long is closed
    char admin_token[256];      // a bearer token /metrics asks for; empty: none
    char admin_token_file[256]; // the token read from this file instead (at each load)
    // [tls]: the listeners marked tls (tls.h)
    char tls_cert_file[256];   // the proxy's certificate chain (PEM)
    char tls_key_file[256];    // its private key (PEM)
    char tls_ca_file[256];     // when set, clients present a certificate these CAs signed
    char tls_protocols[64];    // "TLSv1.2 TLSv1.3" or one of them
    char tls_ciphers[512];     // OpenSSL's cipher list for TLS 1.2; empty: OpenSSL's default
    // [log]
    int64_t log_level;
    char log_access[256];  // "off", "stderr" or a file's path (access_log.h)

    // [users]: who may read, and which keys (acl.h). None: no authentication, and protected mode.
    AclUsers users;

    // Where each setting was last set, for the errors that involve two settings: a line of
    // source_path (> 0), a -o override (-1), or its default (0). Indexed like the settings table.
    char source_path[256];
    int source_line[CONFIG_MAX_SETTINGS];
};

// [redis]'s TLS files and checks, as tls_client_context takes them (tls.h).
struct TlsClientFiles config_redis_tls(const Config *c);
// [tls], as tls_server_context takes it (tls.h).
struct TlsServerFiles config_client_tls(const Config *c);

// One address of a listen setting: "127.0.0.1:8080, *:8443 tls" has two.
struct ListenAddress {
    char address[256];  // host:port
    bool tls;           // followed by the word tls: its clients speak TLS ([tls])
};

// The addresses of a listen setting, into out (room: CONFIG_MAX_LISTEN; may be NULL). Returns how
// many (0 for an empty text), or -1 with a reason in err that names the setting as `what`.
int config_split_listen(const char *text, const char *what, ListenAddress *out, char *err, size_t errlen);
// The listen settings of the three fronts (0: HTTP, 1: RESP, 2: admin), as written.
const char *config_listen_text(const Config *c, int front);
// Whether any listener is marked tls.
bool config_listens_tls(const Config *c);

// Every setting at its default.
void config_defaults(Config *c);

// Reads an INI file over the current settings. On error, writes "FILE:LINE: what" to err.
bool config_load_file(Config *c, const char *path, char *err, size_t errlen);

// Applies one "-o section.key=value" override. On error, writes "-o ARG: what" to err.
bool config_override(Config *c, const char *arg, char *err, size_t errlen);

// Checks what involves two settings (username needs password, resp_listen apart from listen,
// max_reply_size fits a max_value_size value). On error, writes "FILE:LINE: what" to err, for the
// line of the setting given last (or "-o section.key: what" when an override gave it).
bool config_validate(const Config *c, char *err, size_t errlen);

// Where the configuration comes from: the file and the -o overrides, kept for reloads.
struct ConfigSource {
    const char *path;
    const char *const *overrides;
    int override_count;
};

// Everything start-up and reload do to get a configuration: defaults, the file, the overrides,
// the checks between settings. On error, writes what is wrong (with FILE:LINE) to err.
bool config_load(Config *c, const ConfigSource *source, char *err, size_t errlen);

// Prints every setting as "section.key = value", secrets masked (for -T).
void config_print(const Config *c, FILE *out);
// Every setting as a markdown table (section, name, default, values, meaning): the reference in
// docs/configuration.md is this output (make docs), and a test holds them equal.
void config_print_reference(FILE *out);

// Value parsers, exposed for tests. Durations: 500ms, 60s, 5m, 1h, bare = seconds.
// Sizes: 512, 8k, 1m, 1g (powers of 1024).
bool parse_duration_ms(const char *text, int64_t *out);
bool parse_size(const char *text, int64_t *out);

// Whether a "not found" is cached: cache_not_found, where auto means with tracking only.
bool config_caches_not_found(const Config *c);

// The seed nodes of [redis] cluster, copied into seeds (when not NULL). Returns how many (0 for
// an empty text), or -1 with a reason in err.
int config_split_seeds(const char *text, char (*seeds)[CONFIG_SEED_SIZE], char *err, size_t errlen);

// The exit status for a configuration that cannot run: invalid, or an address it names is in use
// (EX_CONFIG of sysexits.h). The systemd unit names it in RestartPreventExitStatus=: restarting
// would only fail the same way, and hide the reason behind the start limit.
static const int EXIT_CONFIG = 78;

// Number of workers to start: the setting, or for auto the CPUs this process may use (cpus.h).
int config_worker_count(const Config *c);
