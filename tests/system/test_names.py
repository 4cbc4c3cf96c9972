"""A Redis given by name (as compose and Kubernetes give it): looked up again before every
connect, with the system's own resolver, so that the proxy follows Redis to a new address, and a
name that does not resolve yet is retried (503 meanwhile) instead of stopping the proxy.

The proxy runs in a mount namespace of its own where /etc/hosts is a file the test writes (the
system resolver reads it at each lookup), so nothing of the machine's is touched. That needs
root: elsewhere the tests are skipped, except in CI, where they fail."""
import os
import shutil
import socket
import subprocess
import unittest

from cluster import RedisCluster, key_slot
from harness import PROXY_BIN, REDIS_SERVER, Proxy, ProxyTestCase, _die_with_parent, wait_until


class NamedRedisTest(ProxyTestCase):
    def setUp(self):
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            message = "needs root and unshare(1): a mount namespace with its own /etc/hosts"
            if os.environ.get("CI") == "true":
                self.fail(message)
            raise unittest.SkipTest(message)
        super().setUp()
        self.hosts = os.path.join(self.workdir, "hosts")
        self.set_hosts(None)

    def set_hosts(self, *ips):
        """What redis.test resolves to, in order (None or nothing: nothing); rewritten in place, as
        the mount binds it."""
        with open(self.hosts, "w") as f:
            f.write("127.0.0.1 localhost\n" + "".join("%s redis.test\n" % ip for ip in ips if ip))

    def start_named(self, connected=True, redis=None):
        proxy = Proxy(self.workdir, {"redis": redis or {"address": "redis.test:%d" % self.redis.port}})
        proxy.write_config()
        log = open(proxy.log_path, "ab")
        proxy.log_start = log.tell()
        proxy.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             'mount --bind "$0" /etc/hosts && exec "$1" -c "$2"', self.hosts, PROXY_BIN, proxy.config_path],
            stdout=log, stderr=log, preexec_fn=_die_with_parent)
        log.close()
        self.addCleanup(self._stop_proxy, proxy)
        wait_until(proxy._all_workers_ready, what="the proxy's workers")
        if connected:
            wait_until(lambda: proxy.admin("/readyz")[0] == 200, what="every worker connected to Redis")
        return proxy

    def redis_on(self, ip, port):
        """A second redis-server on another loopback address, same port (a recreated container)."""
        proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", ip, "--save", "", "--appendonly", "no",
                                 "--dir", self.workdir, "--daemonize", "no"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        self.addCleanup(lambda: (proc.terminate(), proc.wait(10)))

        def answers():
            try:
                with socket.create_connection((ip, port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16) == b"+PONG\r\n"
            except OSError:
                return False
        wait_until(answers, what="redis-server on %s:%d" % (ip, port))
        return lambda *args: subprocess.run(["redis-cli", "-h", ip, "-p", str(port)] + list(args),
                                            capture_output=True, timeout=10).stdout.strip()

    def test_the_proxy_follows_redis_to_its_new_address(self):
        self.set_hosts("127.0.0.1")
        self.redis("SET", "k", "on the first")
        proxy = self.start_named()
        self.assertEqual(proxy.get("k").body, b"on the first")
        # Redis comes back elsewhere (same name, new address): the name now says so.
        port = self.redis.port
        self.redis.stop()
        second = self.redis_on("127.0.0.2", port)
        second("SET", "k2", "on the second")
        self.set_hosts("127.0.0.2")
        wait_until(lambda: proxy.get("k2").status == 200, what="the proxy reading from the new address")
        self.assertEqual(proxy.get("k2").body, b"on the second")
        self.assertIn("redis.test now resolves to 127.0.0.2 (was 127.0.0.1)", proxy.log())

    def test_a_name_that_does_not_resolve_yet_is_retried_not_fatal(self):
        self.redis("SET", "k", "v")
        proxy = self.start_named(connected=False)
        self.assertEqual(proxy.get("k").status, 503)  # up, and honest about Redis
        wait_until(lambda: "cannot resolve its name" in proxy.log(), what="the lookup's failure in the log")
        self.set_hosts("127.0.0.1")
        wait_until(lambda: proxy.get("k").status == 200, what="the key read once the name resolves")
        self.assertEqual(proxy.get("k").body, b"v")

    def test_every_address_of_a_name_is_tried_in_turn(self):
        # As Debian's /etc/hosts has localhost: ::1 first, where Redis (bound to 127.0.0.1) does
        # not listen. Only the first address was tried once, and the proxy never connected.
        self.set_hosts("::1", "127.0.0.1")
        self.redis("SET", "k", "v")
        proxy = self.start_named()
        self.assertEqual(proxy.get("k").body, b"v")
        # When none answers, the log says why each failed.
        port = self.redis.port
        self.redis.stop()
        expected = "cannot connect: ::1 (Connection refused), 127.0.0.1 (Connection refused)"
        wait_until(lambda: expected in proxy.log(), what="both addresses' failures in the log")
        self.redis = self.start_redis(port=port)
        self.redis("SET", "k2", "back")  # (k is cached: TTL only)
        wait_until(lambda: proxy.get("k2").body == b"back", what="the proxy back on the second address")

    def test_a_cluster_seed_by_name_is_each_of_its_addresses(self):
        # The master resolves a seed once, at start: into every address, tried in turn.
        cluster = RedisCluster(self.workdir, primaries=3, replicas=0)
        self.addCleanup(cluster.stop)
        cluster.start()
        self.set_hosts("::1", "127.0.0.1")
        proxy = self.start_named(redis={"cluster": "redis.test:%d" % cluster.servers[0].port})
        key = "seeded"
        cluster.server(cluster.owner(key_slot(key)))("SET", key, "v")
        self.assertEqual(proxy.get(key).body, b"v")
