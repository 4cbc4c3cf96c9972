"""SIGHUP reload: a valid file starts a new generation of workers on it (empty caches, same
sockets) and stops the old one; an invalid one is refused with FILE:LINE and the old workers
keep serving. Seen through the service manager's socket and /metrics too."""
import http.client
import os
import re
import signal
import threading

from harness import ProxyTestCase, alive, wait_until
from test_admin import metric
from test_service import ServiceManager


def generation_pids(proxy, count):
    """The pids of the latest `count` worker starts."""
    return [int(p) for p in re.findall(r"worker \d+ ready \(pid (\d+)\)", proxy.log())][-count:]


class ReloadTest(ProxyTestCase):
    def reload(self, p, **changes):
        for section, values in changes.items():
            p.settings.setdefault(section, {}).update(values)
        p.write_config()
        p.proc.send_signal(signal.SIGHUP)

    def test_reload_applies_a_new_redis_address_with_new_workers(self):
        other = self.start_redis()
        self.redis("SET", "k", "from-the-first")
        other("SET", "k", "from-the-second")
        m = ServiceManager(os.path.join(self.workdir, "notify.sock"))
        self.addCleanup(m.close)
        proxy = self.start_proxy(proxy={"workers": "2"}, env={"NOTIFY_SOCKET": m.path})
        m.wait_for("READY=1")
        self.assertEqual(proxy.get("k").body, b"from-the-first")
        old = generation_pids(proxy, 2)
        self.reload(proxy, redis={"address": "127.0.0.1:%d" % other.port})
        msg = m.wait_for("RELOADING=1")
        self.assertRegex(msg, r"MONOTONIC_USEC=\d+")
        m.wait_for("READY=1")
        new = generation_pids(proxy, 2)
        self.assertEqual(len(set(new) & set(old)), 0)
        for pid in old:  # the previous generation has gone
            wait_until(lambda: not alive(pid), what="old worker %d gone" % pid)
        for _ in range(10):  # whichever worker answers: new caches, the new Redis
            self.assertEqual(proxy.get("k").body, b"from-the-second")
        _, text = proxy.admin("/metrics")
        self.assertEqual(metric(text, "redis_proxy_reloads_total"), 1)
        self.assertEqual(metric(text, "redis_proxy_last_reload_success"), 1)
        self.assertEqual(metric(text, "redis_proxy_config_generation"), 2)
        self.assertEqual(metric(text, "redis_proxy_workers"), 2)
        self.assertIn("reload: configuration generation 2", proxy.log())

    def test_an_invalid_file_is_refused_and_the_old_workers_keep_serving(self):
        proxy = self.start_proxy()
        self.redis("SET", "k", "v")
        self.assertEqual(proxy.get("k").status, 200)
        pids = generation_pids(proxy, 1)
        with open(proxy.config_path, "a") as f:
            f.write("[cache]\nttll = 5s\n")
        proxy.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload refused" in proxy.log(), what="the refusal")
        self.assertRegex(proxy.log(), r"reload refused: .*proxy-\d+\.ini:\d+: unknown key 'ttll' in \[cache\]; "
                                      r"keeping the running configuration")
        self.assertEqual(generation_pids(proxy, 1), pids)
        r = proxy.get("k")
        self.assertEqual((r.status, r.header("X-Cache")), (200, "HIT"))  # same worker, same cache
        _, text = proxy.admin("/metrics")
        self.assertEqual(metric(text, "redis_proxy_reload_failures_total"), 1)
        self.assertEqual(metric(text, "redis_proxy_last_reload_success"), 0)
        self.assertEqual(metric(text, "redis_proxy_config_generation"), 1)

    def test_changing_the_listen_address_is_refused_for_now(self):
        proxy = self.start_proxy()
        pids = generation_pids(proxy, 1)
        self.reload(proxy, proxy={"workers": "2"})
        wait_until(lambda: "reload refused" in proxy.log(), what="the refusal")
        self.assertIn("needs a restart for now", proxy.log())
        self.assertEqual(generation_pids(proxy, 1), pids)
        self.assertEqual(proxy.get("nope").status, 404)

    def test_requests_keep_being_answered_across_reloads(self):
        # Through three reloads: two clients with a new connection per request, two on keep-alive
        # connections. An old worker closes its idle keep-alive connections when it stops; a
        # client that sent on one just then may retry once on a new connection, as HTTP allows
        # for a request that got no answer (RFC 9112, 9.3.1), and nothing more.
        proxy = self.start_proxy(proxy={"workers": "2"}, cache={"ttl": "60s"})
        self.redis("SET", "k", "v")
        stop = threading.Event()
        failures, answered, retries = [], [0], [0]

        def client():
            while not stop.is_set():
                try:
                    r = proxy.get("k")
                    if r.status != 200:
                        failures.append(r.status)
                    answered[0] += 1
                except OSError as e:
                    failures.append(repr(e))

        def keep_alive_client():
            conn = proxy.connection()
            while not stop.is_set():
                try:
                    r = proxy.get("k", conn)
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    conn.close()
                    conn = proxy.connection()
                    retries[0] += 1
                    try:
                        r = proxy.get("k", conn)
                    except OSError as e:
                        failures.append("after a retry: %r" % e)
                        continue
                except OSError as e:
                    failures.append(repr(e))
                    continue
                if r.status != 200:
                    failures.append(r.status)
                answered[0] += 1
            conn.close()
        threads = [threading.Thread(target=f, daemon=True) for f in (client, client, keep_alive_client, keep_alive_client)]
        for t in threads:
            t.start()
        for n, ttl in enumerate(("30s", "20s", "10s")):
            self.reload(proxy, cache={"ttl": ttl})
            wait_until(lambda: proxy.log().count("serving; stopping") == n + 1, what="reload %d serving" % (n + 1))
            wait_until(lambda: "previous reload is still under way" not in proxy.log() and
                       metric(proxy.admin("/metrics")[1], "redis_proxy_workers") == 2, what="old generation gone")
        before = answered[0]
        wait_until(lambda: answered[0] > before + 20, what="more answers after the last reload")
        stop.set()
        for t in threads:
            t.join(10)
        self.assertEqual(failures, [])
        self.assertEqual(proxy.log().count("serving; stopping"), 3)
