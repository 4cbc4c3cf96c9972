"""The admin endpoint: /metrics in the Prometheus format (read by the Prometheus client library's
own parser, and held to what promtool's lint asks), /healthz and /readyz, with the whole proxy's
numbers whichever worker answers."""
import os
import re
import signal
import subprocess
import urllib.request

from harness import PROXY_BIN, ProxyTestCase, RedisError, resp_encode, wait_until

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # make deps installs Debian's python3-prometheus-client
    text_string_to_metric_families = None


def exposition_problems(text):
    """What is wrong with a /metrics page: what the Prometheus parser refuses, and what promtool's
    lint would say (a family without HELP or TYPE, a counter not named ..._total, a histogram whose
    buckets fall or whose +Inf bucket is not its count). Empty when it is right."""
    problems = []
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as e:
        return ["the parser refuses it: %s" % e]
    helps = set(re.findall(r"(?m)^# HELP (\S+) \S", text))
    types = dict(re.findall(r"(?m)^# TYPE (\S+) (\S+)$", text))
    seen = set()
    for f in families:
        exposed = f.name + "_total" if f.type == "counter" else f.name
        if exposed in seen:
            problems.append("%s: exposed twice" % exposed)
        seen.add(exposed)
        if exposed not in helps:
            problems.append("%s: no HELP" % exposed)
        if exposed not in types:
            problems.append("%s: no TYPE" % exposed)
        if f.type == "counter" and types.get(exposed) == "counter" and not exposed.endswith("_total"):
            problems.append("%s: a counter not named ..._total" % exposed)
        if f.type == "histogram":
            series = {}
            for s in f.samples:
                key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                series.setdefault(key, {"buckets": [], "count": None})
                if s.name.endswith("_bucket"):
                    series[key]["buckets"].append((float(s.labels["le"]), s.value))
                elif s.name.endswith("_count"):
                    series[key]["count"] = s.value
            for key, one in series.items():
                counts = [v for _, v in sorted(one["buckets"])]
                if counts != sorted(counts):
                    problems.append("%s%s: buckets fall" % (f.name, dict(key)))
                if not one["buckets"] or sorted(one["buckets"])[-1][0] != float("inf") or counts[-1] != one["count"]:
                    problems.append("%s%s: +Inf bucket is not the count" % (f.name, dict(key)))
    return problems


def metric(text, name, **labels):
    """The value of one sample in a /metrics page (0 when absent)."""
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(?:\{([^}]*)\})? (\S+)$", line)
        if m and m.group(1) == name:
            got = ",".join(sorted((m.group(2) or "").split(","))) if m.group(2) else ""
            if got == want:
                return float(m.group(3))
    return 0.0


class AdminTest(ProxyTestCase):
    def test_refusals_are_counted_apart_from_malformed_requests(self):
        proxy = self.start_proxy(resp=True)
        c = proxy.resp()
        self.addCleanup(c.close)
        self.assertEqual(proxy.request("POST", "/k").status, 405)         # refused
        self.assertEqual(proxy.request("GET", "/a%zz").status, 400)       # malformed
        c.send_raw(resp_encode("SET", "k", "v") + resp_encode("GET") + resp_encode("PING"))
        for _ in range(2):
            with self.assertRaises(RedisError):
                c.read_reply()
        self.assertEqual(c.read_reply(), b"PONG")
        text = proxy.admin("/metrics")[1]
        for front in ("http", "resp"):
            self.assertEqual(metric(text, "redis_proxy_refused_requests_total", front=front), 1, front)
            self.assertEqual(metric(text, "redis_proxy_bad_requests_total", front=front), 1, front)

    def test_metrics_are_well_formed_and_move_with_requests(self):
        proxy = self.start_proxy(resp=True, proxy={"workers": "2"})
        self.redis("SET", "k", "v")
        self.assertEqual(proxy.get("k").status, 200)   # a miss, then hits on whichever worker
        self.assertEqual(proxy.get("nope").status, 404)
        c = proxy.resp()
        self.addCleanup(c.close)
        self.assertEqual(c("MGET", "k", "nope"), [b"v", None])
        status, text = proxy.admin("/metrics")
        self.assertEqual(status, 200)
        self.assertIsNotNone(text_string_to_metric_families,
                             "python3-prometheus-client (Debian's) is needed: make deps installs it")
        self.assertEqual(exposition_problems(text), [])
        # ... and the check itself sees what it is there for.
        self.assertNotEqual(exposition_problems(text.replace("# HELP redis_proxy_workers ", "# X ")), [])
        self.assertNotEqual(exposition_problems(text + "redis_proxy_oops{ 1\n"), [])
        http = sum(metric(text, "redis_proxy_requests_total", front="http", result=r) for r in ("hit", "miss"))
        self.assertEqual(http, 1)
        self.assertEqual(metric(text, "redis_proxy_requests_total", front="http", result="not_found"), 1)
        self.assertEqual(metric(text, "redis_proxy_requests_total", front="resp", result="not_found"), 1)
        self.assertEqual(sum(metric(text, "redis_proxy_requests_total", front="resp", result=r) for r in ("hit", "miss")), 1)
        self.assertEqual(metric(text, "redis_proxy_workers"), 2)
        self.assertGreaterEqual(metric(text, "redis_proxy_redis_commands_total"), 3)
        self.assertEqual(metric(text, "redis_proxy_redis_connected_workers"), 2)
        self.assertEqual(metric(text, "redis_proxy_client_connections", front="resp"), 1)
        self.assertGreaterEqual(metric(text, "redis_proxy_cache_entries"), 1)
        self.assertGreater(metric(text, "redis_proxy_cache_bytes"), 0)
        self.assertGreaterEqual(metric(text, "redis_proxy_redis_round_trip_seconds_count"), 3)
        self.assertEqual(metric(text, "redis_proxy_redis_round_trip_seconds_bucket", le="+Inf"),
                         metric(text, "redis_proxy_redis_round_trip_seconds_count"))
        self.assertIn('redis_proxy_build_info{version="', text)
        # counters move on
        for _ in range(5):
            self.assertEqual(proxy.get("k").status, 200)
        _, again = proxy.admin("/metrics")
        total = sum(metric(again, "redis_proxy_requests_total", front="http", result=r) for r in ("hit", "miss"))
        self.assertEqual(total, 6)

    def test_worker_restarts_are_counted_and_counters_survive_them(self):
        proxy = self.start_proxy()
        self.redis("SET", "k", "v")
        for _ in range(3):
            self.assertEqual(proxy.get("k").status, 200)
        os.kill(proxy.worker_pids()[0], signal.SIGKILL)
        wait_until(lambda: proxy.log().count("worker 0 ready") == 2, what="worker 0 respawned")
        wait_until(lambda: proxy.admin("/healthz")[0] == 200, what="healthy again")
        _, text = proxy.admin("/metrics")
        self.assertEqual(metric(text, "redis_proxy_worker_restarts_total"), 1)
        self.assertEqual(sum(metric(text, "redis_proxy_requests_total", front="http", result=r)
                             for r in ("hit", "miss")), 3)

    def test_healthz_and_readyz_follow_redis(self):
        proxy = self.start_proxy()
        wait_until(lambda: proxy.admin("/readyz")[0] == 200, what="ready")
        self.assertEqual(proxy.admin("/healthz"), (200, "ok: 1 of 1 workers running\n"))
        port = self.redis.port
        self.redis.stop()
        wait_until(lambda: proxy.admin("/readyz")[0] == 503, what="not ready without Redis")
        self.assertIn("0 of 1 workers connected", proxy.admin("/readyz")[1])
        self.assertEqual(proxy.admin("/healthz")[0], 200)  # alive all the same
        self.redis = self.start_redis(port=port)
        wait_until(lambda: proxy.admin("/readyz")[0] == 200, what="ready again")

    def test_hits_are_timed_not_recorded_as_zero(self):
        proxy = self.start_proxy(resp=True)
        self.redis("SET", "k", "v")
        self.assertEqual(proxy.get("k").status, 200)  # a miss: cached
        c = proxy.resp()
        self.addCleanup(c.close)
        c("GET", "k")
        for front in ("http", "resp"):
            before = proxy.admin("/metrics")[1]
            if front == "http":
                conn = proxy.connection()
                for _ in range(100):
                    self.assertEqual(proxy.get("k", conn).body, b"v")
                conn.close()
            else:
                c.send_raw(resp_encode("GET", "k") * 100)
                for _ in range(100):
                    self.assertEqual(c.read_reply(), b"v")
            after = proxy.admin("/metrics")[1]
            count = lambda t: metric(t, "redis_proxy_request_duration_seconds_count", front=front)
            total = lambda t: metric(t, "redis_proxy_request_duration_seconds_sum", front=front)
            self.assertEqual(count(after) - count(before), 100, front)
            self.assertGreater(total(after) - total(before), 0, front)  # each hit took some time

    def test_health_flag_asks_readyz_at_the_configured_admin_address(self):
        # The container's HEALTHCHECK: redis-proxy --health with the proxy's own file.
        proxy = self.start_proxy()
        health = lambda: subprocess.run([PROXY_BIN, "--health", "-c", proxy.config_path], capture_output=True,
                                        text=True, timeout=10)
        r = health()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("1 of 1 workers connected", r.stdout)
        self.redis.stop()
        wait_until(lambda: health().returncode == 1, what="--health failing without Redis")
        proxy.stop()
        r = health()
        self.assertEqual(r.returncode, 1)
        self.assertIn("no answer from the admin endpoint at 127.0.0.1:%d" % proxy.admin_port, r.stderr)
        proxy.settings["admin"]["listen"] = ""
        proxy.write_config()
        r = health()
        self.assertEqual(r.returncode, 1)
        self.assertIn("--health needs the admin endpoint", r.stderr)

    def test_unknown_admin_path_is_404_and_other_methods_405(self):
        proxy = self.start_proxy()
        self.assertEqual(proxy.admin("/nope")[0], 404)
        req = urllib.request.Request("http://127.0.0.1:%d/metrics" % proxy.admin_port, method="POST", data=b"")
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        self.assertEqual(e.exception.code, 405)

    def test_admin_can_be_turned_off(self):
        proxy = self.start_proxy(admin={"listen": ""})
        self.assertNotIn("listening for admin", proxy.log())
        # No /readyz to wait on: a miss is refused (503) until the worker has connected.
        wait_until(lambda: proxy.get("nope").status == 404, what="an answer from Redis")
