"""TLS to Redis ([redis] tls): a real redis-server on its --tls-port, with certificates the test
makes. Reads, MGET, pipelining, invalidations and the heartbeat over TLS; mutual TLS; a CA that
does not sign Redis's certificate and a name that does not match it refused with OpenSSL's reason,
retried and counted; a Redis restart, a connection killed by Redis and values larger than a TLS
record recovered and read whole; configuration errors naming the file."""
import os
import socket
import subprocess

from harness import PROXY_BIN, Proxy, ProxyTestCase, RedisServer, free_port, resp_encode, wait_until
from tls_certs import make_ca, make_cert


class TlsBase(ProxyTestCase):
    """A CA, a certificate for Redis, and how to start a TLS Redis and a proxy to it."""
    START_REDIS = False

    def setUp(self):
        super().setUp()
        self.ca = make_ca(self.workdir)
        self.server_cert = make_cert(self.workdir, "redis", self.ca)

    def start_tls_redis(self, auth_clients="no", port=None):
        """A redis-server with a plain port (for the test's own writes) and a TLS port (the proxy's)."""
        self.tls_port = port or getattr(self, "tls_port", None) or free_port()
        r = RedisServer(self.workdir, extra_args=[
            "--tls-port", str(self.tls_port), "--tls-cert-file", self.server_cert[0],
            "--tls-key-file", self.server_cert[1], "--tls-ca-cert-file", self.ca[0],
            "--tls-auth-clients", auth_clients])
        self.addCleanup(r.stop)
        return r.start()

    def start_tls_proxy(self, redis, connected=True, **redis_settings):
        settings = {"address": "127.0.0.1:%d" % self.tls_port, "tls": "on", "tls_ca_file": self.ca[0]}
        settings.update(redis_settings)
        return self.start_proxy(redis, resp=True, connected=connected, redis=settings,
                                cache={"invalidation": "tracking"}, proxy={"workers": "2"})

    def metric(self, proxy, name):
        for line in proxy.admin("/metrics")[1].splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None


class TlsToRedisTest(TlsBase):

    def test_reads_pipelines_and_invalidations_over_tls(self):
        redis = self.start_tls_redis()
        redis("SET", "k", "v1")
        big = os.urandom(300 * 1024)  # many TLS records: read whole, across reads
        redis("SET", "big", big)
        proxy = self.start_tls_proxy(redis)
        wait_until(lambda: self.metric(proxy, "redis_proxy_tracking_workers") == 2, what="tracking over TLS")
        self.assertEqual(proxy.get("k").body, b"v1")
        self.assertEqual(proxy.get("big").body, big)
        c = proxy.resp()
        self.assertEqual(c("MGET", "k", "nothing", "big"), [b"v1", None, big])
        c.send_raw(resp_encode("GET", "k") * 200)  # pipelined: 200 answers in order
        self.assertEqual([c.read_reply() for _ in range(200)], [b"v1"] * 200)
        # An invalidation arrives over the TLS link: the cached value changes.
        redis("SET", "k", "v2")
        wait_until(lambda: proxy.get("k").body == b"v2" and c("GET", "k") == b"v2", what="the invalidation")
        c.close()
        self.assertEqual(self.metric(proxy, "redis_proxy_redis_tls_failures_total"), 0)

    def test_mutual_tls(self):
        redis = self.start_tls_redis(auth_clients="yes")
        redis("SET", "k", "v")
        client = make_cert(self.workdir, "proxy-client", self.ca, dns=(), ips=(), client=True)
        proxy = self.start_tls_proxy(redis, tls_cert_file=client[0], tls_key_file=client[1])
        self.assertEqual(proxy.get("k").body, b"v")
        # Without a certificate, Redis refuses the handshake: retried, and said.
        proxy2 = self.start_tls_proxy(redis, connected=False)
        # (TLS 1.3: the handshake ends on the proxy's side before Redis checks the certificate; its
        # refusal comes as an alert on the first read, with OpenSSL's words.)
        wait_until(lambda: "certificate required" in proxy2.log(), what="the refusal, said")
        self.assertEqual(proxy2.get("k").status, 503)

    def test_a_wrong_ca_and_a_wrong_name_are_refused_with_their_reasons(self):
        redis = self.start_tls_redis()
        redis("SET", "k", "v")
        other_ca = make_ca(self.workdir, "other-ca")
        proxy = self.start_tls_proxy(redis, connected=False, tls_ca_file=other_ca[0])
        # (the data connection's line and the invalidation link's, each said when its attempt fails)
        wait_until(lambda: "redis 127.0.0.1:%d: cannot connect: TLS handshake: certificate verify failed" % self.tls_port
                   in proxy.log(), what="the reason in the log")
        self.assertEqual(proxy.get("k").status, 503)
        status, body = proxy.admin("/readyz")
        self.assertEqual(status, 503)
        self.assertIn(": cannot connect: TLS handshake: certificate verify failed: ", body)  # and /readyz says why
        wait_until(lambda: self.metric(proxy, "redis_proxy_redis_tls_failures_total") >= 2, what="counted")
        proxy = self.start_tls_proxy(redis, connected=False, tls_server_name="not-redis.example")
        wait_until(lambda: "hostname mismatch" in proxy.log(), what="the name's refusal")
        self.assertEqual(proxy.get("k").status, 503)
        # The name it has: served. Not checking at all: served too, and warned at start.
        proxy = self.start_tls_proxy(redis, tls_server_name="localhost")
        self.assertEqual(proxy.get("k").body, b"v")
        proxy = self.start_tls_proxy(redis, tls_ca_file=other_ca[0], tls_verify="off")
        self.assertEqual(proxy.get("k").body, b"v")
        self.assertIn("tls_verify = off", proxy.log())

    def test_a_restart_and_a_killed_connection_are_recovered(self):
        redis = self.start_tls_redis()
        redis("SET", "k", "v1")
        proxy = self.start_tls_proxy(redis)
        self.assertEqual(proxy.get("k").body, b"v1")
        # Redis closes every client connection (the TLS links too): the proxy reconnects.
        redis("CLIENT", "KILL", "TYPE", "normal")
        redis("SET", "k", "v2")
        wait_until(lambda: proxy.get("k").body == b"v2", what="reconnected after the kill")
        redis.stop()
        self.assertIn(proxy.get("other").status, (503,))
        redis = self.start_tls_redis(port=self.tls_port)
        redis("SET", "k", "v3")
        wait_until(lambda: proxy.get("k").body == b"v3", what="reconnected after the restart")
        wait_until(lambda: self.metric(proxy, "redis_proxy_tracking_workers") == 2, what="tracking again")
        # Ends and restarts are the connection's, not TLS refusals.
        self.assertEqual(self.metric(proxy, "redis_proxy_redis_tls_failures_total"), 0)

    def test_tls_files_that_do_not_load_fail_the_check(self):
        config = os.path.join(self.workdir, "tls.ini")
        with open(config, "w") as f:
            f.write("[redis]\ntls = on\ntls_ca_file = %s/missing.pem\n" % self.workdir)
        r = subprocess.run([PROXY_BIN, "-c", config, "-t"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("tls.ini:2: [redis] tls: %s/missing.pem: No such file or directory" % self.workdir, r.stderr)
        other = make_cert(self.workdir, "other", make_ca(self.workdir, "ca2"))
        with open(config, "w") as f:  # a certificate with another's key
            f.write("[redis]\ntls = on\ntls_cert_file = %s\ntls_key_file = %s\n" % (self.server_cert[0], other[1]))
        r = subprocess.run([PROXY_BIN, "-c", config, "-t"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("tls_key_file in [redis]", r.stderr)
        with open(config, "w") as f:
            f.write("[redis]\ntls_cert_file = %s\n" % self.server_cert[0])
        r = subprocess.run([PROXY_BIN, "-c", config, "-t"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("go together", r.stderr)


class TlsClusterTest(ProxyTestCase):
    """A Redis Cluster of 3 primaries with tls-cluster yes: the proxy reaches its seeds over TLS,
    is told the TLS ports (CLUSTER SLOTS, MOVED, ASK), and follows a slot's migration."""
    START_REDIS = False

    def test_a_tls_cluster_and_a_slot_migration(self):
        from cluster import RedisCluster
        ca = make_ca(self.workdir)
        cert = make_cert(self.workdir, "node", ca, client=True)  # the bus: each node is a client of the others
        cluster = RedisCluster(self.workdir, primaries=3, replicas=0, tls=(cert[0], cert[1], ca[0]))
        for s in cluster.servers:
            self.addCleanup(s.stop)
        self.addCleanup(lambda: [s.stop() for s in cluster.servers])
        cluster.start()
        keys = {RedisCluster.key_in_slot(slot, "t:"): b"v%d" % slot for slot in (0, 6000, 12000, 16383)}
        for k, v in keys.items():
            cluster.server(cluster.owner(key_slot_of(k)))("SET", k, v)
        seeds = " ".join("127.0.0.1:%d" % s.tls_port for s in cluster.servers)
        proxy = Proxy(self.workdir, {"redis": {"cluster": seeds, "tls": "on", "tls_ca_file": ca[0]},
                                     "cache": {"invalidation": "tracking"}}, resp=True)
        self.addCleanup(self._stop_proxy, proxy)
        proxy.start()
        wait_until(lambda: "tracking established in 1 of 1" in proxy.admin("/readyz")[1],
                   what="every primary reached over TLS, and tracking")
        for k, v in keys.items():
            self.assertEqual(proxy.get(k).body, v)
        c = proxy.resp()
        self.assertEqual(c("MGET", *keys), list(keys.values()))
        # Slot 6000's keys move to another primary, over the TLS bus; reads follow (ASK, MOVED).
        slot, key = 6000, RedisCluster.key_in_slot(6000, "t:")
        source_port = cluster.owner(slot)
        nodes = cluster.nodes()
        source = next(n for n in nodes if n["port"] == source_port)
        target = next(n for n in nodes if n["role"] == "master" and n["port"] != source_port)
        src, dst = cluster.server(source["port"]), cluster.server(target["port"])
        dst("CLUSTER", "SETSLOT", slot, "IMPORTING", source["id"])
        src("CLUSTER", "SETSLOT", slot, "MIGRATING", target["id"])
        src("MIGRATE", "127.0.0.1", cluster.server(target["port"]).tls_port, "", 0, 5000, "KEYS", key)
        for n in cluster.primaries():
            cluster.server(n["port"])("CLUSTER", "SETSLOT", slot, "NODE", target["id"])
        wait_until(lambda: cluster.owner(slot) == target["port"], what="the slot moved")
        dst("SET", key, "moved")
        wait_until(lambda: proxy.get(key).body == b"moved" and c("GET", key) == b"moved", what="the new owner's value")
        c.close()
        text = proxy.admin("/metrics")[1]
        self.assertIn("redis_proxy_redis_tls_failures_total 0\n", text)


def key_slot_of(key):
    from cluster import key_slot
    return key_slot(key)


class TlsDocsExampleTest(ProxyTestCase):
    """docs/tls.md's sidecar example, as written: its ini block, with the address, the CA bundle
    and the password file moved into the test's folder, against a TLS redis-server that asks
    for that password."""
    START_REDIS = False

    def test_the_sidecar_example_runs_as_written(self):
        import re
        from harness import ROOT, free_ports
        with open(os.path.join(ROOT, "docs", "tls.md")) as f:
            ini = re.search(r"```ini\n(.*?)```", f.read(), re.S).group(1)
        ca = make_ca(self.workdir)
        cert = make_cert(self.workdir, "redis", ca)
        tls_port = free_port()
        redis = RedisServer(self.workdir, extra_args=[
            "--tls-port", str(tls_port), "--tls-cert-file", cert[0], "--tls-key-file", cert[1],
            "--tls-ca-cert-file", ca[0], "--tls-auth-clients", "no", "--requirepass", "managed-pw"])
        redis.password = "managed-pw"
        self.addCleanup(redis.stop)
        redis.start()
        redis("SET", "user:42", "alice")
        password = os.path.join(self.workdir, "redis.password")
        with open(password, "w") as f:
            f.write("managed-pw\n")
        os.chmod(password, 0o600)
        port, resp_port, admin_port = free_ports(3)
        ini = (ini.replace("127.0.0.1:8080", "127.0.0.1:%d" % port).replace("127.0.0.1:6380", "127.0.0.1:%d" % resp_port)
               .replace("my-cache.example.internal:6379", "localhost:%d" % tls_port)
               .replace("/etc/redis-proxy/provider-ca.pem", ca[0]).replace("/etc/redis-proxy/redis.password", password))
        config = os.path.join(self.workdir, "sidecar.ini")
        with open(config, "w") as f:
            f.write(ini + "[admin]\nlisten = 127.0.0.1:%d\n" % admin_port)
        with open(os.path.join(self.workdir, "sidecar.log"), "wb") as log:
            proc = subprocess.Popen([PROXY_BIN, "-c", config], stdout=log, stderr=log)
        self.addCleanup(lambda: (proc.terminate(), proc.wait(15)))

        def get(key):
            try:
                s = socket.create_connection(("127.0.0.1", resp_port), timeout=5)
            except OSError:
                return None
            try:
                s.sendall(resp_encode("GET", key))
                return s.recv(100)
            finally:
                s.close()
        wait_until(lambda: get("user:42") == b"$5\r\nalice\r\n", what="the sidecar answering through TLS and AUTH")


class TlsNamesTest(TlsBase):
    def test_a_seed_by_name_is_checked_against_that_name(self):
        # A certificate with a name only (no IP address): a single Redis and a cluster seed given
        # by that name are both checked against it (the seed keeps its name once resolved).
        self.server_cert = make_cert(self.workdir, "named", self.ca, dns=("localhost",), ips=())
        redis = self.start_tls_redis()
        redis("SET", "k", "v")
        proxy = self.start_tls_proxy(redis, address="localhost:%d" % self.tls_port)
        self.assertEqual(proxy.get("k").body, b"v")
        with open(os.path.join(self.workdir, "t.ini"), "w") as f:
            f.write("[redis]\ntls = on\naddress = unix:/tmp/x.sock\n")
        r = subprocess.run([PROXY_BIN, "-c", os.path.join(self.workdir, "t.ini"), "-t"], capture_output=True, text=True,
                           timeout=10)
        self.assertEqual(r.returncode, 78)
        self.assertIn("no TLS on a unix socket", r.stderr)

    def test_an_encrypted_key_is_refused_without_asking(self):
        encrypted = os.path.join(self.workdir, "enc.key")
        subprocess.run(["openssl", "pkey", "-in", self.server_cert[1], "-out", encrypted, "-aes256", "-passout",
                        "pass:secret-phrase"], check=True, capture_output=True, timeout=30)
        with open(os.path.join(self.workdir, "e.ini"), "w") as f:
            f.write("[redis]\ntls = on\ntls_cert_file = %s\ntls_key_file = %s\n" % (self.server_cert[0], encrypted))
        r = subprocess.run([PROXY_BIN, "-c", os.path.join(self.workdir, "e.ini"), "-t"], capture_output=True, text=True,
                           timeout=10, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("encrypted key", r.stderr)
