"""Protected mode, as Redis's: with no [users] and protected_mode = on (the default), a proxy
listening on every address serves its loopback clients and refuses any other with the reason
(-DENIED over RESP, 403 over HTTP), counted and logged; protected_mode = off serves them.

A client "not on loopback" is an honest one: it connects from one of this machine's own
non-loopback addresses (an Ethernet interface's), so the proxy sees that address as its peer, as
it would a remote client's."""
import fcntl
import http.client
import signal
import socket
import struct

from harness import ProxyTestCase, RedisClient, RedisError, free_ports, wait_until


def non_loopback_ipv6():
    """One of this machine's global IPv6 addresses, or None (from /proc/net/if_inet6)."""
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                hexaddr, _, _, scope = line.split()[:4]
                if scope == "00" and hexaddr != "0" * 31 + "1":
                    return socket.inet_ntop(socket.AF_INET6, bytes.fromhex(hexaddr))
    except OSError:
        pass
    return None


def non_loopback_ipv4():
    """One of this machine's IPv4 addresses outside 127.0.0.0/8, or None (SIOCGIFADDR per
    interface: no iproute2 needed)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
            except OSError:
                continue
            address = socket.inet_ntoa(packed[20:24])
            if not address.startswith("127."):
                return address
    finally:
        s.close()
    return None


class ProtectedModeTest(ProxyTestCase):
    def setUp(self):
        self.outside = non_loopback_ipv4()
        if self.outside is None:
            self.skipTest("this machine has no non-loopback IPv4 address to connect from")
        super().setUp()

    def listening_everywhere(self, **extra):
        """A proxy on 0.0.0.0 (as a container's), its ports free on every address."""
        port, resp_port = free_ports(2)
        proxy = self.start_proxy(resp=True, proxy=dict({"listen": "0.0.0.0:%d" % port,
                                                        "resp_listen": "0.0.0.0:%d" % resp_port}, **extra))
        proxy.port, proxy.resp_port = port, resp_port
        return proxy

    def http_from(self, proxy, source, path="/k"):
        conn = http.client.HTTPConnection(source, proxy.port, timeout=10, source_address=(source, 0))
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def resp_from(self, source, port):
        sock = socket.create_connection((source, port), timeout=10, source_address=(source, 0))
        c = RedisClient.__new__(RedisClient)
        c.closed, c.sock, c.file = False, sock, sock.makefile("rb")
        self.addCleanup(c.close)
        return c

    def test_a_client_not_on_loopback_is_refused_with_the_reason(self):
        self.redis("SET", "k", "v")
        proxy = self.listening_everywhere()
        # From loopback: served as always.
        self.assertEqual(self.http_from(proxy, "127.0.0.1")[0], 200)
        self.assertEqual(self.resp_from("127.0.0.1", proxy.resp_port)("GET", "k"), b"v")
        # From this machine's Ethernet address: refused, with what to do, and closed.
        status, headers, body = self.http_from(proxy, self.outside)
        self.assertEqual(status, 403)
        self.assertEqual(headers.get("connection"), "close")
        self.assertIn(b"protected mode", body)
        self.assertIn(b"protected_mode = off", body)
        self.assertIn(b"[users]", body)
        c = self.resp_from(self.outside, proxy.resp_port)
        with self.assertRaises(RedisError) as e:
            c("GET", "k")
        self.assertTrue(str(e.exception).startswith("DENIED redis-proxy is running in protected mode"), e.exception)
        self.assertTrue(c.at_eof())  # and closed
        # Counted per front at accept, and said once a second at most, with the client's address.
        _, metrics = proxy.admin("/metrics")
        self.assertIn('redis_proxy_clients_denied_total{front="http"} 1\n', metrics)
        self.assertIn('redis_proxy_clients_denied_total{front="resp"} 1\n', metrics)
        wait_until(lambda: "protected mode: refused" in proxy.log(), what="the refusal in the log")
        self.assertIn(self.outside, proxy.log())
        # Nothing was read for them: the key was fetched once, by the loopback client.
        self.assertIn('redis_proxy_requests_total{front="http",result="miss"} 1\n', metrics)

    def test_many_refusals_are_said_once_a_second(self):
        proxy = self.listening_everywhere()
        for _ in range(20):
            self.assertEqual(self.http_from(proxy, self.outside)[0], 403)
        self.assertLessEqual(proxy.log().count("protected mode: refused"), 2)

    def test_protected_mode_off_serves_every_client(self):
        self.redis("SET", "k", "v")
        proxy = self.listening_everywhere(protected_mode="off")
        self.assertEqual(self.http_from(proxy, self.outside)[2], b"v")
        self.assertEqual(self.resp_from(self.outside, proxy.resp_port)("GET", "k"), b"v")
        _, metrics = proxy.admin("/metrics")
        self.assertIn('redis_proxy_clients_denied_total{front="http"} 0\n', metrics)

    def test_with_users_every_client_authenticates_instead(self):
        self.redis("SET", "k", "v")
        port, resp_port = free_ports(2)
        proxy = self.start_proxy(resp=True, proxy={"listen": "0.0.0.0:%d" % port, "resp_listen": "0.0.0.0:%d" % resp_port},
                                 users={"app": "on >app-pw ~*"})
        proxy.port, proxy.resp_port = port, resp_port
        c = self.resp_from(self.outside, resp_port)
        with self.assertRaises(RedisError) as e:
            c("GET", "k")
        self.assertEqual(str(e.exception), "NOAUTH Authentication required.")
        self.assertEqual(c("AUTH", "app", "app-pw"), b"OK")
        self.assertEqual(c("GET", "k"), b"v")
        self.assertEqual(self.http_from(proxy, self.outside)[0], 401)

    def test_silent_clients_from_outside_hold_no_slot(self):
        # Refused at accept: a client that sends nothing is closed all the same, and never takes
        # one of the slots the loopback clients need.
        proxy = self.listening_everywhere(max_clients="4")
        silent = []
        for _ in range(12):
            s = socket.create_connection((self.outside, proxy.resp_port), timeout=10, source_address=(self.outside, 0))
            self.addCleanup(s.close)
            silent.append(s)
        for s in silent:
            self.assertTrue(s.recv(4096).startswith(b"-DENIED "))
        for _ in range(8):
            c = self.resp_from("127.0.0.1", proxy.resp_port)
            self.assertEqual(c("PING"), b"PONG")
            c.close()
        _, metrics = proxy.admin("/metrics")
        self.assertIn('redis_proxy_clients_denied_total{front="resp"} 12\n', metrics)

    def test_a_default_user_that_takes_any_password_is_no_protection(self):
        # As Redis: protected mode holds while the default user has no password, [users] or not.
        self.redis("SET", "k", "v")
        port, resp_port = free_ports(2)
        proxy = self.start_proxy(resp=True, proxy={"listen": "0.0.0.0:%d" % port, "resp_listen": "0.0.0.0:%d" % resp_port},
                                 users={"default": "on nopass allkeys", "app": "on >app-pw ~*"})
        proxy.port, proxy.resp_port = port, resp_port
        c = self.resp_from(self.outside, resp_port)
        with self.assertRaises(RedisError) as e:
            c("GET", "k")
        self.assertTrue(str(e.exception).startswith("DENIED"), e.exception)
        self.assertEqual(self.http_from(proxy, self.outside)[0], 403)
        # Loopback clients are the default user without AUTH, on both fronts.
        self.assertEqual(self.resp_from("127.0.0.1", resp_port)("GET", "k"), b"v")
        self.assertEqual(self.http_from(proxy, "127.0.0.1")[2], b"v")

    def test_a_reload_applies_protected_mode_to_connections_it_hands_over(self):
        self.redis("SET", "k", "v")
        port, resp_port = free_ports(2)
        proxy = self.start_proxy(resp=True, proxy={"listen": "0.0.0.0:%d" % port, "resp_listen": "0.0.0.0:%d" % resp_port,
                                                   "protected_mode": "off"})
        proxy.port, proxy.resp_port = port, resp_port
        outside = self.resp_from(self.outside, resp_port)
        inside = self.resp_from("127.0.0.1", resp_port)
        self.assertEqual(outside("GET", "k"), b"v")
        self.assertEqual(inside("GET", "k"), b"v")
        proxy.settings["proxy"]["protected_mode"] = "on"
        proxy.write_config()
        proxy.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "redis_proxy_config_generation 2\n" in proxy.admin("/metrics")[1], what="the reload")
        wait_until(lambda: 'redis_proxy_connections_handed_over_total 1\n' in proxy.admin("/metrics")[1],
                   what="the loopback connection handed over")
        self.assertEqual(inside("GET", "k"), b"v")
        with self.assertRaises((RedisError, ConnectionError, OSError)):
            outside("GET", "k")
            outside("GET", "k")

    def test_ipv6_clients_not_on_loopback_are_refused_too(self):
        address = non_loopback_ipv6()
        if address is None:
            self.skipTest("this machine has no global IPv6 address to connect from")
        port, resp_port = free_ports(2)
        proxy = self.start_proxy(resp=True, proxy={"listen": "[::]:%d" % port, "resp_listen": "[::]:%d" % resp_port})
        sock = socket.create_connection((address, resp_port), timeout=10, source_address=(address, 0))
        self.addCleanup(sock.close)
        self.assertTrue(sock.recv(4096).startswith(b"-DENIED "))
        sock = socket.create_connection(("::1", resp_port), timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(b"PING\r\n")
        self.assertEqual(sock.recv(100), b"+PONG\r\n")

    def test_the_admin_endpoint_without_a_token_is_protected_too(self):
        port, resp_port, admin_port = free_ports(3)
        proxy = self.start_proxy(resp=True, wait=False,
                                 proxy={"listen": "0.0.0.0:%d" % port, "resp_listen": "0.0.0.0:%d" % resp_port},
                                 admin={"listen": "0.0.0.0:%d" % admin_port})
        proxy.admin_port = admin_port
        wait_until(lambda: proxy._all_workers_ready(), what="the worker")
        wait_until(lambda: proxy.admin("/readyz")[0] == 200, what="ready, asked from loopback")
        conn = http.client.HTTPConnection(self.outside, admin_port, timeout=10, source_address=(self.outside, 0))
        conn.request("GET", "/metrics")
        self.assertEqual(conn.getresponse().status, 403)
        conn.close()
        self.assertIn('redis_proxy_clients_denied_total{front="admin"} 1\n', proxy.admin("/metrics")[1])
