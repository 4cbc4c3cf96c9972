"""Clients that trickle, half-close, or send requests evhttp would read differently from a proxy
in front of us: none may hold a connection slot for ever, lose answers, or smuggle a request."""
import select
import socket
import threading
import time

from harness import ProxyTestCase, read_until_closed, run_threads, wait_until


class Trickler:
    """Connections that each send one more byte of a never-ending request every 50 ms."""

    def __init__(self, port, count, prefix):
        self.socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
        self.prefix = prefix
        self.closed_at = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()
        self.thread.start()

    def _run(self):
        i = 0
        while not self.stop.is_set():
            byte = self.prefix[i:i + 1] if i < len(self.prefix) else b"x"
            for n, s in enumerate(self.socks):
                if n in self.closed_at:
                    continue
                try:
                    s.sendall(byte)
                except OSError:
                    self.closed_at[n] = time.monotonic() - self.started
            i += 1
            self.stop.wait(0.05)

    def all_closed_by_proxy(self):
        for n, s in enumerate(self.socks):
            if n in self.closed_at:
                continue
            s.setblocking(False)
            try:
                if s.recv(65536) == b"":
                    self.closed_at[n] = time.monotonic() - self.started
            except BlockingIOError:
                pass
            except OSError:
                self.closed_at[n] = time.monotonic() - self.started
        return len(self.closed_at) == len(self.socks)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for s in self.socks:
            s.close()


class RequestTimeoutTest(ProxyTestCase):
    def trickle(self, port, count, prefix):
        t = Trickler(port, count, prefix)
        self.addCleanup(t.close)
        return t

    def test_trickling_http_clients_do_not_hold_max_clients(self):
        # Once: 220 clients sending a header byte a second held max_clients = 200 for ever.
        proxy = self.start_proxy(proxy={"max_clients": "4", "request_timeout": "1s", "client_timeout": "60s"})
        self.redis("SET", "k", "v")
        t = self.trickle(proxy.port, 6, b"GET /k HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started = time.monotonic()
        self.assertEqual(proxy.get("k").status, 200)  # waits in the backlog until slots free up
        self.assertLess(time.monotonic() - started, 5)
        wait_until(t.all_closed_by_proxy, timeout=6, what="the proxy closing every trickler")
        self.assertTrue(all(at >= 0.9 for at in t.closed_at.values()), t.closed_at)

    def test_trickling_resp_client_is_closed_at_request_timeout(self):
        proxy = self.start_proxy(resp=True, proxy={"request_timeout": "1s"})
        t = self.trickle(proxy.resp_port, 2, b"*2\r\n$3\r\nGET\r\n$100\r\n")
        wait_until(t.all_closed_by_proxy, timeout=5, what="the proxy closing the RESP tricklers")
        self.assertTrue(all(0.9 <= at < 4 for at in t.closed_at.values()), t.closed_at)
        c = proxy.resp()
        self.addCleanup(c.close)
        self.assertEqual(c("PING"), b"PONG")

    def test_steady_resp_client_whose_reads_end_mid_command_is_not_cut(self):
        # Every read ends inside a command, but each command completes well within the deadline:
        # the deadline restarts with each command, so the client is never cut.
        proxy = self.start_proxy(resp=True, proxy={"request_timeout": "500ms"})
        self.redis("SET", "k", "v")
        c = proxy.resp()
        self.addCleanup(c.close)
        command = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        sent = 0
        deadline = time.monotonic() + 2
        c.send_raw(command[:10])
        while time.monotonic() < deadline:
            time.sleep(0.1)  # the pace of this client, not a wait for the proxy
            c.send_raw(command[10:] + command[:10])
            sent += 1
        c.send_raw(command[10:])
        sent += 1
        self.assertEqual([c.read_reply() for _ in range(sent)], [b"v"] * sent)

    def test_idle_keep_alive_connection_is_governed_by_client_timeout_only(self):
        proxy = self.start_proxy(proxy={"request_timeout": "300ms", "client_timeout": "30s"})
        self.redis("SET", "k", "v")
        conn = proxy.connection()
        self.addCleanup(conn.close)
        self.assertEqual(proxy.get("k", conn).status, 200)
        time.sleep(0.8)  # idle between requests, longer than request_timeout: the behaviour under test
        self.assertEqual(proxy.get("k", conn).status, 200)


class NonReadingClientTest(ProxyTestCase):
    def test_resp_clients_that_never_read_are_closed_at_client_timeout_and_free_their_slots(self):
        # Two clients fill max_clients, pipeline GETs of a 256 KiB value and never read: their
        # answers fill the sockets, and the proxy holds the rest back. A third client waits in
        # the backlog; it must be served once client_timeout has passed, not never.
        # (max_client_output raised: the client timeout, not the output bound, is under test)
        proxy = self.start_proxy(resp=True, proxy={"max_clients": "2", "client_timeout": "1s",
                                                   "max_client_output": "1g"})
        self.redis("SET", "big", "x" * 262144)
        self.redis("SET", "k", "v")
        hogs = []
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", proxy.resp_port), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 3000)  # past the 1,024 answers held back
            self.addCleanup(s.close)
            hogs.append(s)
        started = time.monotonic()
        third = proxy.resp(timeout=10)
        self.addCleanup(third.close)
        self.assertEqual(third("GET", "k"), b"v")
        self.assertLess(time.monotonic() - started, 4, "the third client waited for a slot for too long")
        # One closed hog is enough to serve the third client; the other closes at its own deadline.
        wait_until(lambda: 'redis_proxy_client_send_timeouts_total{front="resp"} 2'
                   in proxy.admin("/metrics")[1], timeout=5, what="both hogs closed by send timeout")


class HttpFramingTest(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.proxy = self.start_proxy()
        self.redis("SET", "k", "v")

    def raw(self, request):
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10) as s:
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)
            return read_until_closed(s)

    def test_half_close_after_pipelined_requests_answers_every_one(self):
        # Once: 50 pipelined requests then a FIN got 48 of 50 hits and 1 of 50 misses answered.
        for i in range(25):
            self.redis("SET", "hit%d" % i, "H%d" % i)
            self.redis("SET", "miss%d" % i, "M%d" % i)
            self.assertEqual(self.proxy.get("hit%d" % i).status, 200)
        for name in ("hit", "miss"):
            request = b"".join(b"GET /%s%d HTTP/1.1\r\nHost: x\r\n\r\n" % (name.encode(), i) for i in range(25))
            data = self.raw(request * 2)
            self.assertEqual(data.count(b"HTTP/1.1 200 OK"), 50, (name, data[-300:]))

    def test_half_close_after_pipelined_requests_answers_every_one_under_load(self):
        # Answers made while other clients are ready in the same turn wait for its end. A request
        # parsed from bytes read before is answered on a callback that runs before the socket's
        # events of its turn: the client's EOF among them must not fail the connection before the
        # answer is written (evhttp takes the read event out of the turn: send_reply says how).
        for i in range(10):
            self.redis("SET", "hit%d" % i, "H%d" % i)
            self.assertEqual(self.proxy.get("hit%d" % i).status, 200)
        stop = threading.Event()
        loaders = [threading.Thread(target=self.keep_busy, args=(stop,), daemon=True) for _ in range(2)]
        for t in loaders:
            t.start()
        self.addCleanup(lambda: (stop.set(), [t.join(10) for t in loaders]))
        request = b"".join(b"GET /hit%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(10))
        for attempt in range(100):
            data = self.raw(request)
            self.assertEqual(data.count(b"HTTP/1.1 200 OK"), 10, (attempt, data[-300:]))

    def keep_busy(self, stop):
        """Pipelined hits on 16 connections, each kept 8 deep, until stopped."""
        request = b"GET /hit1 HTTP/1.1\r\nHost: x\r\n\r\n"
        socks = [socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10) for _ in range(16)]
        try:
            for s in socks:
                s.sendall(request * 8)
            while not stop.is_set():
                ready, _, _ = select.select(socks, [], [], 0.5)
                for s in ready:
                    n = s.recv(65536).count(b"HTTP/1.1 200")
                    if n:
                        s.sendall(request * n)
        finally:
            for s in socks:
                s.close()

    def test_conflicting_content_lengths_are_refused_and_the_connection_closed(self):
        data = self.raw(b"GET /k HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 30\r\n\r\n"
                        b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data)
        self.assertIn(b"conflicting Content-Length", data)
        self.assertEqual(data.count(b"HTTP/1.1 "), 1, data)  # nothing after it was read as a request

    def test_transfer_encoding_evhttp_does_not_honour_is_refused(self):
        for te in (b"gzip, chunked", b"chunked, identity", b"identity"):
            data = self.raw(b"GET /k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: %s\r\nContent-Length: 0\r\n\r\n"
                            b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n" % te)
            self.assertTrue(data.startswith(b"HTTP/1.1 400 "), (te, data))
            self.assertEqual(data.count(b"HTTP/1.1 "), 1, data)
        data = self.raw(b"GET /k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data)
        # evhttp ignores a HEAD's body framing: the body would be read as the next request
        data = self.raw(b"HEAD /k HTTP/1.1\r\nHost: x\r\nContent-Length: 35\r\n\r\n"
                        b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data)
        self.assertEqual(data.count(b"HTTP/1.1 "), 1, data)
        # a GET's body is read as a body, never as a request
        data = self.raw(b"GET /k HTTP/1.1\r\nHost: x\r\nContent-Length: 35\r\n\r\n"
                        b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
        self.assertEqual(data.count(b"HTTP/1.1 "), 1, data)
        # a plain chunked body, empty, is honoured by evhttp and served
        data = self.raw(b"GET /k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)

    def test_a_nonsense_version_is_refused_not_echoed(self):
        data = self.raw(b"GET /k HTTP/-1.-1\r\nHost: x\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data)
        self.assertNotIn(b"HTTP/-1", data)
        data = self.raw(b"GET /k HTTP/0.9\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 505 "), data)
        data = self.raw(b"GET /k HTTP/1.7\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
        self.assertEqual(self.proxy.get("k").status, 200)


class ManyPipelinedClientsTest(ProxyTestCase):
    """Sixty clients at once, each sending twenty requests in one write and then its FIN: most
    answers wait for the end of their loop turn (other clients are ready in it), and every one of
    them must arrive, complete, before the connection closes."""

    CLIENTS, REQUESTS = 60, 20

    def received(self, port, payload):
        """What each client received, until the proxy closed its connection."""
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(self.CLIENTS)]
        for s in socks:
            self.addCleanup(s.close)
        start = threading.Barrier(len(socks))
        received = [b""] * len(socks)

        def client(i):
            start.wait()
            socks[i].sendall(payload)
            socks[i].shutdown(socket.SHUT_WR)
            received[i] = read_until_closed(socks[i])
        self.assertEqual(run_threads(len(socks), client), [])
        return received

    def test_http(self):
        proxy = self.start_proxy()
        self.redis("SET", "k", "v")
        payload = b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n" * self.REQUESTS
        for _ in range(5):
            for data in self.received(proxy.port, payload):
                # (A worker's first answer is a miss: HIT or MISS, all 200 with the value.)
                self.assertEqual(data.count(b"HTTP/1.1 200 OK"), self.REQUESTS, data[-200:])
                self.assertEqual(data.count(b"\r\n\r\nv"), self.REQUESTS, data[-200:])

    def test_resp(self):
        proxy = self.start_proxy(resp=True)
        self.redis("SET", "k", "v")
        payload = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n" * self.REQUESTS
        for _ in range(5):
            for data in self.received(proxy.resp_port, payload):
                self.assertEqual(data, b"$1\r\nv\r\n" * self.REQUESTS)
