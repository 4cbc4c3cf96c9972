"""A Redis given by name (as compose and Kubernetes give it): looked up again before every
connect, so that the proxy follows Redis to a new address, and a name that does not resolve yet
is retried (503 meanwhile) instead of stopping the proxy. The workers ask a name server the test
controls (fake_dns.py), through REDIS_PROXY_RESOLV_CONF."""
import os
import subprocess

from fake_dns import FakeDns
from harness import REDIS_SERVER, ProxyTestCase, RedisClient, _die_with_parent, wait_until


class NamedRedisTest(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.dns = FakeDns(self.workdir)
        self.addCleanup(self.dns.close)

    def start_named(self, **sections):
        return self.start_proxy(redis={"address": "redis.test:%d" % self.redis.port},
                                env={"REDIS_PROXY_RESOLV_CONF": self.dns.resolv_conf}, **sections)

    def redis_on(self, ip, port):
        """A second redis-server on another loopback address, same port (a recreated container)."""
        proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", ip, "--save", "", "--appendonly", "no",
                                 "--dir", self.workdir, "--daemonize", "no"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        self.addCleanup(lambda: (proc.terminate(), proc.wait(10)))

        def answers():
            try:
                import socket
                s = socket.create_connection((ip, port), timeout=1)
                s.sendall(b"PING\r\n")
                ok = s.recv(16) == b"+PONG\r\n"
                s.close()
                return ok
            except OSError:
                return False
        wait_until(answers, what="redis-server on %s:%d" % (ip, port))

        def call(*args):
            out = subprocess.run(["redis-cli", "-h", ip, "-p", str(port)] + list(args), capture_output=True,
                                 timeout=10)
            return out.stdout.strip()
        return call

    def test_the_proxy_follows_redis_to_its_new_address(self):
        self.dns.records["redis.test"] = "127.0.0.1"
        self.redis("SET", "k", "on the first")
        proxy = self.start_named()
        self.assertEqual(proxy.get("k").body, b"on the first")
        # Redis comes back elsewhere (same name, new address): the name now says so.
        port = self.redis.port
        self.redis.stop()
        second = self.redis_on("127.0.0.2", port)
        second("SET", "k2", "on the second")
        self.dns.records["redis.test"] = "127.0.0.2"
        wait_until(lambda: proxy.get("k2").status == 200, what="the proxy reading from the new address")
        self.assertEqual(proxy.get("k2").body, b"on the second")
        self.assertIn("redis.test now resolves to 127.0.0.2 (was 127.0.0.1)", proxy.log())

    def test_a_name_that_does_not_resolve_yet_is_retried_not_fatal(self):
        self.redis("SET", "k", "v")
        proxy = self.start_named(connected=False)
        self.assertEqual(proxy.get("k").status, 503)  # up, and honest about Redis
        wait_until(lambda: "cannot resolve its name" in proxy.log(), what="the lookup's failure in the log")
        self.dns.records["redis.test"] = "127.0.0.1"
        wait_until(lambda: proxy.get("k").status == 200, what="the key read once the name resolves")
        self.assertEqual(proxy.get("k").body, b"v")

    def test_each_reconnect_looks_the_name_up_again(self):
        self.dns.records["redis.test"] = "127.0.0.1"
        proxy = self.start_named()
        asked = self.dns.asked
        c = RedisClient(self.redis.port)
        c("CLIENT", "KILL", "TYPE", "normal")  # drops the proxy's connections (and this one)
        wait_until(lambda: self.dns.asked > asked, what="a lookup before the reconnect")
