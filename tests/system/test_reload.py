"""SIGHUP reload: a valid file starts a new generation of workers on it (empty caches, same
sockets) and stops the old one; an invalid one is refused with FILE:LINE and the old workers
keep serving. Seen through the service manager's socket and /metrics too."""
import http.client
import os
import re
import signal
import socket
import threading

from harness import ProxyTestCase, RedisError, alive, black_hole_port, free_ports, wait_until, worker_pid
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

    def wait_for_reload(self, proxy, n, workers):
        """Until reload number n serves and the previous generation has gone."""
        wait_until(lambda: proxy.log().count("serving; stopping") == n, what="reload %d serving" % n)
        wait_until(lambda: metric(proxy.admin("/metrics")[1], "redis_proxy_workers") == workers,
                   what="old generation gone")
        proxy.workers = workers

    def test_reload_moves_every_listen_address(self):
        # HTTP and admin move, RESP is switched on; the old addresses close once the old
        # workers have gone, and the new ones are served by the new workers.
        proxy = self.start_proxy(proxy={"workers": "2"})
        self.redis("SET", "k", "v")
        old_ports = (proxy.port, proxy.admin_port)
        http_port, resp_port, admin_port = free_ports(3)
        old = generation_pids(proxy, 2)
        self.reload(proxy, proxy={"listen": "127.0.0.1:%d" % http_port, "resp_listen": "127.0.0.1:%d" % resp_port},
                    admin={"listen": "127.0.0.1:%d" % admin_port})
        wait_until(lambda: "serving; stopping" in proxy.log(), what="the new generation serving")
        for pid in old:
            wait_until(lambda: not alive(pid), what="old worker %d gone" % pid)
        wait_until(lambda: "stopped listening for admin" in proxy.log(), what="the old addresses closed")
        self.assertIn("stopped listening for HTTP on 127.0.0.1:%d" % old_ports[0], proxy.log())
        proxy.port, proxy.resp_port, proxy.admin_port = http_port, resp_port, admin_port
        self.assertEqual(proxy.get("k").body, b"v")
        self.assertEqual(proxy.resp()("GET", "k"), b"v")
        self.assertEqual(proxy.admin("/healthz")[0], 200)
        for port in old_ports:
            with self.assertRaises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5).close()

    def test_a_reload_that_cannot_bind_changes_nothing(self):
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        proxy = self.start_proxy()
        self.redis("SET", "k", "v")
        pids = generation_pids(proxy, 1)
        # HTTP would gain a socket (more workers) before RESP fails: that is undone too.
        self.reload(proxy, proxy={"workers": "2", "resp_listen": "127.0.0.1:%d" % taken.getsockname()[1]})
        wait_until(lambda: "reload refused" in proxy.log(), what="the refusal")
        self.assertRegex(proxy.log(), r"reload refused: cannot listen on 127\.0\.0\.1:\d+: Address already in use")
        self.assertEqual(generation_pids(proxy, 1), pids)
        for _ in range(50):  # every new connection lands on a socket the old worker serves
            self.assertEqual(proxy.get("k").status, 200)

    def test_fewer_workers_keep_every_socket_and_share_new_connections_evenly(self):
        # 3 workers -> 2: the third socket stays open (closing it would reset what waits in its
        # queue) and is served by worker 0, but new connections are steered to sockets 0 and 1
        # only. Without the steering, worker 0 would get two thirds of them.
        proxy = self.start_proxy(resp=True, proxy={"workers": "3"})
        self.reload(proxy, proxy={"workers": "2"})
        self.wait_for_reload(proxy, 1, 2)
        new = generation_pids(proxy, 2)
        served = {}
        for _ in range(300):
            c = proxy.resp()
            pid = worker_pid(c)
            c.close()
            served[pid] = served.get(pid, 0) + 1
        self.assertEqual(sorted(served), sorted(new))
        for pid, n in served.items():
            self.assertTrue(105 <= n <= 195, "uneven: %r" % served)

    def test_a_reload_that_never_serves_is_abandoned_and_the_next_one_taken(self):
        # The new generation's Redis never answers a connect (its SYNs are dropped): its workers
        # never make their first attempt, so it never serves. The old one keeps serving.
        proxy = self.start_proxy(proxy={"workers": "2", "shutdown_timeout": "1s"})
        self.redis("SET", "k", "v")
        old = generation_pids(proxy, 2)
        good = dict(proxy.settings["redis"])
        self.reload(proxy, redis={"address": "127.0.0.1:%d" % black_hole_port(self), "connect_timeout": "30s"})
        wait_until(lambda: "reload abandoned: configuration generation 2 did not serve within shutdown_timeout"
                   in proxy.log(), what="the reload abandoned")
        new = generation_pids(proxy, 2)
        for pid in new:
            wait_until(lambda: not alive(pid), what="abandoned worker %d stopped" % pid)
        self.assertTrue(all(alive(pid) for pid in old), "the previous generation keeps serving")
        for _ in range(10):
            self.assertEqual(proxy.get("k").status, 200)
        _, text = proxy.admin("/metrics")
        self.assertEqual(metric(text, "redis_proxy_reload_failures_total"), 1)
        self.assertEqual(metric(text, "redis_proxy_last_reload_success"), 0)
        self.assertEqual(metric(text, "redis_proxy_config_generation"), 1)  # the one in force
        # The next SIGHUP, with a good file again, is taken (not refused as still under way).
        proxy.settings["redis"] = good
        self.reload(proxy)
        self.wait_for_reload(proxy, 1, 2)
        _, text = proxy.admin("/metrics")
        self.assertEqual(metric(text, "redis_proxy_config_generation"), 2)
        self.assertEqual(metric(text, "redis_proxy_last_reload_success"), 1)
        self.assertNotIn("still under way", proxy.log())

    def test_the_last_sighup_wins(self):
        proxy = self.start_proxy(proxy={"workers": "1"})
        self.reload(proxy, proxy={"workers": "3"})
        wait_until(lambda: "starting 3 new worker(s)" in proxy.log(), what="the first reload")
        self.reload(proxy, proxy={"workers": "1"})  # while the first is still under way
        wait_until(lambda: "reading the file again for the SIGHUP that came during the last one" in proxy.log(),
                   what="the second SIGHUP applied")
        self.wait_for_reload(proxy, 2, 1)
        _, text = proxy.admin("/metrics")
        self.assertEqual(metric(text, "redis_proxy_workers"), 1)
        self.assertEqual(metric(text, "redis_proxy_config_generation"), 3)

    def run_reloads_under_load(self, proxy, reloads):
        """Reloads with each settings change in turn while clients keep asking: two with a new
        connection per request, two on keep-alive connections, one RESP client if there is a
        RESP port. An old worker closes its idle keep-alive connections when it stops; a client
        that sent on one just then may retry once on a new connection, as HTTP allows for a
        request that got no answer (RFC 9112, 9.3.1), and nothing more."""
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

        def resp_client():  # a new connection per command: RESP has no retry rule
            while not stop.is_set():
                try:
                    c = proxy.resp()
                    if c("GET", "k") != b"v":
                        failures.append("RESP answer")
                    c.close()
                    answered[0] += 1
                except (OSError, RedisError) as e:
                    failures.append("RESP: %r" % e)
        clients = [client, client, keep_alive_client, keep_alive_client] + ([resp_client] if proxy.resp_port else [])
        threads = [threading.Thread(target=f, daemon=True) for f in clients]
        for t in threads:
            t.start()
        for n, changes in enumerate(reloads):
            self.reload(proxy, **changes)
            self.wait_for_reload(proxy, n + 1, int(proxy.settings["proxy"]["workers"]))
        before = answered[0]
        wait_until(lambda: answered[0] > before + 20, what="more answers after the last reload")
        stop.set()
        for t in threads:
            t.join(10)
        self.assertEqual(failures, [])
        self.assertEqual(proxy.log().count("serving; stopping"), len(reloads))

    def test_requests_keep_being_answered_across_reloads(self):
        proxy = self.start_proxy(proxy={"workers": "2"}, cache={"ttl": "60s"})
        self.run_reloads_under_load(proxy, [{"cache": {"ttl": ttl}} for ttl in ("30s", "20s", "10s")])

    def test_requests_keep_being_answered_while_the_workers_change(self):
        proxy = self.start_proxy(resp=True, proxy={"workers": "2"})
        self.run_reloads_under_load(proxy, [{"proxy": {"workers": n}} for n in ("3", "1", "4", "2")])
