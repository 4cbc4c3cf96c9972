"""A real Redis Cluster on loopback for the system tests: three primaries with one replica each,
made by redis-cli --cluster create, as the README tells users to. Every server is stopped by
stop(), which the tests register as a cleanup."""
import os
import subprocess

from harness import free_port, free_ports, port_is_free, REDIS_SERVER, RedisClient, RedisError, RedisServer, wait_until

REDIS_CLI = os.path.join(os.path.dirname(REDIS_SERVER), "redis-cli")
CLUSTER_ARGS = ["--cluster-enabled", "yes", "--cluster-node-timeout", "1000",
                "--repl-diskless-sync-delay", "0"]


def _crc16_table():
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table.append(crc)
    return table


_CRC16 = _crc16_table()


def key_slot(key):
    """Redis Cluster's hash slot: CRC16 (XMODEM) of the key or its non-empty {hash tag}. The tests
    check it against CLUSTER KEYSLOT (test_slot_function_agrees_with_redis)."""
    if isinstance(key, str):
        key = key.encode()
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    crc = 0
    for byte in key:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ byte]
    return crc % 16384


def cluster_ports(n):
    """n free ports whose cluster bus ports (port + 10000) are free too. Both stay below the
    kernel's ephemeral range (32768 up), so no outgoing connection can take one meanwhile."""
    chosen, taken = [], set()  # taken: the chosen ports and their bus ports
    while len(chosen) < n:
        p = free_ports(1, 10000, 22700)[0]
        if p not in taken and p + 10000 not in taken and port_is_free(p + 10000):
            chosen.append(p)
            taken.update((p, p + 10000))
    return chosen


class RedisCluster:
    def __init__(self, workdir, primaries=3, replicas=1, tls=None):
        """tls: (cert, key, ca) files: each node also listens with TLS (tls_port), and the
        cluster's bus and replication are TLS (tls-cluster yes); the plain ports stay for the
        test's own commands, and a TLS client is told the TLS ports (CLUSTER SLOTS, MOVED)."""
        self.workdir = workdir
        self.count = primaries * (1 + replicas)
        self.replicas = replicas
        self.servers = []
        self.tls = tls

    def start(self):
        for port in cluster_ports(self.count):
            args = CLUSTER_ARGS + ["--cluster-config-file", os.path.join(self.workdir, "nodes-%d.conf" % port)]
            tls_port = None
            if self.tls:
                # The bus is the TLS port's + 10000: the pair cluster_ports found free.
                tls_port, port = port, free_port()
                args += ["--tls-port", str(tls_port), "--tls-cluster", "yes", "--tls-replication", "yes",
                         "--tls-cert-file", self.tls[0], "--tls-key-file", self.tls[1], "--tls-ca-cert-file",
                         self.tls[2], "--tls-auth-clients", "no"]
            server = RedisServer(self.workdir, port, args).start()
            server.tls_port = tls_port
            self.servers.append(server)
        addresses = ["127.0.0.1:%d" % s.port for s in self.servers]
        out = subprocess.run([REDIS_CLI, "--cluster", "create"] + addresses +
                             ["--cluster-replicas", str(self.replicas), "--cluster-yes"],
                             capture_output=True, timeout=60)
        if out.returncode != 0:
            raise AssertionError("redis-cli --cluster create failed:\n%s" % (out.stdout + out.stderr).decode())
        wait_until(self.settled, timeout=30, what="the cluster to settle")
        return self

    def server(self, port):
        return next(s for s in self.servers if s.port == port)

    def nodes(self, via=None):
        """CLUSTER NODES as a list of dicts: id, port, role (master/slave), primary id, slots."""
        via = via or next(s for s in self.servers if s.proc is not None)
        found = []
        for line in via("CLUSTER", "NODES").decode().splitlines():
            f = line.split()
            slots = []
            for r in f[8:]:
                if r.startswith("["):
                    continue
                a, _, b = r.partition("-")
                slots.append((int(a), int(b or a)))
            found.append({"id": f[0], "port": int(f[1].split(":")[1].split("@")[0]),
                          "role": "master" if "master" in f[2] else "slave", "primary": f[3],
                          "failed": "fail" in f[2], "slots": slots})
        return found

    def primaries(self):
        return sorted([n for n in self.nodes() if n["role"] == "master" and n["slots"] and not n["failed"]],
                      key=lambda n: n["slots"][0])

    def owner(self, slot, via=None):
        """The port of the primary serving slot."""
        for n in self.nodes(via):
            if n["role"] == "master" and not n["failed"] and any(a <= slot <= b for a, b in n["slots"]):
                return n["port"]
        return None

    def replica_of(self, primary_port):
        nodes = self.nodes()
        pid = next(n["id"] for n in nodes if n["port"] == primary_port)
        return next(n["port"] for n in nodes if n["primary"] == pid)

    def settled(self):
        """Every running node: state ok, all slots covered, and the same view of who owns what;
        every replica synced with its primary."""
        views = set()
        for s in self.servers:
            if s.proc is None:
                continue
            try:
                info = s("CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info or "cluster_slots_assigned:16384" not in info:
                    return False
                nodes = self.nodes(s)
                views.add(tuple(sorted((n["port"], tuple(n["slots"])) for n in nodes
                                       if n["role"] == "master" and not n["failed"])))
                role = s("ROLE")
                if role[0] == b"slave" and role[3] != b"connected":
                    return False
            except (OSError, ConnectionError, RedisError):
                return False
        return len(views) == 1

    @staticmethod
    def key_in_slot(slot, prefix="k"):
        """A key that hashes to slot."""
        for i in range(1000000):
            key = "%s%d" % (prefix, i)
            if key_slot(key) == slot:
                return key
        raise AssertionError("no key found for slot %d" % slot)

    def client(self, port):
        return RedisClient(port)

    def stop(self):
        for s in self.servers:
            s.stop()
