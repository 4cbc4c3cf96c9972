"""TLS for clients: listen addresses marked tls serve HTTPS, TLS RESP (redis-cli --tls) and the
admin endpoint over TLS, beside plain ones, with [tls]'s certificate. Mutual TLS ([tls] ca_file),
protocols and ciphers; a handshake bounded by request_timeout, garbage and cut-off handshakes
closed without harm; the certificate read again by a reload, a bad one refusing the reload; a TLS
RESP connection kept by the old generation at a reload; configuration errors naming the line."""
import http.client
import os
import signal
import socket
import ssl
import subprocess
import threading
import time

from harness import (PROXY_BIN, Proxy, ProxyTestCase, RedisClient, RedisError, free_ports, resp_encode,
                     wait_until)
from test_protected_mode import non_loopback_ipv4
from tls_certs import make_ca, make_cert


def TlsResp(port, context, timeout=10):
    """A RESP connection over TLS: call it with a command, get the reply."""
    return RedisClient(port, timeout=timeout, context=context)


class RawTls:
    """TLS driven by hand over a plain socket (memory BIOs): the test can then half-close the
    socket under TLS, or write bytes that are no TLS record past the handshake."""

    def __init__(self, port, context):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("closed during the handshake")
                self.incoming.write(data)
        self.flush()

    def flush(self):
        pending = self.outgoing.read()
        if pending:
            self.sock.sendall(pending)

    def write(self, data):
        self.obj.write(data)
        self.flush()

    def read_all(self):
        """Everything until the proxy closes (or goes silent for 5 s)."""
        self.sock.settimeout(5)
        got = b""
        while True:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            if not data:
                break
            self.incoming.write(data)
            try:
                while True:
                    chunk = self.obj.read(65536)
                    if not chunk:
                        break
                    got += chunk
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                break
        return got


class TlsClientsBase(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.ca = make_ca(self.workdir)
        self.cert = make_cert(self.workdir, "proxy", self.ca, ips=("127.0.0.1", "::1"))

    def context(self, client_cert=None, **options):
        c = ssl.create_default_context(cafile=self.ca[0])
        if client_cert:
            c.load_cert_chain(*client_cert)
        for k, v in options.items():
            setattr(c, k, v)
        return c

    def start_tls_proxy(self, tls=None, proxy=None, admin_tls=False, resp_listen=None, **sections):
        """HTTP and RESP each on a plain address and one marked tls; the admin endpoint too with
        admin_tls."""
        self.https_port, self.tls_resp_port, self.plain_resp_port = free_ports(3)
        settings = {"redis": {"address": "127.0.0.1:%d" % self.redis.port},
                    "tls": dict({"cert_file": self.cert[0], "key_file": self.cert[1]}, **(tls or {}))}
        settings.update(sections)
        p = Proxy(self.workdir, settings)
        p.settings["proxy"].update(proxy or {})
        p.settings["proxy"]["listen"] = "127.0.0.1:%d, 127.0.0.1:%d tls" % (p.port, self.https_port)
        p.settings["proxy"]["resp_listen"] = resp_listen or "127.0.0.1:%d, 127.0.0.1:%d tls" % (
            self.plain_resp_port, self.tls_resp_port)
        p.workers = int(p.settings["proxy"]["workers"])
        p.resp_port = self.plain_resp_port
        if admin_tls:
            p.settings["admin"]["listen"] += " tls"
        self.addCleanup(self._stop_proxy, p)
        p.start()
        if not admin_tls:
            wait_until(lambda: p.admin("/readyz")[0] == 200, what="every worker connected to Redis")
        return p

    def https(self, context=None, timeout=10):
        return http.client.HTTPSConnection("127.0.0.1", self.https_port, timeout=timeout,
                                           context=context or self.context())

    def tls_resp(self, context=None, timeout=10):
        return TlsResp(self.tls_resp_port, context or self.context(), timeout)

    def metric(self, proxy, name):
        for line in proxy.admin("/metrics")[1].splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None


class TlsClientsTest(TlsClientsBase):

    def test_https_and_tls_resp_beside_plain_listeners(self):
        self.redis("SET", "k", "v1")
        big = os.urandom(300 * 1024)  # many TLS records each way
        self.redis("SET", "big", big)
        proxy = self.start_tls_proxy()
        # Plain and TLS addresses of one front serve the same cache.
        self.assertEqual(proxy.get("k").body, b"v1")
        conn = self.https(self.context())
        for _ in range(3):  # keep-alive: one handshake, three answers
            conn.request("GET", "/k")
            r = conn.getresponse()
            self.assertEqual((r.status, r.read(), r.getheader("X-Cache")), (200, b"v1", "HIT"))
        conn.request("GET", "/big")
        self.assertEqual(conn.getresponse().read(), big)
        conn.close()
        # ALPN: http/1.1 chosen from what a browser offers.
        alpn = self.context()
        alpn.set_alpn_protocols(["h2", "http/1.1"])
        conn = self.https(alpn)
        conn.request("GET", "/k")
        self.assertEqual(conn.getresponse().read(), b"v1")
        self.assertEqual(conn.sock.selected_alpn_protocol(), "http/1.1")
        conn.close()
        c = self.tls_resp()
        self.assertEqual(c("GET", "k"), b"v1")
        self.assertEqual(c("MGET", "k", "nothing", "big"), [b"v1", None, big])
        c.send_raw(resp_encode("GET", "k") * 500)  # pipelined: answers in order, across records
        self.assertEqual([c.read_reply() for _ in range(500)], [b"v1"] * 500)
        self.assertEqual(c("PING"), b"PONG")
        c.close()
        self.assertEqual(proxy.resp()("GET", "k"), b"v1")
        # redis-cli --tls, unchanged.
        out = subprocess.run(["redis-cli", "-p", str(self.tls_resp_port), "--tls", "--cacert", self.ca[0], "GET", "k"],
                             capture_output=True, timeout=30)
        self.assertEqual(out.stdout.strip(), b"v1", out)
        # A plain client on the TLS port is not served; a TLS one on the plain port neither.
        s = socket.create_connection(("127.0.0.1", self.tls_resp_port), timeout=10)
        s.sendall(resp_encode("GET", "k"))
        try:
            self.assertNotIn(b"v1", s.recv(4096))  # a TLS alert, or nothing
        except ConnectionResetError:
            pass
        s.close()
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            TlsResp(self.plain_resp_port, self.context(), timeout=3)
        wait_until(lambda: self.metric(proxy, 'redis_proxy_tls_handshakes_total{front="http"}') >= 2
                   and self.metric(proxy, 'redis_proxy_tls_handshakes_total{front="resp"}') >= 2, what="counted")
        self.assertGreaterEqual(self.metric(proxy, 'redis_proxy_tls_handshake_failures_total{front="resp"}'), 1)

    def test_mutual_tls(self):
        self.redis("SET", "k", "v")
        client = make_cert(self.workdir, "client", self.ca, dns=(), ips=(), client=True, server=False)
        proxy = self.start_tls_proxy(tls={"ca_file": self.ca[0]})
        c = self.tls_resp(self.context(client_cert=client))
        self.assertEqual(c("GET", "k"), b"v")
        c.close()
        conn = self.https(self.context(client_cert=client))
        conn.request("GET", "/k")
        self.assertEqual(conn.getresponse().read(), b"v")
        conn.close()
        # Without a certificate: refused (TLS 1.3 says so on the first read).
        with self.assertRaises((ssl.SSLError, ConnectionError, RedisError)):
            c = self.tls_resp(self.context())
            c("GET", "k")
        with self.assertRaises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            conn = self.https(self.context())
            conn.request("GET", "/k")
            conn.getresponse().read()
        # One from another CA: refused too.
        other = make_ca(self.workdir, "other-ca")
        stranger = make_cert(self.workdir, "stranger", other, dns=(), ips=(), client=True, server=False)
        with self.assertRaises((ssl.SSLError, ConnectionError, RedisError)):
            c = self.tls_resp(self.context(client_cert=stranger))
            c("GET", "k")
        wait_until(lambda: self.metric(proxy, 'redis_proxy_tls_handshake_failures_total{front="resp"}') >= 2
                   and self.metric(proxy, 'redis_proxy_tls_handshake_failures_total{front="http"}') >= 1,
                   what="the refusals counted")
        # Plain listeners are not asked for a certificate.
        self.assertEqual(proxy.get("k").body, b"v")

    def test_protocols_and_ciphers(self):
        self.redis("SET", "k", "v")
        self.start_tls_proxy(tls={"protocols": "TLSv1.3"})
        old = self.context(maximum_version=ssl.TLSVersion.TLSv1_2)
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            self.tls_resp(old)
        c = self.tls_resp()
        self.assertEqual(c.sock.version(), "TLSv1.3")
        c.close()
        self.start_tls_proxy(tls={"protocols": "TLSv1.2", "ciphers": "ECDHE-RSA-AES128-GCM-SHA256"})
        c = self.tls_resp()
        self.assertEqual((c.sock.version(), c.sock.cipher()[0]), ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"))
        self.assertEqual(c("GET", "k"), b"v")
        c.close()

    def test_admin_over_tls(self):
        proxy = self.start_tls_proxy(admin_tls=True)
        conn = http.client.HTTPSConnection("127.0.0.1", proxy.admin_port, timeout=10, context=self.context())
        wait_until(lambda: (conn.request("GET", "/readyz"), conn.getresponse().read())[1].startswith(b"ready"),
                   what="/readyz over TLS")
        conn.request("GET", "/metrics")
        self.assertIn(b"redis_proxy_tls_handshakes_total", conn.getresponse().read())
        conn.close()
        with self.assertRaises((http.client.HTTPException, ConnectionError)):
            proxy.admin("/metrics", timeout=3)  # plain HTTP to a TLS address: no answer


class TlsClientBoundsTest(TlsClientsBase):

    def test_a_handshake_that_stops_holds_nothing_past_request_timeout(self):
        proxy = self.start_tls_proxy(proxy={"request_timeout": "1s", "client_timeout": "60s"})
        hello = self.client_hello()
        started = time.monotonic()
        socks = []
        for port in (self.tls_resp_port, self.https_port):
            silent = socket.create_connection(("127.0.0.1", port), timeout=10)  # connects, says nothing
            cut = socket.create_connection(("127.0.0.1", port), timeout=10)
            cut.sendall(hello[:len(hello) // 2])  # half a ClientHello
            socks += [silent, cut]
        for s in socks:
            self.assertEqual(s.recv(4096), b"")  # closed by the proxy
            s.close()
        self.assertLess(time.monotonic() - started, 8)
        wait_until(lambda: self.metric(proxy, 'redis_proxy_tls_handshake_failures_total{front="resp"}') >= 2
                   and self.metric(proxy, 'redis_proxy_tls_handshake_failures_total{front="http"}') >= 2,
                   what="the failures counted")
        wait_until(lambda: self.metric(proxy, 'redis_proxy_client_connections{front="resp"}') == 0
                   and self.metric(proxy, 'redis_proxy_client_connections{front="http"}') == 0, what="no client held")

    def test_https_answers_a_client_that_half_closes(self):
        big = b"x" * (2 * 1024 * 1024)
        self.redis("SET", "big", big)
        self.start_tls_proxy()
        c = RawTls(self.https_port, self.context())
        c.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 2)  # pipelined, then no more (FIN)
        c.sock.shutdown(socket.SHUT_WR)
        got = c.read_all()
        c.sock.close()
        self.assertEqual(got.count(b"HTTP/1.1 200"), 2)
        self.assertEqual(got.count(big), 2)

    def test_bytes_decrypted_while_reading_is_held_back_are_read_later(self):
        # One TLS record: a GET of a value larger than the client's output bound lets through at
        # once (reading stops, backpressure), then 600 PINGs that OpenSSL has already decrypted:
        # no readiness of the socket will tell about them once reading resumes.
        big = os.urandom(1200 * 1024)
        self.redis("SET", "big", big)
        self.start_tls_proxy(redis={"address": "127.0.0.1:%d" % self.redis.port, "max_reply_size": "8m"},
                             cache={"max_value_size": "4m"})
        c = self.tls_resp()
        self.assertEqual(c("GET", "big"), big)  # cached now
        c.send_raw(resp_encode("GET", "big") + resp_encode("PING") * 600)
        self.assertEqual(c.read_reply(), big)
        self.assertEqual([c.read_reply() for _ in range(600)], [b"PONG"] * 600)
        c.close()

    def test_garbage_after_the_handshake(self):
        self.redis("SET", "k", "v")
        proxy = self.start_tls_proxy(proxy={"workers": "2"})
        pids = proxy.worker_pids()
        for port in (self.tls_resp_port, self.https_port):
            # Bytes that are no TLS record: a TLS alert, and the connection closed.
            c = RawTls(port, self.context())
            c.sock.sendall(os.urandom(2048))
            c.read_all()
            c.sock.close()
            # A record that does not decrypt (its bytes changed on the way).
            c = RawTls(port, self.context())
            c.obj.write(b"GET /k HTTP/1.1\r\n\r\n" if port == self.https_port else resp_encode("GET", "k"))
            record = bytearray(c.outgoing.read())
            record[-1] ^= 0xFF
            c.sock.sendall(bytes(record))
            self.assertNotIn(b"v", c.read_all())
            c.sock.close()
        # Garbage inside good records: the protocol's own errors.
        c = self.tls_resp()
        c.send_raw(b"*1\r\n$-5\r\n")
        with self.assertRaises(RedisError):
            c.read_reply()
        c.close()
        conn = self.https()
        conn.request("GET", "/%ZZ")
        self.assertEqual(conn.getresponse().status, 400)
        conn.close()
        c = self.tls_resp()
        self.assertEqual(c("GET", "k"), b"v")
        c.close()
        self.assertEqual(proxy.worker_pids(), pids)

    def test_a_record_sent_a_byte_at_a_time_is_bounded_by_request_timeout(self):
        # request_timeout runs from a request's first byte; over TLS that is its record's first
        # byte, long before the record is whole and anything of it can be read.
        self.redis("SET", "k", "v")
        self.start_tls_proxy(proxy={"request_timeout": "1s", "client_timeout": "60s"})
        for port, request in ((self.tls_resp_port, resp_encode("GET", "k")),
                              (self.https_port, b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")):
            c = RawTls(port, self.context())
            c.obj.write(request)
            record = c.outgoing.read()
            started, closed = time.monotonic(), False
            for byte in record:  # 0.3 s apart: silence never lasts client_timeout
                try:
                    c.sock.sendall(bytes([byte]))
                    time.sleep(0.3)
                    closed = c.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
                except BlockingIOError:
                    continue  # nothing from the proxy yet
                except OSError:
                    closed = True
                if closed:
                    break
            self.assertTrue(closed, "the whole record was sent a byte at a time")
            self.assertLess(time.monotonic() - started, 4, "the record's bytes held the connection")
            c.sock.close()

    def test_garbage_on_tls_addresses_leaves_the_workers_serving(self):
        self.redis("SET", "k", "v")
        proxy = self.start_tls_proxy(proxy={"workers": "2"})
        pids = proxy.worker_pids()
        hello = self.client_hello()
        payloads = [os.urandom(512), b"\x16\x03\x01\xff\xff" + os.urandom(100), b"GET / HTTP/1.1\r\n\r\n",
                    hello[:5] + os.urandom(len(hello) - 5), hello + os.urandom(4096), b"\x00" * 20000]
        for port in (self.tls_resp_port, self.https_port):
            for payload in payloads:
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                try:
                    s.sendall(payload)
                    while s.recv(65536):
                        pass
                except (ConnectionError, socket.timeout):
                    pass
                s.close()
        c = self.tls_resp()
        self.assertEqual(c("GET", "k"), b"v")
        c.close()
        self.assertEqual(proxy.worker_pids(), pids)

    def test_tls_clients_count_against_max_clients(self):
        self.redis("SET", "k", "v")
        proxy = self.start_tls_proxy(proxy={"max_clients": "2"})
        held = [self.tls_resp(), self.tls_resp()]
        for c in held:
            self.assertEqual(c("GET", "k"), b"v")
        # A third waits in the backlog: its handshake gets no answer while the two are open.
        raw = socket.create_connection(("127.0.0.1", self.tls_resp_port), timeout=1)
        with self.assertRaises(socket.timeout):
            self.context().wrap_socket(raw, server_hostname="localhost")
        raw.close()
        held[0].close()
        c = self.tls_resp()
        self.assertEqual(c("GET", "k"), b"v")
        c.close()
        held[1].close()

    def test_tls_clients_count_in_client_memory(self):
        self.redis("SET", "k", "v")
        proxy = self.start_tls_proxy()
        held = [self.tls_resp() for _ in range(3)]
        for c in held:
            self.assertEqual(c("GET", "k"), b"v")
        conn = self.https()
        conn.request("GET", "/k")
        self.assertEqual(conn.getresponse().read(), b"v")
        # What OpenSSL holds for each (its record buffers) is held for the client: 36 KiB each.
        wait_until(lambda: self.metric(proxy, "redis_proxy_client_memory_bytes") >= 4 * 36 * 1024,
                   what="TLS state counted")
        for c in held:
            c.close()
        conn.close()
        wait_until(lambda: self.metric(proxy, "redis_proxy_client_memory_bytes") == 0, what="given back")

    def client_hello(self):
        """The first flight of a real TLS client, captured from an in-memory handshake."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.context().wrap_bio(incoming, outgoing, server_hostname="localhost")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return outgoing.read()


class TlsReloadTest(TlsClientsBase):

    def test_a_reload_serves_the_new_certificate_and_keeps_tls_connections(self):
        self.redis("SET", "k", "v")
        proxy = self.start_tls_proxy(proxy={"workers": "2", "shutdown_timeout": "3s"})
        old_serial = self.serial_seen()
        kept = self.tls_resp()
        self.assertEqual(kept("GET", "k"), b"v")
        plain = proxy.resp()
        self.assertEqual(plain("GET", "k"), b"v")
        # The certificate is renewed in place: the next reload serves it.
        renewed = make_cert(self.workdir, "proxy-renewed", self.ca, ips=("127.0.0.1", "::1"))
        os.replace(renewed[0], self.cert[0])
        os.replace(renewed[1], self.cert[1])
        self.assertEqual(subprocess.run([PROXY_BIN, "-c", proxy.config_path, "-R", str(proxy.proc.pid)],
                                        capture_output=True, timeout=30).returncode, 0)
        wait_until(lambda: self.serial_seen() != old_serial, what="the renewed certificate served")
        # The TLS connection stays with the old generation, served until shutdown_timeout; the
        # plain one was handed over.
        self.assertEqual(kept("GET", "k"), b"v")
        self.assertEqual(plain("GET", "k"), b"v")
        wait_until(lambda: self.closed(kept), timeout=15, what="the old generation gone at shutdown_timeout")
        self.assertEqual(plain("GET", "k"), b"v")
        # A certificate that does not match its key: the reload is refused, the running one serves.
        other = make_cert(self.workdir, "other", self.ca)
        os.replace(other[1], self.cert[1])
        out = subprocess.run([PROXY_BIN, "-c", proxy.config_path, "-R", str(proxy.proc.pid)],
                             capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 78, out)
        self.assertIn(b"key_file in [tls]", out.stderr)
        proxy.proc.send_signal(1)  # a reload that skips -R's check fails the same way
        wait_until(lambda: any("reload refused: " in line and "key_file in [tls]" in line
                               for line in proxy.log().splitlines()), what="the refusal logged")
        c = self.tls_resp()
        self.assertEqual(c("GET", "k"), b"v")
        c.close()

    def serial_seen(self):
        c = self.tls_resp()
        serial = c.sock.getpeercert()["serialNumber"]
        c.close()
        return serial

    @staticmethod
    def closed(c):
        try:
            c("PING")
            return False
        except (ConnectionError, ssl.SSLError, OSError):
            return True


class TlsProcessTest(TlsClientsBase):

    def test_tls_connections_queued_on_a_dying_workers_socket_are_served_over_tls(self):
        # As test_process.py's: worker 0 frozen while TLS clients queue on its socket, then
        # killed within a second of its start (its respawn waits longer each time): a serving
        # worker takes its sockets meanwhile, and must serve a TLS address's as TLS.
        self.redis("SET", "k", "v")
        proxy = self.start_tls_proxy(proxy={"workers": "2"})
        slowest, queued = 0.0, 0
        for round_ in range(4):
            pid = proxy.worker_pids()[0]
            os.kill(pid, signal.SIGSTOP)
            results, threads, connected = [], [], []

            def one_client():
                started = time.monotonic()
                try:
                    raw = socket.create_connection(("127.0.0.1", self.tls_resp_port), timeout=10)
                    connected.append(1)
                    c = self.context().wrap_socket(raw, server_hostname="localhost")
                    c.sendall(resp_encode("GET", "k"))
                    results.append((c.recv(100) == b"$1\r\nv\r\n", time.monotonic() - started))
                    c.close()
                except OSError as e:
                    results.append((repr(e), time.monotonic() - started))
            for _ in range(12):
                t = threading.Thread(target=one_client)
                t.start()
                threads.append(t)
            wait_until(lambda: len(connected) == 12, what="every client connected")
            queued += 12 - len(results)
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            for t in threads:
                t.join(15)
            self.assertEqual([ok for ok, _ in results], [True] * 12, results)
            if round_ > 0:  # (the first respawn is at once: nothing to lend)
                slowest = max(slowest, time.monotonic() - killed_at)
            wait_until(lambda: proxy.worker_pids()[0] != pid, timeout=15, what="respawn")
        self.assertGreater(queued, 0, "no client reached the frozen worker's socket")
        self.assertLess(slowest, 0.5, "a queued TLS client waited for the dead worker's successor")

    def test_protected_mode_closes_a_tls_client_from_outside_without_an_answer(self):
        outside = non_loopback_ipv4()
        if outside is None:
            self.skipTest("this machine has no non-loopback IPv4 address to connect from")
        self.redis("SET", "k", "v")
        port = free_ports(1)[0]
        proxy = self.start_tls_proxy(resp_listen="0.0.0.0:%d tls" % port)
        raw = socket.create_connection((outside, port), timeout=10, source_address=(outside, 0))
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            self.context(check_hostname=False).wrap_socket(raw, server_hostname=outside)
        raw.close()
        wait_until(lambda: self.metric(proxy, 'redis_proxy_clients_denied_total{front="resp"}') == 1, what="counted")
        self.assertIn("protected mode: refused TLS client", proxy.log())
        c = TlsResp(port, self.context())  # from loopback: served
        self.assertEqual(c("GET", "k"), b"v")
        c.close()


class TlsReloadAddressesTest(TlsClientsBase):

    def test_a_reload_that_reorders_adds_and_switches_addresses(self):
        self.redis("SET", "k", "v")
        proxy = self.start_tls_proxy(proxy={"workers": "2"})
        kept = proxy.resp()  # plain, on the address the reload marks tls
        self.assertEqual(kept("GET", "k"), b"v")
        extra = free_ports(1)[0]
        # The TLS address first, a new plain one, and the old plain address now TLS.
        proxy.settings["proxy"]["resp_listen"] = "127.0.0.1:%d tls, 127.0.0.1:%d, 127.0.0.1:%d tls" % (
            self.tls_resp_port, extra, self.plain_resp_port)
        proxy.write_config()
        out = subprocess.run([PROXY_BIN, "-c", proxy.config_path, "-R", str(proxy.proc.pid)], capture_output=True,
                             timeout=30)
        self.assertEqual(out.returncode, 0, out)
        wait_until(lambda: "reload: configuration generation 2 serving" in proxy.log(), what="the reload")
        for port in (self.tls_resp_port, self.plain_resp_port):
            wait_until(lambda: self.served_over_tls(port), what="TLS on %d" % port)
        plain = RedisClient(extra)
        self.assertEqual(plain("GET", "k"), b"v")
        plain.close()
        self.assertIn("reload: listening for RESP on 127.0.0.1:%d" % extra, proxy.log())
        # The plain client of the address now TLS: handed over, and closed there, not served.
        wait_until(lambda: TlsReloadTest.closed(kept), what="the plain client closed")
        self.assertIn("closed at the reload: its address is TLS now", proxy.log())

    def test_with_mutual_tls_a_reload_closes_tls_clients_after_their_answers(self):
        self.redis("SET", "k", "v")
        client = make_cert(self.workdir, "client", self.ca, dns=(), ips=(), client=True, server=False)
        proxy = self.start_tls_proxy(proxy={"workers": "1", "shutdown_timeout": "30s"}, tls={"ca_file": self.ca[0]})
        c = self.tls_resp(self.context(client_cert=client))
        self.assertEqual(c("GET", "k"), b"v")
        os.kill(proxy.proc.pid, signal.SIGHUP)  # the CA file may have changed in place: clients verified again
        wait_until(lambda: "reload: configuration generation 2 serving" in proxy.log(), what="the reload")
        wait_until(lambda: TlsReloadTest.closed(c), what="the old client closed well before shutdown_timeout")
        c = self.tls_resp(self.context(client_cert=client))
        self.assertEqual(c("GET", "k"), b"v")
        c.close()

    def served_over_tls(self, port):
        try:
            c = TlsResp(port, self.context(), timeout=3)
            ok = c("GET", "k") == b"v"
            c.close()
            return ok
        except (ssl.SSLError, OSError):
            return False


class TlsClientsDocsExampleTest(TlsClientsBase):
    """docs/tls.md's example for clients, as written: its ini block with the ports, the
    certificate and Redis's address moved to the test's."""

    def test_the_clients_example_runs_as_written(self):
        import re
        from harness import ROOT
        with open(os.path.join(ROOT, "docs", "tls.md")) as f:
            ini = re.findall(r"```ini\n(.*?)```", f.read(), re.S)[1]
        self.redis("SET", "user:42", "alice")
        http, https, resp, tls_resp, admin = free_ports(5)
        for old, new in (("127.0.0.1:8080", "127.0.0.1:%d" % http), ("*:8443", "*:%d" % https),
                         ("127.0.0.1:6380", "127.0.0.1:%d" % resp), ("*:6390", "*:%d" % tls_resp),
                         ("127.0.0.1:9121", "127.0.0.1:%d" % admin), ("/etc/redis-proxy/proxy.crt", self.cert[0]),
                         ("/etc/redis-proxy/proxy.key", self.cert[1])):
            self.assertIn(old, ini)
            ini = ini.replace(old, new)
        config = os.path.join(self.workdir, "clients.ini")
        with open(config, "w") as f:
            f.write(ini + "\n[redis]\naddress = 127.0.0.1:%d\n" % self.redis.port)
        with open(os.path.join(self.workdir, "clients.log"), "wb") as log:
            proc = subprocess.Popen([PROXY_BIN, "-c", config], stdout=log, stderr=log)
        self.addCleanup(lambda: (proc.terminate(), proc.wait(15)))
        self.https_port, self.tls_resp_port = https, tls_resp

        def https_get():
            try:
                conn = self.https(timeout=5)
                conn.request("GET", "/user:42", headers={"Authorization": "Basic YXBwOmFwcC1wYXNzd29yZA=="})
                return conn.getresponse().read()
            except OSError:
                return None
        wait_until(lambda: https_get() == b"alice", what="HTTPS, logged in as app")
        out = subprocess.run(["redis-cli", "-p", str(tls_resp), "--tls", "--cacert", self.ca[0], "--user", "app",
                              "--pass", "app-password", "--no-auth-warning", "GET", "user:42"],
                             capture_output=True, timeout=30)
        self.assertEqual(out.stdout.strip(), b"alice", out)


class TlsConfigTest(TlsClientsBase):

    def check(self, *overrides):
        ini = os.path.join(self.workdir, "check.ini")
        with open(ini, "w") as f:
            f.write("[proxy]\nlisten = 127.0.0.1:%d, 127.0.0.1:%d tls\n" % tuple(free_ports(2)))
        args = [PROXY_BIN, "-c", ini, "-t"]
        for o in overrides:
            args += ["-o", o]
        out = subprocess.run(args, capture_output=True, timeout=30)
        return out.returncode, out.stderr.decode() + out.stdout.decode()

    def test_errors_name_the_setting(self):
        code, text = self.check()
        self.assertEqual(code, 78)
        self.assertIn("[tls] needs cert_file and key_file for a listener marked tls", text)
        cert, key = self.cert
        self.assertEqual(self.check("tls.cert_file=" + cert, "tls.key_file=" + key)[0], 0)
        other = make_cert(self.workdir, "other", self.ca)
        code, text = self.check("tls.cert_file=" + cert, "tls.key_file=" + other[1])
        self.assertEqual(code, 78)
        self.assertIn("key_file in [tls] (%s) does not match cert_file (%s)" % (other[1], cert), text)
        encrypted = os.path.join(self.workdir, "encrypted.key")
        subprocess.run(["openssl", "pkey", "-in", key, "-out", encrypted, "-aes256", "-passout", "pass:x"],
                       check=True, capture_output=True)
        code, text = self.check("tls.cert_file=" + cert, "tls.key_file=" + encrypted)
        self.assertIn("an encrypted key", text)
        # (Told from the file, not from OpenSSL's error: decrypted with no passphrase, a key's
        # padding check passes once in 256 and its error is another. The traditional form too.)
        subprocess.run(["openssl", "pkey", "-in", key, "-out", encrypted, "-traditional", "-aes256", "-passout",
                        "pass:x"], check=True, capture_output=True)
        code, text = self.check("tls.cert_file=" + cert, "tls.key_file=" + encrypted)
        self.assertIn("an encrypted key", text)
        code, text = self.check("tls.cert_file=/nonexistent.pem", "tls.key_file=" + key)
        self.assertIn("cert_file in [tls]: /nonexistent.pem: No such file or directory", text)
        code, text = self.check("tls.cert_file=" + cert, "tls.key_file=" + key, "tls.protocols=TLSv1.1")
        self.assertIn("protocols in [tls] (TLSv1.1): expected TLSv1.2, TLSv1.3 or both", text)
        code, text = self.check("tls.cert_file=" + cert, "tls.key_file=" + key, "tls.ciphers=NOPE-NOT-A-CIPHER")
        self.assertIn("ciphers in [tls]", text)
        code, text = self.check("proxy.resp_listen=127.0.0.1:7000 ssl")
        self.assertIn("'ssl' after 127.0.0.1:7000 (an address may only be followed by tls)", text)
        code, text = self.check("proxy.resp_listen=127.0.0.1:7000, 127.0.0.1:7000 tls")
        self.assertIn("resp_listen in [proxy]: 127.0.0.1:7000 and 127.0.0.1:7000 cannot share a port", text)
        code, text = self.check("proxy.resp_listen=" + ", ".join("127.0.0.1:%d" % (7000 + i) for i in range(5)))
        self.assertIn("more than 4 addresses", text)
        # No TLS listener: [tls] is not looked at.
        out = subprocess.run([PROXY_BIN, "-c", "/dev/null", "-t", "-o", "tls.cert_file=/nonexistent.pem"],
                             capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 0, out)
