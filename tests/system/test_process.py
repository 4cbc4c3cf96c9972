"""The daemon as a whole: workers, respawn, signals, command line and config errors."""
import os
import re
import signal
import socket
import subprocess
import threading
import time

from harness import PROXY_BIN, ROOT, Proxy, ProxyTestCase, alive, free_port, read_until_closed, wait_until

import http.client
http_client_errors = (http.client.HTTPException,)


class SupervisionTest(ProxyTestCase):
    def test_workers_setting_starts_that_many_workers(self):
        proxy = self.start_proxy(proxy={"workers": "3"})
        pids = proxy.worker_pids()
        self.assertEqual(sorted(pids), [0, 1, 2])
        self.assertEqual(len(set(pids.values())), 3)
        for pid in pids.values():
            self.assertTrue(alive(pid))

    def test_workers_auto_counts_the_cpus_the_process_may_use(self):
        # taskset -c 0: one CPU in the affinity mask, whatever the machine has: one worker.
        proxy = Proxy(self.workdir, {"redis": {"address": "127.0.0.1:%d" % self.redis.port}})
        proxy.settings["proxy"]["workers"] = "auto"
        proxy.write_config()
        log = open(proxy.log_path, "ab")
        proxy.proc = subprocess.Popen(["taskset", "-c", "0", PROXY_BIN, "-c", proxy.config_path], stdout=log,
                                      stderr=log)
        log.close()
        self.addCleanup(self._stop_proxy, proxy)
        wait_until(lambda: "ready: 1 worker(s)" in proxy.log(), what="ready with one worker")
        self.assertIn("starting 1 worker(s)", proxy.log())
        self.assertEqual(proxy.get("nosuch").status, 404)

    def test_killed_worker_is_respawned_and_service_continues(self):
        proxy = self.start_proxy(proxy={"workers": "2"})
        self.redis("SET", "k", "v")
        old = proxy.worker_pids()[0]
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: proxy.worker_pids()[0] != old, what="worker 0 respawned")
        self.assertIn("worker 0 (pid %d) killed by signal 9" % old, proxy.log())
        for _ in range(50):  # new connections land on both sockets; all are served
            r = proxy.get("k")
            self.assertEqual((r.status, r.body), (200, b"v"))

    def test_connections_queued_on_a_dead_workers_socket_are_served_by_its_successor(self):
        proxy = self.start_proxy()
        self.redis("SET", "k", "v")
        old = proxy.worker_pids()[0]
        os.kill(old, signal.SIGSTOP)  # frozen: its socket keeps queueing connections
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
        os.kill(old, signal.SIGKILL)
        self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"))
        self.assertNotEqual(proxy.worker_pids()[0], old)

    def test_new_connections_skip_a_dead_workers_socket_while_it_waits_to_respawn(self):
        # Killed four times within a second of starting, worker 0 waits 800ms for its respawn.
        # Meanwhile every new connection is served at once by worker 1: none waits on worker 0's
        # socket for its successor.
        proxy = self.start_proxy(proxy={"workers": "2"})
        self.redis("SET", "k", "v")
        for delay in (100, 200, 400, 800):
            pid = proxy.worker_pids()[0]
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: "respawning in %d ms" % delay in proxy.log(), what="the %d ms delay" % delay)
            if delay < 800:
                wait_until(lambda: proxy.worker_pids()[0] != pid, what="respawn")
        waits = []
        for _ in range(40):  # each on a new connection, hashed by its port
            started = time.monotonic()
            r = proxy.get("k")
            waits.append(time.monotonic() - started)
            self.assertEqual((r.status, r.body), (200, b"v"))
        self.assertLess(max(waits), 0.3, "a connection waited for the dead worker's successor")
        self.assertIn("worker 0 (pid %d) killed by signal 9 (Killed); respawning in 800 ms" % pid, proxy.log())
        self.assertEqual(proxy.worker_pids()[0], pid, "the requests ran while worker 0 was dead")

    def test_connections_queued_on_a_dying_workers_socket_do_not_wait_for_its_respawn(self):
        # Worker 0 dies within a second of each start, so its respawn waits longer each time.
        # Before each death it is frozen while new connections keep coming (about half hash to
        # its socket and queue there), then killed: a serving worker accepts those queued
        # connections at once, instead of them waiting out the respawn delay. Each of the 12
        # rounds is a new client per request; none may wait anywhere near the delay (up to 3.2 s).
        proxy = self.start_proxy(proxy={"workers": "2", "resp_listen": "127.0.0.1:%d" % free_port()})
        self.redis("SET", "k", "v")
        slowest, delays, queued = 0.0, [], 0
        for round_ in range(6):
            pid = proxy.worker_pids()[0]
            os.kill(pid, signal.SIGSTOP)  # frozen: its socket keeps queueing connections
            results, threads, sent = [], [], []

            def one_request():
                started = time.monotonic()
                try:
                    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
                        s.sendall(b"GET /k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        sent.append(1)
                        answer = read_until_closed(s)
                    results.append((answer.startswith(b"HTTP/1.1 200"), time.monotonic() - started))
                except OSError as e:
                    results.append((repr(e), time.monotonic() - started))
            for _ in range(12):
                t = threading.Thread(target=one_request)
                t.start()
                threads.append(t)
            wait_until(lambda: len(sent) == 12, what="every request sent")
            queued += 12 - len(results)  # (the live worker answers its share meanwhile)
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            for t in threads:
                t.join(15)
            self.assertEqual([ok for ok, _ in results], [True] * 12, results)
            slowest = max(slowest, time.monotonic() - killed_at)
            delay = int(re.findall(r"worker 0 \(pid %d\) killed by signal 9 \(Killed\); respawning in (\d+) ms" % pid,
                                   proxy.log())[0])
            delays.append(delay)
            wait_until(lambda: proxy.worker_pids()[0] != pid, timeout=15, what="respawn")
        self.assertGreaterEqual(max(delays), 1600, delays)  # the waits it would have cost
        self.assertGreater(queued, 0, "no request reached the frozen worker's socket")
        self.assertLess(slowest, 0.5, "a queued connection waited for the dead worker's successor")

    def test_a_worker_that_keeps_dying_is_respawned_with_growing_delays(self):
        proxy = self.start_proxy()
        for _ in range(3):
            pid = proxy.worker_pids()[0]
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: proxy.worker_pids()[0] != pid, what="respawn")
        log = proxy.log()
        self.assertIn("respawning in 100 ms", log)
        self.assertIn("respawning in 200 ms", log)

    def test_sigterm_stops_workers_and_exits_0(self):
        proxy = self.start_proxy(proxy={"workers": "2"})
        pids = list(proxy.worker_pids().values())
        self.assertEqual(proxy.stop(), 0)
        for pid in pids:
            wait_until(lambda: not alive(pid), what="worker %d gone" % pid)

    def miss_in_flight(self, proxy):
        """Starts a GET that waits on a stopped Redis; returns (thread, result list)."""
        result = []
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        self.addCleanup(lambda: self.redis.proc and os.kill(self.redis.proc.pid, signal.SIGCONT))

        def get():
            try:
                result.append(proxy.get("slow").status)
            except (OSError,) + http_client_errors as e:
                result.append(repr(e))
        t = threading.Thread(target=get, daemon=True)
        t.start()
        # Two commands: the key's PTTL (follow_key_expiry), then its GET.
        wait_until(lambda: "redis_proxy_redis_commands_total 2\n" in proxy.admin("/metrics")[1],
                   what="the GET sent to Redis")
        return t, result

    def test_sigterm_answers_requests_in_flight_then_exits_0(self):
        proxy = self.start_proxy(redis={"command_timeout": "10s"}, proxy={"shutdown_timeout": "10s"})
        self.redis("SET", "slow", "v")
        t, result = self.miss_in_flight(proxy)
        proxy.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "SIGTERM received" in proxy.log(), what="SIGTERM taken")
        time.sleep(0.3)  # Redis answers late: the scenario, not a wait for the proxy
        self.assertIsNone(proxy.proc.poll())  # still waiting for that answer
        os.kill(self.redis.proc.pid, signal.SIGCONT)
        t.join(10)
        self.assertEqual(result, [200])
        self.assertEqual(proxy.proc.wait(10), 0)

    def test_shutdown_timeout_bounds_a_graceful_stop(self):
        proxy = self.start_proxy(redis={"command_timeout": "30s"}, proxy={"shutdown_timeout": "500ms"})
        t, result = self.miss_in_flight(proxy)
        started = time.monotonic()
        proxy.proc.send_signal(signal.SIGTERM)
        self.assertEqual(proxy.proc.wait(10), 0)
        self.assertLess(time.monotonic() - started, 3)

    def test_sigquit_stops_at_once(self):
        proxy = self.start_proxy(redis={"command_timeout": "30s"}, proxy={"shutdown_timeout": "30s"})
        pids = list(proxy.worker_pids().values())
        t, result = self.miss_in_flight(proxy)
        started = time.monotonic()
        proxy.proc.send_signal(signal.SIGQUIT)
        self.assertEqual(proxy.proc.wait(10), 0)
        self.assertLess(time.monotonic() - started, 2)
        self.assertIn("SIGQUIT received: stopping 1 worker(s) at once", proxy.log())
        for pid in pids:
            wait_until(lambda: not alive(pid), what="worker %d gone" % pid)

    def test_sigquit_during_a_graceful_stop_stops_at_once(self):
        proxy = self.start_proxy(redis={"command_timeout": "30s"}, proxy={"shutdown_timeout": "30s"})
        t, result = self.miss_in_flight(proxy)
        proxy.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "SIGTERM received" in proxy.log(), what="SIGTERM taken")
        started = time.monotonic()
        proxy.proc.send_signal(signal.SIGQUIT)
        self.assertEqual(proxy.proc.wait(10), 0)
        self.assertLess(time.monotonic() - started, 2, "did not wait out shutdown_timeout")
        self.assertIn("SIGQUIT received while stopping gracefully: stopping 1 worker(s) at once", proxy.log())

    def test_sigquit_to_a_worker_ends_it_without_a_core_dump(self):
        proxy = self.start_proxy()
        pid = proxy.worker_pids()[0]
        os.kill(pid, signal.SIGQUIT)
        wait_until(lambda: "worker 0 (pid %d) exited with status 0" % pid in proxy.log(),
                   what="the worker's exit logged")
        self.assertNotIn("core dumped", proxy.log())
        wait_until(lambda: proxy.worker_pids()[0] != pid, what="the worker respawned")
        self.redis("SET", "k", "v")
        self.assertEqual(proxy.get("k").status, 200)

    def test_graceful_stop_closes_idle_connections_and_answers_requests_under_way(self):
        proxy = self.start_proxy(resp=True, proxy={"shutdown_timeout": "10s"})
        self.redis("SET", "k", "v")
        idle_http = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        idle_http.sendall(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200 OK", idle_http.recv(4096))  # kept alive, now idle
        idle_resp = proxy.resp()
        self.assertEqual(idle_resp("PING"), b"PONG")
        busy_http = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        busy_http.sendall(b"GET /k HTTP/1.1\r\nHost: x\r\n")  # a request under way
        busy_resp = proxy.resp()
        self.assertEqual(busy_resp("PING"), b"PONG")
        busy_resp.send_raw(b"*2\r\n$3\r\nGET\r\n$1\r\n")  # a command under way
        wait_until(lambda: "redis_proxy_client_connections{front=\"http\"} 2" in proxy.admin("/metrics")[1],
                   what="both HTTP connections open")
        started = time.monotonic()
        proxy.proc.send_signal(signal.SIGTERM)
        self.assertEqual(idle_http.recv(4096), b"")   # closed at once
        self.assertTrue(idle_resp.at_eof())
        busy_http.sendall(b"\r\n")                   # the rest of the request still gets its answer
        answer = read_until_closed(busy_http)
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK"), answer)
        self.assertIn(b"Connection: close", answer)
        busy_resp.send_raw(b"k\r\n")
        self.assertEqual(busy_resp.read_reply(), b"v")
        self.assertTrue(busy_resp.at_eof())
        self.assertEqual(proxy.proc.wait(10), 0)
        self.assertLess(time.monotonic() - started, 5)
        for s in (idle_http, busy_http):
            s.close()
        for c in (idle_resp, busy_resp):
            c.close()

    def test_workers_die_with_the_master(self):
        proxy = self.start_proxy(proxy={"workers": "2"})
        pids = list(proxy.worker_pids().values())
        proxy.proc.kill()
        proxy.proc.wait()
        for pid in pids:
            wait_until(lambda: not alive(pid), what="worker %d gone" % pid)

    def test_sighup_with_an_unchanged_file_replaces_the_workers_and_keeps_serving(self):
        proxy = self.start_proxy()
        self.redis("SET", "k", "v")
        proxy.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "generation 2 serving" in proxy.log(), what="the reload")
        self.assertEqual(proxy.log().count("worker 0 ready"), 2)
        self.assertEqual(proxy.get("k").status, 200)


class CommandLineTest(ProxyTestCase):
    START_REDIS = False

    def run_proxy(self, *args, config=None):
        if config is not None:
            path = os.path.join(self.workdir, "test.ini")
            with open(path, "w") as f:
                f.write(config)
            args = ("-c", path) + args
        p = subprocess.run([PROXY_BIN] + list(args), capture_output=True, timeout=10)
        return p.returncode, (p.stdout + p.stderr).decode()

    def test_version_and_help(self):
        code, out = self.run_proxy("-v")
        self.assertEqual(code, 0)
        self.assertRegex(out, r"^redis-proxy \d+\.\d+\.\d+")
        code, out = self.run_proxy("-h")
        self.assertEqual(code, 0)
        self.assertIn("usage: redis-proxy", out)
        # Every long option main.cc takes is in the help, --health (the HEALTHCHECK's) included.
        with open(os.path.join(ROOT, "src", "daemon", "main.cc")) as f:
            options = re.findall(r'\{"([a-z]+)", (?:no|required)_argument', f.read())
        self.assertIn("health", options)
        for option in options:
            self.assertIn("--" + option, out)
        self.assertIn("--health", out.splitlines()[0])
        code, out = self.run_proxy("-x")
        self.assertEqual(code, 1)
        self.assertIn("usage:", out)
        self.assertEqual(self.run_proxy("--version"), self.run_proxy("-v"))
        self.assertEqual(self.run_proxy("--help"), self.run_proxy("-h"))

    def test_t_accepts_a_valid_file(self):
        code, out = self.run_proxy("-t", config="[cache]\nttl = 5s\n")
        self.assertEqual(code, 0, out)
        self.assertIn("test is successful", out)
        self.assertEqual(self.run_proxy("-t", "-q", config="[cache]\nttl = 5s\n"), (0, ""))  # quiet
        code, out = self.run_proxy("-t", "-q", config="[cache]\nttl = five\n")
        self.assertEqual(code, 78)  # errors are still said
        self.assertIn("test.ini:2: invalid value 'five' for ttl in [cache]", out)

    def test_t_refuses_an_invalid_file_with_file_and_line(self):
        code, out = self.run_proxy("-t", config="[cache]\nttl = 5s\nttll = 5s\n")
        self.assertEqual(code, 78)  # EX_CONFIG
        self.assertIn("test.ini:3: unknown key 'ttll' in [cache]", out)
        self.assertIn("test failed", out)

    def test_a_pid_file_and_s_reload_and_stop(self):
        pid_file = os.path.join(self.workdir, "proxy.pid")
        code, out = self.run_proxy("-c", "/nonexistent.ini", "-s", "restart")
        self.assertEqual((code, out.strip()), (1, "redis-proxy: -s takes reload, stop or quit, not 'restart'"))
        redis = self.start_redis()
        proxy = self.start_proxy(redis, proxy={"pid_file": pid_file}, cache={"capacity": "100"})
        with open(pid_file) as f:
            self.assertEqual(f.read(), "%d\n" % proxy.proc.pid)
        signal_proxy = lambda name: subprocess.run([PROXY_BIN, "-c", proxy.config_path, "-s", name],
                                                   capture_output=True, timeout=10)
        proxy.settings["cache"]["capacity"] = "200"
        proxy.write_config()
        self.assertEqual(signal_proxy("reload").returncode, 0)
        wait_until(lambda: "SIGHUP received" in proxy.log(), what="the reload")
        wait_until(lambda: "serving; stopping" in proxy.log(), what="the new generation")
        self.assertEqual(signal_proxy("stop").returncode, 0)
        self.assertEqual(proxy.proc.wait(15), 0)
        self.assertFalse(os.path.exists(pid_file))  # removed at stop
        r = signal_proxy("reload")  # nothing runs now: said so
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"is the proxy running?", r.stderr)
        code, out = self.run_proxy("-s", "reload", config="[cache]\nttl = 5s\n")
        self.assertEqual(code, 1)
        self.assertIn("-s needs [proxy] pid_file", out)

    def test_t_blames_a_bad_override_not_the_file(self):
        code, out = self.run_proxy("-t", "-o", "cache.ttl=abc", config="[cache]\nttl = 5s\n")
        self.assertEqual(code, 78)
        self.assertIn("-o cache.ttl=abc: invalid value 'abc' for ttl in [cache]", out)
        self.assertIn("test failed on the -o override (file", out)
        self.assertNotRegex(out, r"configuration file \S+ test failed")

    def test_t_catches_errors_between_two_settings_with_file_and_line(self):
        code, out = self.run_proxy("-t", config="[proxy]\nlisten = 127.0.0.1:7001\nresp_listen = 127.0.0.1:7001\n")
        self.assertEqual(code, 78)  # EX_CONFIG
        self.assertIn("test.ini:3: resp_listen in [proxy] (127.0.0.1:7001) and listen (127.0.0.1:7001) cannot share a port", out)
        code, out = self.run_proxy("-t", config="[redis]\nusername = app\n")
        self.assertEqual(code, 78)  # EX_CONFIG
        self.assertIn("test.ini:2: username in [redis] needs a password", out)

    def test_start_refuses_an_invalid_file(self):
        code, out = self.run_proxy(config="[proxy]\nworkers = lots\n")
        self.assertEqual(code, 78)  # EX_CONFIG
        self.assertIn("test.ini:2: invalid value 'lots' for workers in [proxy]", out)

    def test_missing_file(self):
        code, out = self.run_proxy("-c", os.path.join(self.workdir, "absent.ini"))
        self.assertEqual(code, 78)  # EX_CONFIG
        self.assertIn("absent.ini: cannot open: No such file or directory", out)

    def test_override_and_print(self):
        code, out = self.run_proxy("-T", "-o", "cache.ttl=250ms", "-o", "redis.password=pw",
                                   config="[cache]\nttl = 5s\n")
        self.assertEqual(code, 0, out)
        self.assertIn("cache.ttl = 250ms", out)
        self.assertIn("redis.password = ********", out)
        code, out = self.run_proxy("-t", "-o", "cache.nope=1", config="")
        self.assertEqual(code, 78)  # EX_CONFIG
        self.assertIn("unknown setting cache.nope", out)

    def test_example_config_is_valid(self):
        code, out = self.run_proxy("-t", "-c", os.path.join(os.path.dirname(PROXY_BIN), "..", "conf", "proxy.ini"))
        self.assertEqual(code, 0, out)

    def test_listen_address_in_use_is_a_clear_error(self):
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            code, out = self.run_proxy(config="[proxy]\nlisten = 127.0.0.1:%d\nworkers = 1\n" % port)
        self.assertEqual(code, 78)  # EX_CONFIG
        self.assertIn("cannot listen on 127.0.0.1:%d: Address already in use (change listen in [proxy])" % port, out)

