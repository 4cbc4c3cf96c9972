"""SIGHUP reload: a valid file starts a new generation of workers on it (empty caches, same
sockets) and stops the old one; an invalid one is refused with FILE:LINE and the old workers
keep serving. Seen through the service manager's socket and /metrics too."""
import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import time

from harness import (PROXY_BIN, ProxyTestCase, RedisClient, RedisError, alive, black_hole_port, free_ports, resp_encode, wait_until,
                     one_connection_per_worker, worker_pid)
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

    def test_dash_r_checks_the_file_before_it_signals_the_master(self):
        # What systemctl reload runs (ExecReload=): a broken file fails it, with the reason, and
        # the master is not signalled; a valid one is signalled and takes effect.
        proxy = self.start_proxy(cache={"ttl": "60s"})
        proxy.settings["cache"]["ttl"] = "banana"
        proxy.write_config()
        r = subprocess.run([PROXY_BIN, "-c", proxy.config_path, "-R", str(proxy.proc.pid)], capture_output=True,
                           text=True, timeout=10)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("invalid value 'banana' for ttl in [cache]", r.stderr)
        self.assertIn("reload refused: the running configuration stays in force", r.stderr)
        self.assertEqual(proxy.log().count("SIGHUP"), 0)
        proxy.settings["cache"]["ttl"] = "30s"
        proxy.write_config()
        r = subprocess.run([PROXY_BIN, "-c", proxy.config_path, "-R", str(proxy.proc.pid)], capture_output=True,
                           text=True, timeout=10)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.wait_for_reload(proxy, 1, 1)
        self.assertEqual(metric(proxy.admin("/metrics")[1], "redis_proxy_config_generation"), 2)
        r = subprocess.run([PROXY_BIN, "-c", proxy.config_path, "-R", "notapid"], capture_output=True, text=True,
                           timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn("-R needs the PID of the running master", r.stderr)

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

    def test_a_resp_connection_on_a_dropped_address_is_handed_over_too(self):
        proxy = self.start_proxy(resp=True, proxy={"workers": "2"})
        self.redis("SET", "k", "v")
        c = proxy.resp()
        self.addCleanup(c.close)
        self.assertEqual(c("CLIENT", "SETNAME", "kept"), b"OK")
        # CLIENT IDs are the proxy's, not a worker's: never the same for two clients.
        others = one_connection_per_worker(proxy, 2)
        for o in others:
            self.addCleanup(o.close)
        ids = [x("CLIENT", "ID") for x in [c] + others]
        self.assertEqual(len(set(ids)), len(ids), ids)
        old_resp = proxy.resp_port
        new_resp = free_ports(1)[0]
        self.reload(proxy, proxy={"resp_listen": "127.0.0.1:%d" % new_resp, "workers": "1"})
        self.wait_for_reload(proxy, 1, 1)
        wait_until(lambda: "stopped listening for RESP on 127.0.0.1:%d" % old_resp in proxy.log(),
                   what="the old RESP address closed")
        # The connection made on the old address lives on in the new worker, name and all.
        self.assertEqual(c("GET", "k"), b"v")
        self.assertEqual(c("CLIENT", "GETNAME"), b"kept")
        self.assertEqual(c("CLIENT", "ID"), ids[0])  # its id, for life
        self.assertEqual(worker_pid(c), generation_pids(proxy, 1)[0])
        late = RedisClient(new_resp)
        self.addCleanup(late.close)
        self.assertGreater(late("CLIENT", "ID"), max(ids))

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
        # Meanwhile the new workers take no connection (their first try at Redis has not ended):
        # every request is the old generation's, answered as before.
        statuses, deadline = set(), time.monotonic() + 10
        while "reload abandoned" not in proxy.log():
            self.assertLess(time.monotonic(), deadline, "the reload was never abandoned")
            statuses.add(proxy.get("k").status)
        self.assertEqual(statuses, {200})
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
        """Reloads with each settings change in turn while clients keep asking, none of which
        retries: two with a new connection per request, two on HTTP keep-alive connections (a
        new connection only after an answer with Connection: close, as http.client does), and,
        with a RESP port, three persistent RESP connections, redis-cli reading commands from a
        pipe, a RESP client with a new connection per command, two redis-py clients each on one
        named connection (single_connection_client) and an idle pooled redis-py connection. A reload must be invisible:
        no error, every answer right, and every RESP connection the same from start to end."""
        for i in range(4):
            self.redis("SET", "k%d" % i, "v%d" % i)
        stop = threading.Event()
        failures, answered = [], [0]

        def count(ok, what):
            if ok:
                answered[0] += 1
            else:
                failures.append(what)

        def client():
            while not stop.is_set():
                try:
                    r = proxy.get("k0")
                    count((r.status, r.body) == (200, b"v0"), r.status)
                except OSError as e:
                    failures.append(repr(e))

        def keep_alive_client():
            conn = proxy.connection()
            while not stop.is_set():
                try:
                    r = proxy.get("k1", conn)
                    count((r.status, r.body) == (200, b"v1"), r.status)
                except (OSError, http.client.HTTPException) as e:
                    failures.append("keep-alive: %r" % e)
                    return
            conn.close()

        def persistent_resp_client(i):
            c = proxy.resp()
            key, want = "k%d" % i, b"v%d" % i
            while not stop.is_set():
                try:
                    count(c("GET", key) == want, "RESP answer")
                except (OSError, RedisError, ConnectionError) as e:
                    failures.append("persistent RESP %d: %r" % (i, e))
                    return
            c.close()

        def redis_cli_client():
            cli = subprocess.Popen(["redis-cli", "-p", str(proxy.resp_port)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            while not stop.is_set():
                cli.stdin.write(b"GET k3\n")
                cli.stdin.flush()
                line = cli.stdout.readline()
                count(line == b"v3\n", "redis-cli: %r" % line)
            cli.stdin.close()
            rest = cli.stdout.read()
            cli.wait(10)
            if rest:
                failures.append("redis-cli: %r" % rest)

        def redis_py_client(i):
            # redis-py as connection pools use it: one connection kept for the client's life, a
            # name set on it, and no retry. Its socket must be the same one from start to end.
            import redis
            r = redis.Redis(host="127.0.0.1", port=proxy.resp_port, single_connection_client=True, client_name="py%d" % i)
            sock = None
            while not stop.is_set():
                try:
                    count(r.get("k2") == b"v2", "redis-py answer")
                except redis.exceptions.RedisError as e:
                    failures.append("redis-py %d: %r" % (i, e))
                    return
                if sock is None:
                    sock = r.connection._sock
                elif r.connection._sock is not sock:
                    failures.append("redis-py %d reconnected" % i)
                    return
            if r.client_getname() != "py%d" % i:
                failures.append("redis-py %d lost its name: %r" % (i, r.client_getname()))
            r.close()

        def idle_pooled_redis_py_client():
            # A pooled connection that sits idle through every reload, used once after them.
            import redis
            r = redis.Redis(host="127.0.0.1", port=proxy.resp_port)
            count(r.get("k3") == b"v3", "idle pooled redis-py, before")
            stop.wait()
            try:
                count(r.get("k3") == b"v3", "idle pooled redis-py, after")
            except redis.exceptions.RedisError as e:
                failures.append("idle pooled redis-py: %r" % e)
            r.close()

        def resp_client():  # a new connection per command
            while not stop.is_set():
                try:
                    c = proxy.resp()
                    count(c("GET", "k0") == b"v0", "RESP answer")
                    c.close()
                except (OSError, RedisError, ConnectionError) as e:
                    failures.append("RESP: %r" % e)
        clients = [client, client, keep_alive_client, keep_alive_client]
        if proxy.resp_port:
            clients += [lambda i=i: persistent_resp_client(i) for i in (0, 1, 2)] + [redis_cli_client, resp_client]
            clients += [lambda i=i: redis_py_client(i) for i in (0, 1)] + [idle_pooled_redis_py_client]
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
        if proxy.resp_port:
            self.assertGreater(metric(proxy.admin("/metrics")[1], "redis_proxy_connections_handed_over_total"), 0)

    def test_requests_keep_being_answered_across_reloads(self):
        proxy = self.start_proxy(proxy={"workers": "2"}, cache={"ttl": "60s"})
        self.run_reloads_under_load(proxy, [{"cache": {"ttl": ttl}} for ttl in ("30s", "20s", "10s")])

    def test_requests_keep_being_answered_while_the_workers_change(self):
        proxy = self.start_proxy(resp=True, proxy={"workers": "2"})
        self.run_reloads_under_load(proxy, [{"proxy": {"workers": n}} for n in ("3", "1", "4", "2")])

    def test_a_reload_is_invisible_to_persistent_clients(self):
        proxy = self.start_proxy(resp=True, proxy={"workers": "2"}, cache={"ttl": "60s", "capacity": "1000"})
        self.run_reloads_under_load(proxy, [{"cache": {"ttl": "30s"}}, {"cache": {"capacity": "2000"}},
                                            {"proxy": {"workers": "3"}}, {"proxy": {"workers": "1"}},
                                            {"proxy": {"workers": "2"}}])

    def test_a_client_mid_pipeline_gets_every_reply_in_order(self):
        proxy = self.start_proxy(resp=True, proxy={"workers": "1"})
        for i in range(200):
            self.redis("SET", "p%d" % i, "v%d" % i)
        c = proxy.resp()
        self.addCleanup(c.close)
        c.send_raw(b"".join(resp_encode("GET", "p%d" % i) for i in range(200)))
        old = generation_pids(proxy, 1)[0]
        self.reload(proxy, cache={"ttl": "30s"})
        self.wait_for_reload(proxy, 1, 1)
        wait_until(lambda: not alive(old), what="the old worker gone")
        self.assertEqual([c.read_reply() for _ in range(200)], [b"v%d" % i for i in range(200)])
        self.assertEqual(c("GET", "p7"), b"v7")  # the same connection, now the new worker's
        self.assertEqual(worker_pid(c), generation_pids(proxy, 1)[0])
