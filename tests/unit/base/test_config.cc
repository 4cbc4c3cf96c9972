#include <CppUTest/TestHarness.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "config.h"

TEST_GROUP(Config)
{
    Config config;
    char err[1024];
    char path[64];

    void setup() override
    {
        config_defaults(&config);
        err[0] = '\0';
        strcpy(path, "/tmp/test_config_XXXXXX");
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        close(fd);
    }
    void teardown() override { unlink(path); }

    bool load(const char *text)
    {
        FILE *f = fopen(path, "w");
        fputs(text, f);
        fclose(f);
        return config_load_file(&config, path, err, sizeof(err));
    }
    // The error, with the temp file's name replaced by FILE.
    std::string error()
    {
        std::string e = err;
        size_t at = e.find(path);
        if (at != std::string::npos)
            e.replace(at, strlen(path), "FILE");
        return e;
    }
};

TEST(Config, test_defaults)
{
    STRCMP_EQUAL("127.0.0.1:8080", config.listen);
    STRCMP_EQUAL("", config.resp_listen);
    LONGS_EQUAL(10000, config.resp_max_args);
    LONGS_EQUAL(0, config.workers);
    LONGS_EQUAL(10000, config.max_clients);
    LONGS_EQUAL(60000, config.client_timeout_ms);
    LONGS_EQUAL(8192, config.max_key_size);
    STRCMP_EQUAL("127.0.0.1:6379", config.redis_address);
    LONGS_EQUAL(1000, config.connect_timeout_ms);
    LONGS_EQUAL(1000, config.command_timeout_ms);
    LONGS_EQUAL(60000, config.ttl_ms);
    LONGS_EQUAL(10000, config.capacity);
    LONGS_EQUAL(1024 * 1024, config.max_value_size);
    LONGS_EQUAL(2, config.log_level);
}

TEST(Config, test_full_file)
{
    CHECK_TRUE(load("; comment\n# another\n[proxy]\nlisten = [::1]:9000\nworkers = 4\n"
                    "max_clients=50\nclient_timeout = 1500ms\nmax_key_size = 1k\n\n"
                    "[redis]\naddress = unix:/run/redis.sock ; inline comment\nusername = app\n"
                    "password = secret\ndatabase = 3\nconnect_timeout = 2s\ncommand_timeout = 250ms\n"
                    "[cache]\n  ttl = 5m\ncapacity = 123\nmax_value_size = 2m\n[log]\nlevel = debug\n"));
    STRCMP_EQUAL("[::1]:9000", config.listen);
    LONGS_EQUAL(4, config.workers);
    LONGS_EQUAL(50, config.max_clients);
    LONGS_EQUAL(1500, config.client_timeout_ms);
    LONGS_EQUAL(1024, config.max_key_size);
    STRCMP_EQUAL("unix:/run/redis.sock", config.redis_address);
    STRCMP_EQUAL("app", config.redis_username);
    STRCMP_EQUAL("secret", config.redis_password);
    LONGS_EQUAL(3, config.redis_database);
    LONGS_EQUAL(2000, config.connect_timeout_ms);
    LONGS_EQUAL(250, config.command_timeout_ms);
    LONGS_EQUAL(300000, config.ttl_ms);
    LONGS_EQUAL(123, config.capacity);
    LONGS_EQUAL(2 * 1024 * 1024, config.max_value_size);
    LONGS_EQUAL(3, config.log_level);
    CHECK_TRUE(config_validate(&config, err, sizeof(err)));
}

TEST(Config, test_missing_file)
{
    CHECK_FALSE(config_load_file(&config, "/nonexistent/proxy.ini", err, sizeof(err)));
    STRCMP_EQUAL("/nonexistent/proxy.ini: cannot open: No such file or directory", err);
}

TEST(Config, test_unknown_key_names_line_and_section)
{
    CHECK_FALSE(load("[cache]\nttl = 5s\nttll = 5s\n"));
    STRCMP_EQUAL("FILE:3: unknown key 'ttll' in [cache]", error().c_str());
}

TEST(Config, test_unknown_section)
{
    CHECK_FALSE(load("[proxy]\nworkers = 1\n\n[cahce]\nttl = 5s\n"));
    STRCMP_EQUAL("FILE:4: unknown section [cahce] (known: proxy, redis, cache, http, admin, log, users)", error().c_str());
}

TEST(Config, test_unknown_empty_section)
{
    CHECK_FALSE(load("[proxy]\n[nope]\n"));
    STRCMP_EQUAL("FILE:2: unknown section [nope] (known: proxy, redis, cache, http, admin, log, users)", error().c_str());
}

TEST(Config, test_key_outside_section)
{
    CHECK_FALSE(load("ttl = 5s\n"));
    STRCMP_EQUAL("FILE:1: key 'ttl' is outside of any section", error().c_str());
}

TEST(Config, test_syntax_error)
{
    CHECK_FALSE(load("[proxy]\nworkers 4\n"));
    STRCMP_EQUAL("FILE:2: syntax error: expected [section], key = value or a comment", error().c_str());
}

TEST(Config, test_unterminated_section)
{
    CHECK_FALSE(load("[proxy\nworkers = 4\n"));
    STRCMP_EQUAL("FILE:1: syntax error: expected [section], key = value or a comment", error().c_str());
}

TEST(Config, test_duplicate_key)
{
    CHECK_FALSE(load("[cache]\nttl = 5s\ncapacity = 3\nttl = 6s\n"));
    STRCMP_EQUAL("FILE:4: duplicate key 'ttl' in [cache] (first set on line 2)", error().c_str());
}

TEST(Config, test_bad_duration)
{
    CHECK_FALSE(load("[cache]\nttl = 5 minutes\n"));
    STRCMP_EQUAL("FILE:2: invalid value '5 minutes' for ttl in [cache]: expected a duration like 500ms, 30s, 5m, 1h",
                 error().c_str());
}

TEST(Config, test_bad_size)
{
    CHECK_FALSE(load("[proxy]\nmax_key_size = lots\n"));
    STRCMP_EQUAL("FILE:2: invalid value 'lots' for max_key_size in [proxy]: expected a size like 512, 8k, 1m, 1g",
                 error().c_str());
}

TEST(Config, test_max_key_size_is_at_most_64k)
{
    CHECK_TRUE(load("[proxy]\nmax_key_size = 65535\n"));
    config_defaults(&config);
    CHECK_FALSE(load("[proxy]\nmax_key_size = 64k\n"));
    STRCMP_EQUAL("FILE:2: max_key_size in [proxy] must be between 1 and 65535 (got '64k')", error().c_str());
}

TEST(Config, test_bad_number)
{
    CHECK_FALSE(load("[cache]\ncapacity = 10x\n"));
    STRCMP_EQUAL("FILE:2: invalid value '10x' for capacity in [cache]: expected a whole number", error().c_str());
}

TEST(Config, test_out_of_range)
{
    CHECK_FALSE(load("[cache]\ncapacity = 0\n"));
    STRCMP_EQUAL("FILE:2: capacity in [cache] must be between 1 and 1000000000 (got '0')", error().c_str());
}

TEST(Config, test_duration_out_of_range_names_units)
{
    CHECK_FALSE(load("[proxy]\nclient_timeout = 10ms\n"));
    STRCMP_EQUAL("FILE:2: client_timeout in [proxy] must be between 1s and 86400s (got '10ms')", error().c_str());
}

TEST(Config, test_workers_auto_or_number)
{
    CHECK_TRUE(load("[proxy]\nworkers = auto\n"));
    LONGS_EQUAL(0, config.workers);
    CHECK(config_worker_count(&config) >= 1);
    config_defaults(&config);
    CHECK_FALSE(load("[proxy]\nworkers = many\n"));
    STRCMP_EQUAL("FILE:2: invalid value 'many' for workers in [proxy]: expected a whole number or auto",
                 error().c_str());
}

TEST(Config, test_bad_addresses)
{
    CHECK_FALSE(load("[proxy]\nlisten = localhost\n"));
    STRCMP_EQUAL("FILE:2: invalid address 'localhost' for listen in [proxy]: expected host:port", error().c_str());
    config_defaults(&config);
    CHECK_FALSE(load("[proxy]\nlisten = unix:/tmp/x.sock\n"));
    STRCMP_EQUAL("FILE:2: invalid address 'unix:/tmp/x.sock' for listen in [proxy]: a unix socket is not allowed here",
                 error().c_str());
    config_defaults(&config);
    CHECK_FALSE(load("[redis]\naddress = ::1:6379\n"));
    STRCMP_EQUAL("FILE:2: invalid address '::1:6379' for address in [redis]: an IPv6 address needs brackets: [::1]:port",
                 error().c_str());
    config_defaults(&config);
    CHECK_FALSE(load("[redis]\naddress = host:99999\n"));
    STRCMP_EQUAL("FILE:2: invalid address 'host:99999' for address in [redis]: port must be a number from 0 to 65535",
                 error().c_str());
}

TEST(Config, test_resp_listen_is_optional_but_checked)
{
    CHECK_TRUE(load("[proxy]\nresp_listen = 127.0.0.1:6380\n"));
    STRCMP_EQUAL("127.0.0.1:6380", config.resp_listen);
    config_defaults(&config);
    CHECK_TRUE(load("[proxy]\nresp_listen =\n"));
    STRCMP_EQUAL("", config.resp_listen);
    config_defaults(&config);
    CHECK_FALSE(load("[proxy]\nresp_listen = 6380\n"));
    STRCMP_EQUAL("FILE:2: invalid address '6380' for resp_listen in [proxy]: expected host:port", error().c_str());
}

TEST(Config, test_listen_takes_several_addresses_each_maybe_tls)
{
    ListenAddress at[CONFIG_MAX_LISTEN];
    CHECK_EQUAL(3, config_split_listen("127.0.0.1:8080,  *:8443 tls ,[::1]:8080", "listen", at, err, sizeof(err)));
    STRCMP_EQUAL("127.0.0.1:8080", at[0].address);
    CHECK_FALSE(at[0].tls);
    STRCMP_EQUAL("*:8443", at[1].address);
    CHECK_TRUE(at[1].tls);
    STRCMP_EQUAL("[::1]:8080", at[2].address);
    CHECK_FALSE(at[2].tls);
    CHECK_EQUAL(0, config_split_listen("", "listen", at, err, sizeof(err)));
    CHECK_EQUAL(-1, config_split_listen("127.0.0.1:1,,127.0.0.1:2", "listen", at, err, sizeof(err)));
    STRCMP_EQUAL("invalid value for listen: an empty address between commas", err);
    CHECK_EQUAL(-1, config_split_listen("127.0.0.1:1 ssl", "listen", at, err, sizeof(err)));
    STRCMP_EQUAL("invalid value for listen: 'ssl' after 127.0.0.1:1 (an address may only be followed by tls)", err);
    CHECK_EQUAL(-1, config_split_listen("1:1, 1:2, 1:3, 1:4, 1:5", "listen", at, err, sizeof(err)));
    STRCMP_EQUAL("invalid value for listen: more than 4 addresses", err);
    CHECK_EQUAL(-1, config_split_listen("127.0.0.1:1, ", "listen", at, err, sizeof(err)));
    STRCMP_EQUAL("invalid value for listen: nothing after the last comma", err);
    CHECK_EQUAL(-1, config_split_listen("127.0.0.1:1, tls", "listen", at, err, sizeof(err)));
    STRCMP_EQUAL("invalid address 'tls' for listen: expected host:port", err);

    CHECK_TRUE(load("[proxy]\nlisten = 127.0.0.1:8080, 127.0.0.1:8443\nresp_listen = 127.0.0.1:6390 tls\n"));
    STRCMP_EQUAL("127.0.0.1:8080, 127.0.0.1:8443", config.listen);
    CHECK_TRUE(config_listens_tls(&config));
    // A TLS listener needs [tls]'s files: checked with the other settings.
    CHECK_FALSE(config_validate(&config, err, sizeof(err)));
    STRCMP_CONTAINS("[tls] needs cert_file and key_file for a listener marked tls", err);
    config_defaults(&config);
    CHECK_FALSE(config_listens_tls(&config));
    // Two addresses of one front, or of two, on one port.
    CHECK_TRUE(load("[proxy]\nlisten = 127.0.0.1:8080, *:8080 tls\n"));
    CHECK_FALSE(config_validate(&config, err, sizeof(err)));
    STRCMP_EQUAL("FILE:2: listen in [proxy]: 127.0.0.1:8080 and *:8080 cannot share a port", error().c_str());
    config_defaults(&config);
    CHECK_TRUE(load("[proxy]\nlisten = 127.0.0.1:8080, 127.0.0.1:8443\nresp_listen = 127.0.0.1:6390, 127.0.0.1:8443\n"));
    CHECK_FALSE(config_validate(&config, err, sizeof(err)));
    STRCMP_CONTAINS("resp_listen in [proxy] (127.0.0.1:6390, 127.0.0.1:8443) and listen", error().c_str());
    STRCMP_CONTAINS("cannot share a port (127.0.0.1:8443 and 127.0.0.1:8443)", error().c_str());
}

TEST(Config, test_tls_protocols)
{
    int lo, hi;
    CHECK_TRUE(tls_parse_protocols("TLSv1.2 TLSv1.3", &lo, &hi));
    CHECK_TRUE(lo < hi);
    CHECK_TRUE(tls_parse_protocols("tlsv1.3", &lo, &hi));
    CHECK_EQUAL(lo, hi);
    CHECK_FALSE(tls_parse_protocols("TLSv1.1 TLSv1.2", &lo, &hi));
    CHECK_FALSE(tls_parse_protocols("", &lo, &hi));
    CHECK_TRUE(load("[tls]\nprotocols = SSLv3\n"));
    CHECK_FALSE(config_validate(&config, err, sizeof(err)));
    STRCMP_EQUAL("FILE:2: protocols in [tls] (SSLv3): expected TLSv1.2, TLSv1.3 or both", error().c_str());
}

TEST(Config, test_bad_log_level)
{
    CHECK_FALSE(load("[log]\nlevel = verbose\n"));
    STRCMP_EQUAL("FILE:2: invalid value 'verbose' for level in [log]: expected error, warn, info or debug",
                 error().c_str());
}

TEST(Config, test_line_too_long_is_refused_not_split)
{
    std::string text = "[redis]\npassword = " + std::string(300, 'x') + "\n";
    CHECK_FALSE(load(text.c_str()));
    STRCMP_EQUAL("FILE:2: line is too long (at most 198 characters)", error().c_str());
}

TEST(Config, test_first_error_is_reported)
{
    CHECK_FALSE(load("[cache]\nttl = x\ncapacity = y\n"));
    STRCMP_CONTAINS("FILE:2:", error().c_str());
}

TEST(Config, test_username_needs_password_names_its_line)
{
    CHECK_TRUE(load("[redis]\naddress = 127.0.0.1:6379\nusername = app\n"));
    CHECK_FALSE(config_validate(&config, err, sizeof(err)));
    STRCMP_EQUAL("FILE:3: username in [redis] needs a password", error().c_str());
    config_defaults(&config);
    CHECK_TRUE(load("[redis]\n"));
    CHECK_TRUE(config_override(&config, "redis.username=app", err, sizeof(err)));
    CHECK_FALSE(config_validate(&config, err, sizeof(err)));
    STRCMP_EQUAL("-o redis.username: username in [redis] needs a password", err);
}

TEST(Config, test_resp_listen_on_the_listen_port_names_the_later_line)
{
    CHECK_TRUE(load("[proxy]\nresp_listen = 127.0.0.1:8080\nlisten = 127.0.0.1:8080\n"));
    CHECK_FALSE(config_validate(&config, err, sizeof(err)));
    STRCMP_EQUAL("FILE:3: resp_listen in [proxy] (127.0.0.1:8080) and listen (127.0.0.1:8080) cannot share a port",
                 error().c_str());
    config_defaults(&config);
    CHECK_TRUE(load("[proxy]\nlisten = *:8080\nresp_listen = 127.0.0.1:8080\n"));  // a wildcard covers it
    CHECK_FALSE(config_validate(&config, err, sizeof(err)));
    STRCMP_CONTAINS("FILE:3: resp_listen in [proxy]", error().c_str());
    config_defaults(&config);
    CHECK_TRUE(load("[proxy]\nlisten = 127.0.0.1:8080\nresp_listen = 127.0.0.2:8080\n"));
    CHECK_TRUE(config_validate(&config, err, sizeof(err)));
    config_defaults(&config);
    CHECK_TRUE(load("[proxy]\nlisten = 127.0.0.1:0\nresp_listen = 127.0.0.1:0\n"));  // two free ports
    CHECK_TRUE(config_validate(&config, err, sizeof(err)));
}

TEST(Config, test_max_reply_size_must_fit_max_value_size)
{
    CHECK_TRUE(load("[redis]\nmax_reply_size = 1m\n[cache]\nmax_value_size = 2m\n"));
    CHECK_FALSE(config_validate(&config, err, sizeof(err)));
    STRCMP_EQUAL("FILE:4: max_reply_size in [redis] (1048576 bytes) is smaller than max_value_size in [cache] "
                 "(2097152 bytes): such values could never be read",
                 error().c_str());
    config_defaults(&config);
    CHECK_TRUE(load("[cache]\nmax_value_size = 2m\n[redis]\nmax_reply_size = 1m\n"));
    CHECK_FALSE(config_validate(&config, err, sizeof(err)));
    STRCMP_CONTAINS("FILE:4: max_reply_size", error().c_str());
}

TEST(Config, test_max_request_size_must_hold_a_get_of_the_longest_key)
{
    CHECK_TRUE(load("[proxy]\nmax_key_size = 8k\nmax_request_size = 8k\n"));
    CHECK_FALSE(config_validate(&config, err, sizeof(err)));
    STRCMP_EQUAL("FILE:3: max_request_size in [proxy] (8192 bytes) cannot hold a GET of a key of max_key_size "
                 "(8192 bytes): make it at least 8256",
                 error().c_str());
    config_defaults(&config);
    CHECK_TRUE(load("[proxy]\nmax_key_size = 8k\nmax_request_size = 9k\n"));
    CHECK_TRUE(config_validate(&config, err, sizeof(err)));
}

TEST(Config, test_max_client_memory_must_hold_one_clients_output_unless_off)
{
    CHECK_TRUE(load("[proxy]\nmax_client_output = 64m\nmax_client_memory = 32m\n"));
    CHECK_FALSE(config_validate(&config, err, sizeof(err)));
    STRCMP_CONTAINS("FILE:3: max_client_memory in [proxy] (33554432 bytes) is smaller than max_client_output",
                    error().c_str());
    config_defaults(&config);
    CHECK_TRUE(load("[proxy]\nmax_client_output = 64m\nmax_client_memory = 0\n"));
    CHECK_TRUE(config_validate(&config, err, sizeof(err)));
}

TEST(Config, test_content_type_must_be_printable)
{
    CHECK_TRUE(load("[http]\ncontent_type = text/plain; charset=utf-8\n"));
    CHECK_TRUE(config_validate(&config, err, sizeof(err)));
    STRCMP_EQUAL("text/plain; charset=utf-8", config.http_content_type);
    config_defaults(&config);
    CHECK_TRUE(load("[http]\ncontent_type = text/plain\tx\n"));
    CHECK_FALSE(config_validate(&config, err, sizeof(err)));
    STRCMP_CONTAINS("content_type in [http] must be a media type of printable characters", error().c_str());
}

TEST(Config, test_defaults_are_valid)
{
    CHECK_TRUE(config_validate(&config, err, sizeof(err)));
}

TEST(Config, test_nul_byte_is_an_error_not_a_truncation)
{
    FILE *f = fopen(path, "w");
    fwrite("[redis]\npassword = secret\0ignored\n", 1, 34, f);
    fclose(f);
    CHECK_FALSE(config_load_file(&config, path, err, sizeof(err)));
    STRCMP_EQUAL("FILE:2: line contains a NUL byte", error().c_str());
}

TEST(Config, test_override)
{
    CHECK_TRUE(config_override(&config, "cache.ttl=250ms", err, sizeof(err)));
    LONGS_EQUAL(250, config.ttl_ms);
    CHECK_TRUE(config_override(&config, "redis.address=unix:/tmp/r.sock", err, sizeof(err)));
    STRCMP_EQUAL("unix:/tmp/r.sock", config.redis_address);
    CHECK_FALSE(config_override(&config, "cache.tll=1s", err, sizeof(err)));
    STRCMP_EQUAL("-o cache.tll=1s: unknown setting cache.tll", err);
    CHECK_FALSE(config_override(&config, "ttl", err, sizeof(err)));
    STRCMP_EQUAL("-o ttl: expected section.key=value", err);
    CHECK_FALSE(config_override(&config, "cache.capacity=-1", err, sizeof(err)));
    STRCMP_EQUAL("-o cache.capacity=-1: capacity in [cache] must be between 1 and 1000000000 (got '-1')", err);
}

TEST(Config, test_durations)
{
    int64_t v;
    CHECK_TRUE(parse_duration_ms("500ms", &v));
    LONGS_EQUAL(500, v);
    CHECK_TRUE(parse_duration_ms("60", &v));
    LONGS_EQUAL(60000, v);
    CHECK_TRUE(parse_duration_ms("2m", &v));
    LONGS_EQUAL(120000, v);
    CHECK_TRUE(parse_duration_ms("1h", &v));
    LONGS_EQUAL(3600000, v);
    CHECK_FALSE(parse_duration_ms("", &v));
    CHECK_FALSE(parse_duration_ms("-1s", &v));
    CHECK_FALSE(parse_duration_ms("1.5s", &v));
    CHECK_FALSE(parse_duration_ms("5d", &v));
    CHECK_FALSE(parse_duration_ms("99999999999999999999h", &v));
}

TEST(Config, test_sizes)
{
    int64_t v;
    CHECK_TRUE(parse_size("512", &v));
    LONGS_EQUAL(512, v);
    CHECK_TRUE(parse_size("8k", &v));
    LONGS_EQUAL(8192, v);
    CHECK_TRUE(parse_size("1M", &v));
    LONGS_EQUAL(1048576, v);
    CHECK_TRUE(parse_size("1g", &v));
    LONGS_EQUAL(1073741824LL, v);
    CHECK_FALSE(parse_size("1t", &v));
    CHECK_FALSE(parse_size("k", &v));
}

TEST(Config, test_print_masks_password_and_round_trips)
{
    CHECK_TRUE(config_override(&config, "redis.password=hunter2", err, sizeof(err)));
    CHECK_TRUE(config_override(&config, "cache.ttl=1500ms", err, sizeof(err)));
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    config_print(&config, out);
    fclose(out);
    std::string text(buf, len);
    free(buf);
    CHECK(text.find("redis.password = ********\n") != std::string::npos);
    CHECK(text.find("hunter2") == std::string::npos);
    CHECK(text.find("cache.ttl = 1500ms\n") != std::string::npos);
    CHECK(text.find("proxy.workers = auto\n") != std::string::npos);
    CHECK(text.find("cache.max_value_size = 1m\n") != std::string::npos);
}

TEST(Config, test_cluster_seeds_split_on_spaces_and_commas)
{
    CHECK_TRUE(load("[redis]\ncluster = 10.0.0.1:7000, 10.0.0.2:7001,node-3:7002  [::1]:7003\n"));
    char seeds[CONFIG_MAX_SEEDS][CONFIG_SEED_SIZE];
    LONGS_EQUAL(4, config_split_seeds(config.redis_cluster, seeds, err, sizeof(err)));
    STRCMP_EQUAL("10.0.0.1:7000", seeds[0]);
    STRCMP_EQUAL("10.0.0.2:7001", seeds[1]);
    STRCMP_EQUAL("node-3:7002", seeds[2]);
    STRCMP_EQUAL("[::1]:7003", seeds[3]);
    LONGS_EQUAL(0, config_split_seeds("", seeds, err, sizeof(err)));
    CHECK_TRUE(config_validate(&config, err, sizeof(err)));
}

// Sixteen IPv4 seeds are more than one of inih's 200-character lines holds: the list goes on
// over several `cluster =` lines, each adding to it (any other key given twice is an error).
TEST(Config, test_cluster_seeds_go_on_over_several_lines)
{
    std::string first = "cluster =", second = "cluster =";
    for (int i = 0; i < 16; i++)
        (i < 8 ? first : second) += " 192.168.100." + std::to_string(100 + i) + ":16379";
    CHECK_TRUE(load(("[redis]\n" + first + "\n" + second + "\n").c_str()));
    char seeds[CONFIG_MAX_SEEDS][CONFIG_SEED_SIZE];
    LONGS_EQUAL(16, config_split_seeds(config.redis_cluster, seeds, err, sizeof(err)));
    STRCMP_EQUAL("192.168.100.100:16379", seeds[0]);
    STRCMP_EQUAL("192.168.100.115:16379", seeds[15]);
    CHECK_FALSE(load(("[redis]\n" + first + "\n" + second + "\ncluster = 10.0.0.1:1\n").c_str()));
    STRCMP_EQUAL("FILE:4: invalid value for cluster in [redis]: more than 16 seed nodes", error().c_str());
}

TEST(Config, test_bad_cluster_seeds_are_errors)
{
    CHECK_FALSE(load("[redis]\ncluster = 10.0.0.1:7000 unix:/tmp/r.sock\n"));
    STRCMP_EQUAL("FILE:2: invalid value for cluster in [redis]: seed 'unix:/tmp/r.sock': a unix socket is not allowed here",
                 error().c_str());
    CHECK_FALSE(load("[redis]\ncluster = 10.0.0.1\n"));
    STRCMP_EQUAL("FILE:2: invalid value for cluster in [redis]: seed '10.0.0.1': expected host:port", error().c_str());
    CHECK_FALSE(load("[redis]\ncluster = 10.0.0.1:0\n"));
    STRCMP_EQUAL("FILE:2: invalid value for cluster in [redis]: seed '10.0.0.1:0': needs a port", error().c_str());
    CHECK_FALSE(load("[redis]\ncluster = ,,\n"));
    STRCMP_EQUAL("FILE:2: invalid value for cluster in [redis]: no seed node in ',,'", error().c_str());
    CHECK_FALSE(load("[redis]\ncluster = a:1 a:2 a:3 a:4 a:5 a:6 a:7 a:8 a:9 a:10 a:11 a:12 a:13 a:14 a:15 a:16 a:17\n"));
    STRCMP_EQUAL("FILE:2: invalid value for cluster in [redis]: more than 16 seed nodes", error().c_str());
}

TEST(Config, test_cluster_and_address_exclude_each_other)
{
    CHECK_TRUE(load("[redis]\naddress = 127.0.0.1:6379\ncluster = 127.0.0.1:7000\n"));
    CHECK_FALSE(config_validate(&config, err, sizeof(err)));
    STRCMP_EQUAL("FILE:3: [redis] takes address (one Redis) or cluster (seed nodes of a Redis Cluster), not both",
                 error().c_str());
}

TEST(Config, test_cluster_needs_database_0)
{
    CHECK_TRUE(load("[redis]\ncluster = 127.0.0.1:7000\ndatabase = 2\n"));
    CHECK_FALSE(config_validate(&config, err, sizeof(err)));
    STRCMP_EQUAL("FILE:3: database in [redis] must be 0 with cluster: a Redis Cluster has one database",
                 error().c_str());
}

TEST(Config, test_users_section_and_secret_files)
{
    char dir[] = "/tmp/config-users-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    std::string pw = std::string(dir) + "/pw";
    FILE *f = fopen(pw.c_str(), "w");
    fputs("from-file\n", f);
    fclose(f);
    chmod(pw.c_str(), 0600);
    std::string text = "[users]\napp = on ~user:*\napp = ~session:*\napp.password_file = " + pw + "\n";
    CHECK_TEXT(load(text.c_str()), err);
    CHECK_EQUAL(1, config.users.count);
    const AclUser *app = acl_user_find(&config.users, "app", 3);
    CHECK(app != NULL);
    CHECK_EQUAL(2, app->pattern_count);  // a user's rules go on over several lines
    POINTERS_EQUAL(app, acl_authenticate(&config.users, "app", 3, "from-file", 9));
    chmod(pw.c_str(), 0644);  // others may read it: refused, naming the line
    config_defaults(&config);
    CHECK_FALSE(load(text.c_str()));
    STRCMP_CONTAINS("FILE:4: app.password_file in [users]", error().c_str());
    unlink(pw.c_str());
    rmdir(dir);
}

TEST(Config, test_a_rule_that_means_nothing_here_is_refused_with_its_line)
{
    CHECK_FALSE(load("[users]\napp = on +@all ~*\n"));
    STRCMP_CONTAINS("FILE:2: ", error().c_str());
    STRCMP_CONTAINS("2nd rule ('+...') is a command permission", err);
}
