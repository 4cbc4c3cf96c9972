"""Many clients at once, the client limit, and clients that leave while Redis is slow."""
import os
import signal
import socket
import threading
import time

from harness import ProxyTestCase, run_threads, wait_until


class ConcurrencyTest(ProxyTestCase):
    def test_200_concurrent_clients_get_correct_answers(self):
        proxy = self.start_proxy(proxy={"workers": "2"})
        for i in range(200):
            self.redis("SET", "key:%d" % i, "value-%d" % i)

        def client(i):
            conn = proxy.connection()
            try:
                for j in range(5):
                    k = (i + j * 37) % 200
                    r = proxy.get("key:%d" % k, conn)
                    assert r.status == 200, r
                    assert r.body == b"value-%d" % k, r
                assert proxy.get("absent:%d" % i, conn).status == 404
            finally:
                conn.close()

        self.assertEqual(run_threads(200, client), [])

    def test_more_clients_than_max_clients_are_all_answered(self):
        proxy = self.start_proxy(proxy={"max_clients": "5"})
        self.redis("SET", "k", "v")

        def client(i):
            r = proxy.get("k")
            assert (r.status, r.body) == (200, b"v"), r

        self.assertEqual(run_threads(40, client), [])

    def test_max_clients_is_enforced_and_released(self):
        proxy = self.start_proxy(proxy={"max_clients": "2"})
        self.redis("SET", "k", "v")
        held = [proxy.connection() for _ in range(2)]
        for c in held:
            self.assertEqual(proxy.get("k", c).status, 200)
        # A third client connects (the kernel backlog takes it) but is not served while two are open.
        waiting = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        self.addCleanup(waiting.close)
        waiting.sendall(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
        waiting.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            waiting.recv(1024)
        held[0].close()  # one leaves: the third is accepted and answered
        waiting.settimeout(10)
        self.assertTrue(waiting.recv(1024).startswith(b"HTTP/1.1 200"))
        held[1].close()

    def test_idle_and_silent_connections_give_their_slot_back(self):
        proxy = self.start_proxy(proxy={"max_clients": "1", "client_timeout": "1s"})
        self.redis("SET", "k", "v")
        # clients that connect and leave without a request
        for _ in range(3):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=5).close()
        # a keep-alive client that goes idle is closed by the proxy after client_timeout
        idle = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        self.addCleanup(idle.close)
        idle.sendall(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(idle.recv(4096).startswith(b"HTTP/1.1 200"))
        started = time.monotonic()
        self.assertEqual(idle.recv(4096), b"")  # closed by the proxy
        self.assertGreater(time.monotonic() - started, 0.8)
        # with max_clients = 1, this is served only if every one of those slots came back
        r = proxy.get("k")
        self.assertEqual((r.status, r.body), (200, b"v"))

    def test_running_out_of_descriptors_pauses_accepting_and_recovers(self):
        proxy = self.start_proxy(nofile_limit=40)
        self.redis("SET", "k", "v")
        answered, release = [], threading.Event()

        def client(i):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as s:
                s.sendall(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
                reply = s.recv(4096)
                assert reply.startswith(b"HTTP/1.1 200"), reply
                answered.append(i)
                release.wait(30)  # hold the descriptor in the proxy

        threads = [threading.Thread(target=client, args=(i,)) for i in range(60)]
        for t in threads:
            t.start()
        wait_until(lambda: "Too many open files" in proxy.log(), what="EMFILE in the log")
        wait_until(lambda: len(answered) >= 20, what="clients up to the descriptor limit")
        self.assertLess(len(answered), 60)  # the rest wait in the backlog
        release.set()
        for t in threads:
            t.join(30)
        self.assertEqual(len(answered), 60)
        self.assertIn("max_clients needs about", proxy.log())  # the limit was reported at start
        self.assertEqual(proxy.get("k").status, 200)

    def test_pipelined_http_requests_are_answered_in_order(self):
        proxy = self.start_proxy()
        self.redis("SET", "a", "first")
        self.redis("SET", "b", "second")
        self.assertEqual(proxy.get("a").status, 200)  # a is a hit, b a miss
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /zz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while data.count(b"HTTP/1.1") < 3 or not data.endswith(b"key not found\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        self.assertLess(data.index(b"second"), data.index(b"first"))
        self.assertLess(data.index(b"first"), data.index(b"404 Not Found"))

    def test_clients_leaving_while_redis_is_slow_do_not_crash_the_worker(self):
        proxy = self.start_proxy(redis={"command_timeout": "5s"})
        self.redis("SET", "k", "v")
        self.assertEqual(proxy.get("k").status, 200)
        pid_before = proxy.worker_pids()[0]
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            for i in range(20):
                with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
                    s.sendall(b"GET /miss-%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            # a hit is still served by the same worker, which has read the 20 requests by now
            self.assertHit(proxy.get("k"), b"v")
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        # Redis answers 20 GETs whose clients are gone
        wait_until(lambda: self.get_calls() >= 21, what="the abandoned GETs to reach Redis")
        r = proxy.get("k")
        self.assertEqual((r.status, r.body), (200, b"v"))
        self.redis("SET", "after", "ok")
        self.assertMiss(proxy.get("after"), b"ok")
        self.assertEqual(proxy.worker_pids()[0], pid_before)
        self.assertNotIn("respawning", proxy.log())

    def get_calls(self):
        info = self.redis("INFO", "commandstats").decode()
        for line in info.splitlines():
            if line.startswith("cmdstat_get:"):
                return int(line.split("calls=")[1].split(",")[0])
        return 0
