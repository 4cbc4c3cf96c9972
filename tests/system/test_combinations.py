"""The model-based randomized combination test: a seed draws a configuration (from CONFIG_OPTIONS),
one Redis or a small cluster, a workload and a few faults; writers change keys directly in Redis
and log every change with the time before and after it; readers read through both fronts; at
the end every answer is checked against the writers' log, within the staleness bound docs/coherence.md
states for the configuration (see bounds()).

    make check                          # the fixed seeds (FIXED_SEEDS), about a minute
    make combo SEEDS=1234,99            # replays those seeds (what they draw; timing differs)
    make soak SEEDS=50 DURATION=600     # random seeds (printed) until either runs out
    make soak SANITIZE=1 ...            # the same against build-asan/

Environment (what the make targets set): COMBO_SEEDS (a comma list), COMBO_SOAK_SEEDS and
COMBO_SOAK_SECONDS (random seeds), COMBO_SECONDS (each seed's workload, default 6); COMBO_KEEP=1
keeps each run's directory (the proxy's and the nodes' logs) and prints where it is.

The windows in which a fault excuses an answer (documented here once, used by check()):
- an *outage window* opens when a fault starts that keeps Redis from answering the proxy (a
  restart, a -BUSY script, CLIENT KILL of the proxy's links) and closes STALE_GRACE after Redis
  answers again (our own PING). Inside it a read may be answered STALE, or with any value the key
  had within ttl + stale_if_error (docs/coherence.md: "with tracking, staleness is bounded ... by the
  TTL while it is not [reachable]"). A STALE answer outside every outage window is a violation
  ("While Redis answers, a stale entry is never served").
- a *failure window* opens with any fault and closes once the proxy says it is whole again
  (every worker ready, connected to Redis and, with tracking, tracked: /metrics), plus
  STALE_GRACE. Inside it (and only there) a 5xx / -BACKENDDOWN / -LOADING / -BUSY answer and,
  for a worker killed or a reload, a connection closed under the client are allowed. A slot
  migration and a node emptied in a cluster open no failure window: docs/cluster.md promises no failed
  read during a live resharding.
- the faults of the fixes for defects 2 and 6 have tighter windows:
  - silent_link (busy_silent_link: after a -BUSY script): with tracking, links that stay open
    while what Redis sends on them is held in the relay in front of Redis, longer than
    `heartbeat`. Not an outage (Redis answers): no STALE answer; a change made during it (or
    SILENT_MARGIN before) is bounded by `heartbeat` (silent_bound()), not by the invalidation
    delay ("Staleness after a silent loss is bounded by heartbeat", docs/coherence.md).
  - long_outage: Redis stopped 2.2-3 s (past the reconnect back-off's 2 s), then started empty on
    its port. An outage window that closes LONG_OUTAGE_GRACE (0.25 s) after Redis answers our PING.
  - data_cut: CLIENT KILL of the proxy's data connections only (sub=0), then writes to keys it may
    have cached. Redis stays up: no STALE answer and no failed read (no_failures).
  - failover (a cluster with replicas): a primary SIGKILLed; an outage window that closes
    FAILOVER_GRACE (0.5 s) after a replica's ROLE says master.
"""
import base64
import http.client
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unittest

from cluster import REDIS_CLI, RedisCluster, key_slot
from harness import (PROXY_BIN, SANITIZED, Proxy, RedisServer, alive, free_port, quote_key, resp_encode,
                     wait_until)
from relay import Relay
from tls_certs import make_ca, make_cert
from test_admin import metric

FIXED_SEEDS = [5, 1868, 3517, 12889, 19485, 24360, 50181, 52460]  # chosen for coverage: see coverage() and the commit message
SECONDS = float(os.environ.get("COMBO_SECONDS", "6"))

# Staleness, in seconds, on top of what docs/coherence.md states: this test's own clocks are Python
# threads on a shared machine (a reply is timed when the thread runs again, not when it arrived).
TIMING_SLACK = 0.15
INVALIDATION_DELAY = 0.1  # "the tests ask for 100 ms at most" (docs/coherence.md)
STALE_GRACE = 0.5         # after Redis answers again: the proxy's first reconnect (100 ms) and more
# After a long outage (the reconnect back-off grown to its 2 s), STALE answers end "within about
# 100 ms of Redis accepting connections" (docs/coherence.md: a down Redis is asked again every 50 ms
# while requests come). 0.25 s here: docs/coherence.md's 100 ms plus slack for this test's Python threads
# on a loaded shared machine (a reply is timed when its thread runs), not a looser promise.
LONG_OUTAGE_GRACE = 0.25
# After a failover, from the promoted replica's ROLE saying master: a slot's owner that cannot be
# reached has the map read again at the shortest gap (100 ms), so its STALE answers end within
# about half a second (a test measures the ROLE poll's time, which is later than the promotion).
FAILOVER_GRACE = 0.5
# A write this long before a silent link's hold began may still have its invalidation in the relay
# (the relay's thread had read it but not yet forwarded it when the hold began).
SILENT_MARGIN = 0.25
AFTER_LAST_FAULT = 0.75   # the workload goes on at least this long after the last fault ended
# docs/coherence.md: max_memory = 4m, a worker stays under 9 MB. Of the slack, 1.4 MB are libcrypto's pages
# (SHA-256 for [users], TLS), resident in every worker since it was linked.
RSS_SLACK = 6 * 1024 * 1024
# With [redis] tls, libssl's pages and each connection's TLS state besides (a worker holds two
# connections per Redis node).
RSS_SLACK_TLS = 3 * 1024 * 1024
TLS_SHUTDOWN_TIMEOUT = "3s"  # with TLS clients (start_proxy)

ABSENT = "ABSENT"
OTHER_TYPE = "OTHER_TYPE"


# --- the configurations ------------------------------------------------------------------------

def duration_s(text):
    m = re.match(r"^(\d+)(ms|s|m|h)?$", text)
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def size_b(text):
    m = re.match(r"^(\d+)([kmg]?)$", text)
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[m.group(2)]


# Every option that changes behaviour: (section, name, choices, reloadable). A new option is one
# line. "topology" and "faults" are the test's own, not the proxy's.
CONFIG_OPTIONS = [
    ("proxy", "workers", ["1", "1", "2", "3"], False),
    ("cache", "capacity", ["3", "10", "40", "1000"], True),
    ("cache", "ttl", ["400ms", "1s", "3s", "60s"], True),
    ("cache", "max_memory", ["0", "0", "8k", "64k", "4m"], True),
    ("cache", "max_value_size", ["0", "100", "452", "1k", "1m"], True),
    ("cache", "invalidation", ["tracking", "tracking", "off"], True),
    ("cache", "cache_not_found", ["auto", "on", "off"], True),
    ("cache", "follow_key_expiry", ["on", "off"], True),
    ("cache", "stale_if_error", ["0s", "0s", "500ms", "5s"], True),
    ("cache", "heartbeat", ["200ms", "500ms", "1s"], True),
    ("http", "etag", ["off", "on"], True),
    ("http", "cache_control", ["", "public, max-age=30"], True),
    ("redis", "command_timeout", ["300ms", "1s", "2s"], True),
]
LOG_ACCESS = ["off", "file"]
REDIS_TLS = ["off", "on"]
# Whether the proxy's HTTP and RESP addresses are marked tls: the readers speak HTTPS and RESP
# over TLS. (Not a section of the file: "clients" is taken out before it is written.)
CLIENT_TLS = ["off", "on"]
COMBO_PASSWORD = "combo-pw"
USERS = [(), (("combo", "on >%s allkeys" % COMBO_PASSWORD),),
         (("combo", "on >%s ~k:* ~long* ~canary" % COMBO_PASSWORD),)]
ACCESS_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?:\S+:\d+|-) (http|resp) \S+ \S+ \S+ \d+ "
                         r"(?:HIT|MISS|STALE|-) \d+$")
TOPOLOGIES = ["single", "single", "single", "cluster"]
FAULTS = {"single": ["client_kill", "restart_loading", "restart_empty", "busy_script", "worker_kill", "reload",
                     "silent_link", "busy_silent_link", "long_outage", "data_cut"],
          "cluster": ["client_kill", "slot_migration", "node_emptied", "worker_kill", "reload", "data_cut",
                      "failover"]}
# Drawn only when the configuration starts with invalidation = tracking (they hold its link); a
# seed that draws one has the proxy reach Redis through a Relay (relay.py), which forwards bytes.
TRACKING_FAULTS = ("silent_link", "busy_silent_link")
# Faults after which STALE answers must end soon (defect 6), and the silent links (defect 2): the
# fixed seeds draw each of them also in a configuration where a regression would show (bites()).
STALE_FAULTS = ("long_outage", "data_cut", "failover")
BITING_FAULTS = TRACKING_FAULTS + STALE_FAULTS


def bites(cfg):
    """Whether a configuration caches enough, for long enough, that stale answers after these
    faults would be seen: tracking (STALE is tracking's), most keys cached (capacity, memory),
    and entries that outlive a long outage or a failover (ttl)."""
    c = cfg["cache"]
    return c["invalidation"] == "tracking" and int(c["capacity"]) >= 40 and c["max_memory"] in ("0", "4m") \
        and duration_s(c["ttl"]) >= 3
# A cluster has one replica per primary only when the seed draws a failover (the primary killed
# stays dead: the failover is the seed's last fault).


def draw_config(rng):
    cfg = {}
    for section, name, choices, _ in CONFIG_OPTIONS:
        cfg.setdefault(section, {})[name] = rng.choice(choices)
    topology = rng.choice(TOPOLOGIES)
    possible = [f for f in FAULTS[topology] if f not in TRACKING_FAULTS or cfg["cache"]["invalidation"] == "tracking"]
    faults = sorted(rng.sample(possible, rng.randint(1, 3)))
    while "failover" in faults and "node_emptied" in faults:  # 2 primaries with slots cannot elect
        faults = sorted(rng.sample(possible, len(faults)))
    # Drawn after the rest, so that the seeds drew what they drew before it came: the access log
    # on ("file": a file in the test's folder) or off; every line it writes is checked (check_log).
    cfg["log"] = {"access": rng.choice(LOG_ACCESS)}
    # And who the test's clients are ([users]): nobody (protected mode, loopback clients), or a
    # user they log in as, reading every key or only by patterns that cover the test's keys.
    cfg["users"] = dict(rng.choice(USERS))
    # And whether the proxy reaches Redis (or the cluster's nodes) over TLS.
    cfg["redis"]["tls"] = rng.choice(REDIS_TLS)
    # And whether its clients reach it over TLS.
    cfg["clients"] = {"tls": rng.choice(CLIENT_TLS)}
    return cfg, topology, faults


def redraw_for_reload(rng, cfg):
    new = {s: dict(v) for s, v in cfg.items()}
    for section, name, choices, _ in rng.sample([o for o in CONFIG_OPTIONS if o[3]], 3):
        new[section][name] = rng.choice(choices)
    return new


def cache_bound(cfg):
    """How long after a write a reader may still get the key's previous state, while Redis
    answers (docs/coherence.md): the invalidation delay with tracking, the TTL without."""
    ttl = duration_s(cfg["cache"]["ttl"])
    if cfg["cache"]["invalidation"] == "off":
        return ttl + TIMING_SLACK
    return min(ttl, INVALIDATION_DELAY) + TIMING_SLACK


def expiry_bound(cfg):
    """For a key's expiry in Redis (a PEXPIRE, then Redis deletes the key): follow_key_expiry makes
    an entry fetched after the PEXPIRE die with the key, and one fetched before it is as any change:
    with tracking the PEXPIRE is reported, with invalidation = off it lives its TTL (cache_bound).
    Without follow_key_expiry an entry lives its TTL (Redis reports an expiry only when it deletes
    the key, maybe late)."""
    if cfg["cache"]["follow_key_expiry"] == "on":
        return cache_bound(cfg)
    return duration_s(cfg["cache"]["ttl"]) + TIMING_SLACK


def silent_bound(cfg):
    """After a silent loss of the invalidation link (open, nothing arriving): the heartbeat notices
    it within `heartbeat` ("Staleness after a silent loss is bounded by heartbeat", docs/coherence.md)."""
    return min(duration_s(cfg["cache"]["ttl"]), duration_s(cfg["cache"]["heartbeat"])) + TIMING_SLACK


def outage_bound(cfg):
    """While Redis cannot be reached: an entry within its TTL (STALE with tracking), or past it by
    no more than stale_if_error."""
    return duration_s(cfg["cache"]["ttl"]) + duration_s(cfg["cache"]["stale_if_error"]) + TIMING_SLACK


# --- a RESP client that returns errors instead of raising them (an EXEC holds some) --------------

class RespError:
    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return "-" + self.text


def read_reply(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+",):
        return rest
    if kind == b"-":
        return RespError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind in (b"$", b"="):
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        if len(data) != n + 2:
            raise ConnectionError("connection closed")
        return data[:-2] if kind == b"$" else data[4:-2]
    if kind == b"_":
        return None
    if kind in (b"*", b"%", b"~", b">"):
        n = int(rest)
        if n < 0:
            return None
        return [read_reply(f) for _ in range(n * (2 if kind == b"%" else 1))]
    if kind == b"#":
        return rest == b"t"
    raise ValueError("bad RESP line %r" % line)


class Resp:
    def __init__(self, port, timeout=10, context=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if context is not None:
            self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
        self.file = self.sock.makefile("rb")

    def pipeline(self, *commands):
        self.sock.sendall(b"".join(resp_encode(*c) for c in commands))
        return [read_reply(self.file) for _ in commands]

    def __call__(self, *args):
        return self.pipeline(args)[0]

    def close(self):
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


def must(reply):
    if isinstance(reply, RespError):
        raise RuntimeError(reply.text)
    return reply


def tests_own(client_line):
    """Whether a CLIENT LIST line is a connection of the test's (or a replica's link), which a
    fault must not take for the proxy's. The test names its connections (admin_conn); one just
    accepted has not been named yet (no command run: cmd=NULL), or is being named while Redis
    loads (cmd=client|setname). The proxy never names its connections."""
    return any(mark in client_line for mark in (" name=combo-test ", " cmd=NULL ", " cmd=client|setname ",
                                                " flags=S ", " flags=M "))


# --- the run of one seed ---------------------------------------------------------------------

class Run:
    """One seed: its Redis (or cluster), proxy, writer, readers and faults, and the log the
    checker reads. Every process is stopped by the test's cleanups, also when it fails."""

    def __init__(self, test, seed, seconds):
        self.test, self.seed, self.seconds = test, seed, seconds
        self.rng = random.Random(seed)
        self.cfg, self.topology, self.faults = draw_config(self.rng)
        self.keyspace = self.draw_keys()
        # The writer and the faults each draw from their own generator, so that a seed draws the
        # same whatever the threads' interleaving.
        self.wrng = random.Random(seed * 7 + 1)
        self.frng = random.Random(seed * 7 + 2)
        self.history = {k: [(-1e9, -1e9, ABSENT, 0.0)] for k in self.keyspace}
        self.expiries = set()  # (key, ws, we) of the changes that are expiries
        self.reads = []          # (key, rs, re, kind, value, detail, via, stale)
        self.windows = []        # dicts: kind, start, back (Redis answers), whole (proxy whole)
        self.epochs = []         # (start, end or None, cfg)
        self.violations = []
        self.killed_pids = set()
        self.tags = {}           # ETag -> the value it was sent with
        self.last_tag = {}       # key -> an ETag seen for it
        self.write_lock = threading.Lock()
        # Held while slots move (node_emptied, slot_migration), which go on beside the writer's
        # writes: its FLUSHALL is then left out. A node may stop being a primary meanwhile (one
        # that gives away its last slot becomes a replica of the node taking it: READONLY), and a
        # key migrated between two nodes' FLUSHALLs would outlive the flush.
        self.slots_moving = threading.Lock()
        self.stop = threading.Event()
        self.counts = {"http": 0, "http_lost": 0, "resp": 0, "resp_lost": 0}
        self.count_lock = threading.Lock()
        self.errors = []         # exceptions in the test's own threads
        self.notes = []
        self.canary_checks = 0
        self.loading_answers = 0
        self.main_calls = []
        self.restarts = 0
        self.busy_until = {}     # key -> when its pending expiry is surely done (no write before)
        self.silent_spans = []   # (hold start, release) of each silent link
        self.client_context = None  # with TLS clients: how the readers check the proxy (start_proxy)
        self.relay = None

    # -- drawing
    def draw_keys(self):
        n = self.rng.randint(20, 40)
        keys = ["k:%02d" % i for i in range(n)]
        keys += ["long key/%d with %s" % (i, "x" * self.rng.randint(5, 60)) for i in range(self.rng.randint(1, 4))]
        return keys

    def draw_value(self, key, number):
        kl = len(key.encode())
        mvs = size_b(self.cfg["cache"]["max_value_size"])
        r = self.wrng.random()
        if r < 0.45:  # the slab's last classes: 512 bytes with the 36-byte header, the key, a digest
            size = self.wrng.choice([512 - 36 - kl - 8, 512 - 36 - kl]) + self.wrng.randint(-9, 9)
        elif r < 0.52:
            size = 0
        elif r < 0.70:
            size = self.wrng.randint(1, 64)
        elif r < 0.82 and mvs <= 65536:
            size = mvs + self.wrng.randint(-2, 2)
        else:
            size = self.wrng.randint(1, 2100)
        size = max(0, size)
        stamp = b"%d/%d|" % (self.seed, number)
        body = (stamp * (size // len(stamp) + 1))[:size]
        if size > len(stamp) + 4 and self.wrng.random() < 0.3:
            body = body[:-4] + bytes(self.wrng.randrange(256) for _ in range(4))
        return body

    # -- Redis side
    def start_backend(self):
        wd = self.test.workdir
        tls_args = []
        if self.cfg["redis"]["tls"] == "on":
            self.tls_ca = make_ca(wd)
            self.tls_cert = make_cert(wd, "redis", self.tls_ca, client=True)  # (a cluster's bus: a client too)
            self.tls_port = free_port()
            tls_args = ["--tls-port", str(self.tls_port), "--tls-cert-file", self.tls_cert[0], "--tls-key-file",
                        self.tls_cert[1], "--tls-ca-cert-file", self.tls_ca[0], "--tls-auth-clients", "no"]
        if self.topology == "single":
            self.redis = RedisServer(wd, extra_args=["--enable-debug-command", "yes"] + tls_args)
            self.test.addCleanup(self.redis.stop)
            self.redis.start()
            self.servers = [self.redis]
            if any(f in TRACKING_FAULTS for f in self.faults):
                # The proxy's Redis address is a relay's, which forwards every byte both ways
                # until a silent link fault holds one link's Redis-to-proxy direction.
                self.relay = Relay(self.tls_port if tls_args else self.redis.port).start()
                self.test.addCleanup(self.relay.stop)
        else:
            self.cluster = RedisCluster(wd, primaries=3, replicas=1 if "failover" in self.faults else 0,
                                        tls=(self.tls_cert[0], self.tls_cert[1], self.tls_ca[0]) if tls_args else None)
            self.test.addCleanup(self.cluster.stop)
            self.cluster.start()
            self.servers = self.cluster.servers
            self.refresh_owners()

    def refresh_owners(self):
        """Read from the cluster, then put in place whole: the writer reads it meanwhile (a map
        filled in place once handed it a slot with no owner)."""
        owners = {}
        for n in self.cluster.primaries():
            for a, b in n["slots"]:
                for s in range(a, b + 1):
                    owners[s] = n["port"]
        self.owner_of = owners

    def admin_conn(self, port):
        """A connection of the test's own, named so that no fault takes it for the proxy's: named
        for sure, also while Redis still loads (-LOADING), when the name is not taken yet."""
        c = Resp(port)
        deadline = time.monotonic() + 30
        while str(c("CLIENT", "SETNAME", "combo-test")).startswith("-LOADING"):  # (-BUSY: named after)
            if time.monotonic() > deadline:
                c.close()
                raise ConnectionError("Redis on port %d never took the test's client name" % port)
            time.sleep(0.02)  # Redis loading its data: asked again until it serves
        return c

    def conn_to(self, conns, port):
        if port not in conns:
            try:
                conns[port] = self.admin_conn(port)
            except OSError as e:  # said with the port: whose server it was matters for the diagnosis
                raise OSError("cannot connect to Redis on port %r (nodes: %r): %r" %
                              (port, sorted(set(self.owner_of.values())) if self.topology != "single"
                               else [self.redis.port], e)) from e
        return conns[port]

    def write(self, conns, key, *args):
        """One command on the key's owner, following MOVED and ASK as a cluster client does."""
        if self.topology == "single":
            return self.conn_to(conns, self.redis.port)(*args)
        port, asking = self.owner_of.get(key_slot(key)), False
        redirects, deadline = 0, time.monotonic() + 10
        while redirects < 10 and time.monotonic() < deadline:
            c = self.conn_to(conns, port)
            reply = c.pipeline(("ASKING",), args)[1] if asking else c(*args)
            if isinstance(reply, RespError) and reply.text.split()[0] in ("MOVED", "ASK"):
                kind, slot, addr = reply.text.split()
                port, asking = int(addr.rsplit(":", 1)[1]), kind == "ASK"
                if kind == "MOVED":
                    self.owner_of[int(slot)] = port
                redirects += 1
                continue
            # A slot being moved, or a cluster that sees a primary down until its replica takes
            # over (a failover the faults made): the write is not done; a client tries again.
            if isinstance(reply, RespError) and reply.text.split()[0] in ("TRYAGAIN", "CLUSTERDOWN"):
                time.sleep(0.01 if reply.text.startswith("TRYAGAIN") else 0.05)
                continue
            return reply
        raise RuntimeError("no owner answered for %r" % key)

    def record(self, key, ws, we, state, bound):
        self.history[key].append((ws, we, state, bound))

    def everything_absent(self, ws, we, extra=0.0):
        """A flush or an empty restart: every key absent. An expiry still to come is dropped from
        the log (the key is gone before it)."""
        for k in self.keyspace:
            if self.history[k][-1][0] > we:
                self.history[k].pop()
            self.record(k, ws, we, ABSENT, self.bound_at(ws, we) + extra)

    def bound_at(self, ws, we, kind="write"):
        """The staleness bound for a change made in [ws, we]: the largest of the configurations
        in force then (a reload has two generations serving for a while)."""
        cfgs = [cfg for start, end, cfg in self.epochs if start <= we and (end is None or end >= ws)]
        return max(((expiry_bound(c) if kind == "expiry" else cache_bound(c)) for c in cfgs), default=0.0)

    def writer(self):
        conns = {}
        number, busy_until, flushes, seen_restarts = 0, self.busy_until, 0, 0
        try:
            while not self.stop.is_set():
                time.sleep(self.wrng.uniform(0.002, 0.012))
                with self.write_lock:
                    if self.restarts != seen_restarts:  # its connections died with the server
                        seen_restarts = self.restarts
                        for c in conns.values():
                            c.close()
                        conns.clear()
                    now = time.monotonic()
                    key = self.wrng.choice(self.keyspace)
                    if busy_until.get(key, 0) > now:
                        continue  # an expiry is pending on it: its moment is known only roughly
                    number += 1
                    op = self.wrng.random()
                    ws = time.monotonic()
                    if op < 0.62:
                        value = self.draw_value(key, number)
                        must(self.write(conns, key, "SET", key, value))
                        we = time.monotonic()
                        self.record(key, ws, we, value, self.bound_at(ws, we))
                    elif op < 0.74:
                        must(self.write(conns, key, "DEL", key))
                        we = time.monotonic()
                        self.record(key, ws, we, ABSENT, self.bound_at(ws, we))
                    elif op < 0.82:  # the key changes type
                        must(self.write(conns, key, "DEL", key))
                        we = time.monotonic()
                        self.record(key, ws, we, ABSENT, self.bound_at(ws, we))
                        ws = time.monotonic()
                        must(self.write(conns, key, "RPUSH", key, "a", "b"))
                        we = time.monotonic()
                        self.record(key, ws, we, OTHER_TYPE, self.bound_at(ws, we))
                    elif op < 0.92:
                        ms = self.wrng.randint(30, 400)
                        if must(self.write(conns, key, "PEXPIRE", key, ms)) == 1:
                            we = time.monotonic()
                            # Gone from ms after the command, lazily or by the expiry cycle (10
                            # times a second): nothing else is written to it until surely gone.
                            self.record(key, ws + ms / 1000, we + ms / 1000 + 0.2, ABSENT,
                                        self.bound_at(ws, we + ms / 1000 + 0.2, "expiry"))
                            self.expiries.add((key, ws + ms / 1000, we + ms / 1000 + 0.2))
                            busy_until[key] = we + ms / 1000 + 0.25
                    elif op < 0.925 and flushes < 2 and self.slots_moving.acquire(blocking=False):
                        try:
                            flushes += 1
                            ports = [self.redis.port] if self.topology == "single" else \
                                sorted(set(self.owner_of.values()))
                            for p in ports:
                                must(self.conn_to(conns, p)("FLUSHALL"))
                            we = time.monotonic()
                            self.everything_absent(ws, we)
                            busy_until.clear()
                        finally:
                            self.slots_moving.release()
        except Exception as e:  # noqa: the test's own failure, reported as such
            self.errors.append("writer: %r at %s" % (e, traceback.format_exc(limit=-3).replace("\n", " | ")))
        finally:
            for c in conns.values():
                c.close()

    # -- readers
    def reader(self, rid):
        rng = random.Random(self.seed * 1000 + rid)
        proxy = self.proxy
        http_conn, resp2, resp3 = None, None, None
        etag_on = lambda: self.current_cfg()["http"]["etag"] == "on"
        try:
            while not self.stop.is_set():
                op = rng.random()
                if op < 0.45:
                    key = rng.choice(self.keyspace)
                    headers = {}
                    tag = None
                    if etag_on() and rng.random() < 0.5:
                        tag = self.last_tag.get(key) if rng.random() < 0.8 else rng.choice(list(self.tags) or [None])
                        if tag:
                            headers["If-None-Match"] = tag
                    rs = time.monotonic()
                    try:
                        if http_conn is None:
                            http_conn = self.proxy_http(timeout=15)
                        headers.update(self.http_headers())
                        http_conn.request("GET", "/" + quote_key(key), headers=headers)
                        r = http_conn.getresponse()
                        body = r.read()
                        re_ = time.monotonic()
                        self.note_http(key, rs, re_, r.status, {k.lower(): v for k, v in r.getheaders()}, body, tag)
                        with self.count_lock:
                            self.counts["http"] += 1
                    except (OSError, http.client.HTTPException) as e:
                        self.lost(key, rs, "http", e)
                        with self.count_lock:
                            self.counts["http_lost"] += 1
                        try:
                            http_conn.close()
                        except Exception:
                            pass
                        http_conn = None
                    continue
                three = rng.random() < 0.3
                conn = resp3 if three else resp2
                if op < 0.7:
                    keys = [rng.choice(self.keyspace)]
                    commands, via = [("GET", keys[0])], "resp3 GET" if three else "GET"
                elif op < 0.88:
                    keys = [rng.choice(self.keyspace) for _ in range(rng.randint(1, 6))]
                    keys += rng.sample(keys, rng.randint(0, len(keys)))  # repeated keys
                    rng.shuffle(keys)
                    commands, via = [("MGET",) + tuple(keys)], "resp3 MGET" if three else "MGET"
                else:
                    keys = [rng.choice(self.keyspace) for _ in range(rng.randint(1, 4))]
                    commands = [("MULTI",)] + [("GET", k) for k in keys] + [("EXEC",)]
                    via = "resp3 EXEC" if three else "EXEC"
                rs = time.monotonic()
                try:
                    if conn is None:
                        conn = self.proxy_resp(timeout=15)
                        if three:
                            must(conn("HELLO", "3"))
                            resp3 = conn
                        else:
                            resp2 = conn
                    replies = conn.pipeline(*commands)
                    re_ = time.monotonic()
                except (OSError, ConnectionError, ValueError) as e:
                    for k in keys:
                        self.lost(k, rs, via, e)
                    with self.count_lock:
                        self.counts["resp_lost"] += len(keys)
                    if conn is not None:
                        conn.close()
                    if three:
                        resp3 = None
                    else:
                        resp2 = None
                    continue
                with self.count_lock:
                    self.counts["resp"] += len(keys)
                if via.endswith("GET") and not via.endswith("MGET"):
                    self.note_resp(keys[0], rs, re_, replies[0], via, False)
                elif via.endswith("MGET"):
                    if isinstance(replies[0], list) and len(replies[0]) == len(keys):
                        for k, v in zip(keys, replies[0]):
                            self.note_resp(k, rs, re_, v, via, True)
                    else:  # one error for the whole MGET
                        for k in keys:
                            self.note_resp(k, rs, re_, replies[0], via, True)
                else:
                    if replies[0] != b"OK" or any(q != b"QUEUED" for q in replies[1:-1]) or \
                            not isinstance(replies[-1], list) or len(replies[-1]) != len(keys):
                        self.violation(keys[0], "EXEC of %r answered %r" % (keys, replies))
                    else:
                        for k, v in zip(keys, replies[-1]):
                            self.note_resp(k, rs, re_, v, via, True)
        except Exception as e:  # noqa
            self.errors.append("reader %d: %r" % (rid, e))
        finally:
            if http_conn is not None:
                http_conn.close()
            for c in (resp2, resp3):
                if c is not None:
                    c.close()

    def current_cfg(self):
        return self.epochs[-1][2]

    def cfg_during(self, rs, re_):
        """The one configuration in force throughout [rs, re_], or None across a reload."""
        cfgs = [cfg for start, end, cfg in self.epochs if start <= re_ and (end is None or end >= rs)]
        return cfgs[0] if len(cfgs) == 1 else None

    def add_read(self, key, rs, re_, kind, value, detail, via, stale=False):
        self.reads.append((key, rs, re_, kind, value, detail, via, stale))

    def lost(self, key, rs, via, e):
        self.add_read(key, rs, time.monotonic(), "lost", None, repr(e), via)

    def note_http(self, key, rs, re_, status, headers, body, tag):
        xcache = headers.get("x-cache")
        stale = xcache == "STALE"
        detail = "%d X-Cache=%s len=%d" % (status, xcache, len(body))
        cfg = self.cfg_during(rs, re_)
        if status == 200:
            if cfg is not None:
                mvs = size_b(cfg["cache"]["max_value_size"])
                if xcache == "HIT" and len(body) > mvs:
                    self.violation(key, "a HIT for a %d-byte value, past max_value_size %d" % (len(body), mvs))
                if cfg["http"]["etag"] == "on" and "etag" not in headers:
                    self.violation(key, "etag = on and a 200 without ETag")
                if cfg["http"]["cache_control"] and headers.get("cache-control") != cfg["http"]["cache_control"]:
                    self.violation(key, "Cache-Control %r, configured %r" % (headers.get("cache-control"),
                                                                             cfg["http"]["cache_control"]))
            if "etag" in headers:
                t = headers["etag"]
                seen = self.tags.setdefault(t, body)
                if seen != body:
                    self.violation(key, "ETag %s sent for two values: %r... and %r..." % (t, seen[:40], body[:40]))
                self.last_tag[key] = t
            self.add_read(key, rs, re_, "value", body, detail, "http", stale)
        elif status == 304:
            if tag is None or tag not in self.tags:
                self.violation(key, "304 to a request without a known If-None-Match (%r)" % tag)
                return
            self.add_read(key, rs, re_, "value", self.tags[tag], detail + " for " + tag, "http 304", stale)
        elif status == 404:
            self.add_read(key, rs, re_, "absent", None, detail, "http", stale)
        elif status == 409 and b"WRONGTYPE" in body:
            self.add_read(key, rs, re_, "other", None, detail, "http", stale)
        elif status >= 500:
            self.add_read(key, rs, re_, "unavailable", None, detail + " " + body[:80].decode(errors="replace"),
                          "http")
        else:
            self.add_read(key, rs, re_, "bad", None, detail + " " + body[:80].decode(errors="replace"), "http")

    TRANSIENT = ("BACKENDDOWN", "BACKENDTIMEOUT", "LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")

    def note_resp(self, key, rs, re_, v, via, many):
        if isinstance(v, bytes):
            self.add_read(key, rs, re_, "value", v, "len=%d" % len(v), via)
        elif v is None:
            # Inside MGET and EXEC a key of another type reads as nil (docs/resp.md).
            self.add_read(key, rs, re_, "absent_or_other" if many else "absent", None, "nil", via)
        elif isinstance(v, RespError) and v.text.startswith("WRONGTYPE") and not many:
            self.add_read(key, rs, re_, "other", None, v.text[:60], via)
        elif isinstance(v, RespError) and v.text.split()[0] in self.TRANSIENT:
            self.add_read(key, rs, re_, "unavailable", None, v.text[:80], via)
        else:
            self.add_read(key, rs, re_, "bad", None, repr(v)[:120], via)

    def violation(self, key, text, at=None):
        self.violations.append((key, text, at))

    # -- the proxy
    def metrics(self):
        for attempt in range(5):
            try:
                return self.proxy.admin("/metrics", timeout=15)[1]
            except (OSError, http.client.HTTPException):
                if attempt == 4:
                    raise
                time.sleep(0.1)

    def whole(self):
        """Every worker ready, connected and (with tracking) tracked."""
        try:
            text = self.metrics()
        except OSError:
            return False
        n = int(self.current_cfg()["proxy"]["workers"])
        ok = metric(text, "redis_proxy_workers") == n and metric(text, "redis_proxy_redis_connected_workers") == n
        if self.current_cfg()["cache"]["invalidation"] == "tracking":
            ok = ok and metric(text, "redis_proxy_tracking_workers") == n
        return ok

    def start_proxy(self):
        settings = {s: dict(v) for s, v in self.cfg.items() if s != "clients"}
        if settings["log"]["access"] == "file":
            settings["log"]["access"] = self.access_log_path()
        if self.cfg["clients"]["tls"] == "on":
            ca = make_ca(self.test.workdir, "clients-ca")
            cert = make_cert(self.test.workdir, "proxy", ca)
            settings["tls"] = {"cert_file": cert[0], "key_file": cert[1]}
            # A TLS RESP connection stays with its generation at a reload (docs/tls.md): this
            # bounds how long the old one serves the readers' connections.
            settings["proxy"]["shutdown_timeout"] = TLS_SHUTDOWN_TIMEOUT
            self.client_context = ssl.create_default_context(cafile=ca[0])
        tls = settings["redis"]["tls"] == "on"
        if tls:
            settings["redis"]["tls_ca_file"] = self.tls_ca[0]
        if self.topology == "single":
            port = self.relay.port if self.relay else self.tls_port if tls else self.redis.port
            settings["redis"]["address"] = "127.0.0.1:%d" % port
        else:
            settings["redis"]["cluster"] = " ".join("127.0.0.1:%d" % (s.tls_port if tls else s.port)
                                                    for s in self.servers)
        self.proxy = Proxy(self.test.workdir, settings, resp=True)
        if self.client_context is not None:
            self.proxy.settings["proxy"]["listen"] += " tls"
            self.proxy.settings["proxy"]["resp_listen"] += " tls"
        self.test.addCleanup(self.proxy.stop)
        self.epochs.append((time.monotonic(), None, self.cfg))
        self.proxy.start()
        wait_until(self.whole, timeout=15, what="the proxy connected (and tracked)")

    # -- faults
    def open_window(self, kind, outage):
        w = {"kind": kind, "start": time.monotonic(), "back": None, "whole": None, "outage": outage}
        self.windows.append(w)
        return w

    def close_window(self, w, redis_back=None):
        w["back"] = redis_back or time.monotonic()
        try:
            wait_until(self.whole, timeout=15, what="the proxy whole again after %s" % w["kind"])
        except AssertionError as e:
            text = self.metrics()
            self.violation(None, "%s: %s (workers %d, connected %d, tracking %d)" % (
                w["kind"], e, metric(text, "redis_proxy_workers"), metric(text, "redis_proxy_redis_connected_workers"),
                metric(text, "redis_proxy_tracking_workers")), w["start"])
            if self.topology == "single":
                with open(os.path.join(self.test.workdir, "redis-%d.log" % self.redis.port), "rb") as f:
                    self.notes.append("redis log tail: " + f.read()[-1500:].decode(errors="replace"))
            self.notes.append("proxy log tail: " + self.proxy.log()[-6000:])
            kept = os.path.join(tempfile.gettempdir(), "combo-proxy-log-seed%d-%d.txt" % (self.seed, os.getpid()))
            with open(kept, "w") as f:  # the whole log, past the test's cleanups
                f.write(self.proxy.log())
            self.notes.append("the proxy's whole log: " + kept)
        w["whole"] = time.monotonic()

    def proxy_conns(self, server):
        c = self.admin_conn(server.port)
        try:
            lines = must(c("CLIENT", "LIST")).decode().splitlines()
        finally:
            c.close()
        return [l for l in lines if not tests_own(l) and " cmd=cluster|" not in l]

    def fault_client_kill(self):
        server = self.frng.choice(self.primary_servers())
        conns = self.proxy_conns(server)
        victims = [l for l in conns if self.frng.random() < 0.6] or conns[:1]
        w = self.open_window("client_kill on %d (%d of %d)" % (server.port, len(victims), len(conns)), True)
        c = self.admin_conn(server.port)
        for l in victims:
            c("CLIENT", "KILL", "ID", re.search(r"\bid=(\d+)", l).group(1))
        c.close()
        self.close_window(w)

    def primary_servers(self):
        if self.topology == "single":
            return [self.redis]
        ports = set(self.owner_of.values())
        return [s for s in self.servers if s.port in ports]

    def canaries(self):
        """Keep-alive connections each with the canary cached in its worker (an HTTP HIT), when
        nothing can evict it meanwhile; [] otherwise."""
        cfg = self.current_cfg()
        if int(cfg["cache"]["capacity"]) < len(self.keyspace) + 2 or cfg["cache"]["max_memory"] not in ("0", "4m") \
                or duration_s(cfg["cache"]["ttl"]) < 3 or size_b(cfg["cache"]["max_value_size"]) < 16:
            return []
        must(self.redis("SET", "canary", "still here"))
        found = []
        for _ in range(6):
            conn = self.proxy_http(timeout=15)
            for _ in range(5):
                conn.request("GET", "/canary", headers=self.http_headers())
                r = conn.getresponse()
                r.read()
                with self.count_lock:
                    self.counts["http"] += 1
                if r.getheader("X-Cache") == "HIT":
                    found.append(conn)
                    break
            else:
                conn.close()
        return found

    def fault_restart(self, loading):
        with self.write_lock:
            canaries = self.canaries() if loading else []
            ws = time.monotonic()
            if loading:
                self.redis("DEBUG", "POPULATE", "6000", "filler:", "16")
                self.redis("SAVE")
            w = self.open_window("restart_%s" % ("loading" if loading else "empty"), True)
            self.redis.stop()
            self.restarts += 1
            dump = os.path.join(self.test.workdir, "dump.rdb")
            if not loading and os.path.exists(dump):
                os.unlink(dump)
            extra = list(self.redis.extra_args)
            self.redis.extra_args = extra + ["--key-load-delay", "60", "--loading-process-events-interval-bytes",
                                             "1024"] if loading else extra
            # Started by the main thread: a server dies with the thread that started it
            # (PR_SET_PDEATHSIG is per thread), and this one ends before the test does.
            started = self.on_main_thread(self.redis.start)
            if loading:
                # While Redis answers LOADING, an entry cached before is answered (STALE or HIT):
                # Redis cannot be read, as when it is down (docs/coherence.md, "Redis down").
                def loading_now():
                    try:
                        c = Resp(self.redis.port, timeout=2)
                        try:
                            r = c("PING")
                            return "loading" if isinstance(r, RespError) and r.text.startswith("LOADING") else "up"
                        finally:
                            c.close()
                    except OSError:
                        return None
                state = wait_until(loading_now, timeout=10, what="redis-server to start loading")
                if state == "loading":
                    # Once the workers have reconnected to the loading Redis (its -LOADING is then
                    # what they get), or it is done loading.
                    n = int(self.current_cfg()["proxy"]["workers"])
                    wait_until(lambda: started.is_set() or metric(self.metrics(), "redis_proxy_redis_connected_workers")
                               == n, timeout=30, what="the workers connected to the loading Redis")
                    if started.is_set():
                        self.notes.append("restart_loading: done loading before the workers reconnected")
                    for conn in canaries:
                        rs = time.monotonic()
                        conn.request("GET", "/canary", headers=self.http_headers())
                        r = conn.getresponse()
                        body = r.read()
                        with self.count_lock:
                            self.counts["http"] += 1
                        self.canary_checks += 1
                        if (r.status, body) != (200, b"still here"):
                            self.violation("canary", "while Redis loads, a cached key within its TTL answered %d "
                                           "%r (X-Cache %s), not the cached value" % (r.status, body[:80],
                                                                                       r.getheader("X-Cache")))
                        self.notes.append("canary read at +%.2fs of loading: %d %s" % (
                            time.monotonic() - rs, r.status, r.getheader("X-Cache")))
                else:
                    self.notes.append("restart_loading: Redis was not seen loading")
            if not started.wait(60):
                raise AssertionError("redis-server did not start again")
            self.redis.extra_args = extra
            for conn in canaries:
                conn.close()
            back = time.monotonic()
            if not loading:
                self.everything_absent(ws, back, STALE_GRACE)
            self.close_window(w, back)

    def fault_restart_loading(self):
        self.fault_restart(True)

    def fault_restart_empty(self):
        self.fault_restart(False)

    def fault_busy_script(self):
        with self.write_lock:
            self.redis("CONFIG", "SET", "busy-reply-threshold", "50")
            w = self.open_window("busy_script", True)
            c = self.admin_conn(self.redis.port)
            c.sock.sendall(resp_encode("EVAL", "local i = 0 while true do i = i + 1 end", "0"))
            time.sleep(self.frng.uniform(0.3, 1.0))  # the fault's length, not a wait for readiness
            killer = self.admin_conn(self.redis.port)
            wait_until(lambda: killer("SCRIPT", "KILL") == b"OK", what="SCRIPT KILL")
            killer.close()
            reply = read_reply(c.file)
            c.close()
            if not isinstance(reply, RespError):
                self.errors.append("the busy script ended with %r" % reply)
            self.redis("CONFIG", "SET", "busy-reply-threshold", "5000")
            self.close_window(w)

    def fault_worker_kill(self):
        pids = self.proxy.worker_pids()
        wid = self.frng.choice(sorted(pids))
        pid = pids[wid]
        w = self.open_window("worker_kill of worker %d (pid %d)" % (wid, pid), False)
        self.killed_pids.add(pid)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: self.proxy.worker_pids().get(wid, pid) != pid and alive(self.proxy.worker_pids()[wid]),
                   timeout=15, what="worker %d respawned" % wid)
        self.close_window(w)

    def fault_reload(self):
        new = redraw_for_reload(self.frng, self.current_cfg())
        before = metric(self.metrics(), "redis_proxy_config_generation")
        w = self.open_window("reload", False)
        for section, values in new.items():
            if section not in ("log", "users", "clients"):  # the access log's path, as start_proxy set it; the clients' login
                self.proxy.settings[section].update(values)
        self.proxy.write_config()
        start = time.monotonic()
        old = self.epochs[-1]
        self.epochs.append((start, None, new))
        os.kill(self.proxy.proc.pid, signal.SIGHUP)
        try:
            wait_until(lambda: metric(self.metrics(), "redis_proxy_config_generation") == before + 1, timeout=15,
                       what="the reload's generation serving")
        except AssertionError as e:
            self.violation(None, "reload: %s" % e)
        # The old generation answers what it has in flight and exits: its bound holds a moment more.
        # Over TLS it keeps serving the readers' RESP connections until they close, or until its
        # shutdown_timeout: its bound holds until then, and those connections may be closed then.
        tls_kept = duration_s(TLS_SHUTDOWN_TIMEOUT) if self.client_context is not None else 0
        self.epochs[-2] = (old[0], time.monotonic() + 1.0 + tls_kept, old[2])
        self.close_window(w)
        if tls_kept:
            w["whole"] = max(w["whole"] or 0, start + tls_kept + 1.0)
        self.notes.append("reload to " + describe_config(new))

    def cluster_node(self, port):
        return next(n for n in self.cluster.nodes() if n["port"] == port)

    def fault_slot_migration(self):
        key = self.frng.choice(self.keyspace)
        slot = key_slot(key)
        src_port = self.owner_of[slot]
        dst_port = self.frng.choice([p for p in set(self.owner_of.values()) if p != src_port])
        src, dst = self.cluster.server(src_port), self.cluster.server(dst_port)
        src_id, dst_id = self.cluster_node(src_port)["id"], self.cluster_node(dst_port)["id"]
        with self.slots_moving:
            w = self.open_window("slot_migration of %d (%r) %d->%d" % (slot, key, src_port, dst_port), False)
            w["no_failures"] = True
            dst("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            src("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            for k in src("CLUSTER", "GETKEYSINSLOT", slot, 100):
                # (with tls-cluster, MIGRATE speaks TLS: to the target's TLS port)
                src("MIGRATE", "127.0.0.1", dst.tls_port or dst_port, "", 0, 5000, "KEYS", k)
                time.sleep(0.05)  # reads meanwhile: a migrated key is asked of the target (ASK)
            for p in set(self.owner_of.values()):
                self.cluster.server(p)("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
            self.owner_of[slot] = dst_port
        self.close_window(w)

    def fault_node_emptied(self):
        ports = sorted(set(self.owner_of.values()))
        if len(ports) < 2:
            return
        src_port, dst_port = self.frng.sample(ports, 2)
        count = sum(1 for p in self.owner_of.values() if p == src_port)
        with self.slots_moving:
            w = self.open_window("node_emptied %d->%d (%d slots)" % (src_port, dst_port, count), False)
            w["no_failures"] = True
            src = self.cluster.server(src_port)
            # (with tls-cluster, redis-cli must speak TLS too: the nodes it is told of, and MIGRATE's
            # targets, are then their TLS ports)
            tls = ["--tls", "--cacert", self.tls_ca[0]] if src.tls_port else []
            out = subprocess.run([REDIS_CLI] + tls + [
                "--cluster", "reshard", "127.0.0.1:%d" % (src.tls_port or src_port),
                "--cluster-from", self.cluster_node(src_port)["id"], "--cluster-to", self.cluster_node(dst_port)["id"],
                "--cluster-slots", str(count), "--cluster-yes"], capture_output=True, timeout=120)
            if out.returncode != 0:
                self.errors.append("reshard failed: %s" % (out.stdout + out.stderr).decode()[-2000:])
            wait_until(self.cluster.settled, timeout=30, what="the cluster settled after the reshard")
            self.refresh_owners()
        self.close_window(w)

    # -- faults that the proxy's fixes for defects 2 and 6 answer
    def fault_silent_link(self, busy_first=False):
        """Links that stay open while what Redis sends on them is held in the relay (LostLinkTest's
        silent link), for longer than the heartbeat: only the heartbeat can notice. After a -BUSY
        script (busy_first), whose refusal of the heartbeat's PUBLISH must not stop the beats."""
        if self.current_cfg()["cache"]["invalidation"] != "tracking":
            self.notes.append("silent_link: invalidation is off now (a reload), no link to hold")
            return
        if busy_first:
            self.fault_busy_script()
        links = [l for l in self.proxy_conns(self.redis) if re.search(r" sub=[1-9]", l)]
        victims = [l for l in links if self.frng.random() < 0.7] or links[:1]
        if not victims:
            self.notes.append("silent_link: no link in CLIENT LIST")
            return
        hold = max(duration_s(c["cache"]["heartbeat"]) for _, _, c in self.epochs) + self.frng.uniform(0.6, 1.2)
        w = self.open_window("silent_link of %d of %d link(s) for %.2fs" % (len(victims), len(links), hold), False)
        start = time.monotonic()
        for l in victims:
            self.relay.hold(self.relay.index_of(re.search(r" addr=(\S+)", l).group(1)), to_redis=False,
                            from_redis=True)
        time.sleep(hold)  # the silence's length, not a wait for readiness
        self.relay.release()
        self.silent_spans.append((start, time.monotonic()))
        self.close_window(w)

    def fault_busy_silent_link(self):
        self.fault_silent_link(busy_first=True)

    def redis_answers(self):
        try:
            c = Resp(self.redis.port, timeout=1)
            try:
                return c("PING") == b"PONG"
            finally:
                c.close()
        except OSError:
            return False

    def fault_long_outage(self):
        """Redis stopped for longer than the reconnect back-off's longest (2 s), then started empty
        on its port: STALE answers end within LONG_OUTAGE_GRACE of it accepting connections."""
        with self.write_lock:
            ws = time.monotonic()
            w = self.open_window("long_outage", True)
            w["grace"] = LONG_OUTAGE_GRACE
            self.redis.stop()
            self.restarts += 1
            dump = os.path.join(self.test.workdir, "dump.rdb")
            if os.path.exists(dump):
                os.unlink(dump)
            time.sleep(self.frng.uniform(2.2, 3.0))  # the outage's length: the back-off reaches 2 s
            # Started by the main thread (PR_SET_PDEATHSIG is per thread); timed from here.
            started = self.on_main_thread(lambda: self.redis.start(wait=False))
            if not started.wait(60):
                raise AssertionError("redis-server did not start again")
            deadline = time.monotonic() + 30
            while not self.redis_answers():
                if time.monotonic() > deadline:
                    raise AssertionError("redis-server does not answer after the long outage")
                time.sleep(0.002)
            back = time.monotonic()
            self.notes.append("long_outage: Redis answers %.2fs after it was stopped" % (back - ws))
            self.everything_absent(ws, back, LONG_OUTAGE_GRACE)
            self.close_window(w, back)

    def fault_data_cut(self):
        """CLIENT KILL of the proxy's data connections only (not its invalidation links), then a
        write to keys it may have cached: Redis stays up, so a cut connection is tried again at
        once and the reads of that moment wait for it: no STALE answer and no failed read."""
        with self.write_lock:
            server = self.frng.choice(self.primary_servers())
            c = self.admin_conn(server.port)
            lines = must(c("CLIENT", "LIST")).decode().splitlines()
            data = [l for l in lines if not tests_own(l) and " sub=0 " in l and " psub=0 " in l]
            victims = [l for l in data if self.frng.random() < 0.7] or data[:1]
            w = self.open_window("data_cut on %d (%d of %d data connections)" % (server.port, len(victims),
                                                                                  len(data)), False)
            w["no_failures"] = True
            for l in victims:
                c("CLIENT", "KILL", "ID", re.search(r"\bid=(\d+)", l).group(1))
            now = time.monotonic()
            keys = [k for k in self.keyspace if self.busy_until.get(k, 0) <= now and
                    (self.topology == "single" or self.owner_of[key_slot(k)] == server.port)]
            conns = {server.port: c}
            for i, key in enumerate(self.frng.sample(keys, min(3, len(keys)))):
                value = b"%d/cut%d|written after the data connections were cut" % (self.seed, i)
                ws = time.monotonic()
                must(self.write(conns, key, "SET", key, value))
                we = time.monotonic()
                self.record(key, ws, we, value, self.bound_at(ws, we))
            for conn in conns.values():
                conn.close()
            self.close_window(w)

    def fault_failover(self):
        """A primary SIGKILLed; its replica takes over (cluster-node-timeout 1 s). From the moment
        the replica's ROLE says master, STALE answers end within FAILOVER_GRACE."""
        with self.write_lock:
            victim_port = self.frng.choice(sorted(set(self.owner_of.values())))
            nodes = self.cluster.nodes()
            victim_id = next(n["id"] for n in nodes if n["port"] == victim_port)
            replicas = [n["port"] for n in nodes if n["primary"] == victim_id and not n["failed"]]
            if not replicas:
                self.notes.append("failover: %d has no replica" % victim_port)
                return
            victim = self.cluster.server(victim_port)
            # Every change the log holds is on the replicas before the kill (replication is
            # asynchronous): the promoted one has exactly what the writer logged.
            acked = must(victim("WAIT", len(replicas), 5000))
            if acked != len(replicas):
                self.errors.append("failover: WAIT acknowledged by %r of %d replicas" % (acked, len(replicas)))
            w = self.open_window("failover of %d to one of %s" % (victim_port, replicas), True)
            w["grace"] = FAILOVER_GRACE
            victim.proc.kill()
            victim.proc.wait()
            victim.proc = None
            self.restarts += 1
            probes = {p: self.admin_conn(p) for p in replicas}
            promoted = None
            deadline = time.monotonic() + 30
            while promoted is None:
                for p, c in probes.items():
                    if must(c("ROLE"))[0] == b"master":
                        promoted = p
                        break
                else:
                    if time.monotonic() > deadline:
                        raise AssertionError("no replica of %d promoted" % victim_port)
                    time.sleep(0.005)
            back = time.monotonic()
            for c in probes.values():
                c.close()
            self.notes.append("failover: %d promoted %.2fs after the kill of %d" % (promoted, back - w["start"],
                                                                                    victim_port))
            for slot, port in self.owner_of.items():
                if port == victim_port:
                    self.owner_of[slot] = promoted
            self.close_window(w, back)

    def on_main_thread(self, fn):
        """Runs fn on the main thread (execute() serves these); returns an Event set once done."""
        done = threading.Event()
        self.main_calls.append((fn, done))
        return done

    def fault_thread(self, schedule):
        try:
            t0 = time.monotonic()
            for at, fault in schedule:
                while time.monotonic() - t0 < at and not self.stop.is_set():
                    time.sleep(0.02)  # the schedule's time, not a readiness wait
                if self.stop.is_set():
                    break
                self.notes.append("fault %s at +%.2fs" % (fault, time.monotonic() - t0))
                getattr(self, "fault_" + fault)()
        except Exception as e:  # noqa
            self.errors.append("fault thread: %r at %s" % (e, traceback.format_exc(limit=-3).replace("\n", " | ")))
        finally:
            self.faults_done = time.monotonic()

    # -- the whole run
    def execute(self):
        self.start_backend()
        self.start_proxy()
        span = max(1.0, self.seconds - 1.5)
        schedule = sorted((self.rng.uniform(0.8, span), f) for f in self.faults)
        if "failover" in self.faults:  # last: its primary stays dead (a reshard would want it)
            times = [t for t, _ in schedule]
            schedule = list(zip(times, [f for _, f in schedule if f != "failover"] + ["failover"]))
        threads = [threading.Thread(target=self.writer)]
        threads += [threading.Thread(target=self.reader, args=(i,)) for i in range(3)]
        faults = threading.Thread(target=self.fault_thread, args=(schedule,))
        for t in threads + [faults]:
            t.start()
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline or faults.is_alive():
            if not faults.is_alive():  # the reads after the last fault are what checks it
                deadline = max(deadline, self.faults_done + AFTER_LAST_FAULT)
            while self.main_calls:
                fn, done = self.main_calls.pop(0)
                try:
                    fn()
                except Exception as e:  # noqa
                    self.errors.append("main thread: %r" % e)
                done.set()
            time.sleep(0.01)  # the workload's length, and the fault thread's requests
        self.stop.set()
        for t in threads:
            t.join(60)
        self.epochs[-1] = (self.epochs[-1][0], time.monotonic(), self.epochs[-1][2])
        self.check_proxy()
        code = self.proxy.stop()
        if code != 0:
            self.violation(None, "the proxy exited with %r on SIGTERM" % code)
        self.check_log()
        self.rebound()
        self.widen_for_silent_links()
        self.check_reads()

    # -- the checks
    def check_proxy(self):
        """Metrics that must add up, and each worker's RSS within max_memory and the slack."""
        text = self.metrics()
        results = ["hit", "miss", "not_found", "error", "unavailable", "timeout"]
        for front, answered, lost in (("http", self.counts["http"], self.counts["http_lost"]),
                                      ("resp", self.counts["resp"], self.counts["resp_lost"])):
            total = sum(metric(text, "redis_proxy_requests_total", front=front, result=r) for r in results)
            observed = metric(text, "redis_proxy_request_duration_seconds_count", front=front)
            if not answered <= total <= answered + lost:
                self.violation(None, "requests_total{front=%s} summed over results is %d; the test had %d answered "
                               "and %d lost" % (front, total, answered, lost))
            # A hit is counted when it is answered and observed in the histogram at the end of the
            # read that brought it: a worker SIGKILLed between the two takes at most the hits of
            # one read with it. Anything else is a counter that does not add up.
            slack = len(self.killed_pids) * (16 if front == "resp" else 1)
            if not total - slack <= observed <= total:
                self.violation(None, "request_duration_seconds_count{front=%s} %d != requests_total %d" % (
                    front, observed, total))
        resp = self.proxy_resp()
        info = must(resp("INFO", "stats")).decode()
        resp.close()
        stat = dict(l.split(":", 1) for l in info.splitlines() if ":" in l)
        text = self.metrics()
        total = sum(metric(text, "redis_proxy_requests_total", front=f, result=r) for f in ("http", "resp")
                    for r in results)
        if int(stat["keyspace_hits"]) + int(stat["keyspace_misses"]) != total:
            self.violation(None, "INFO keyspace_hits %s + keyspace_misses %s != requests_total %d" % (
                stat["keyspace_hits"], stat["keyspace_misses"], total))
        max_memory = size_b(self.current_cfg()["cache"]["max_memory"])
        if not SANITIZED and max_memory > 0:
            for wid, pid in self.proxy.worker_pids().items():
                if not alive(pid):  # one that a reload retired
                    continue
                with open("/proc/%d/status" % pid) as f:
                    rss = int([l for l in f if l.startswith("VmRSS:")][0].split()[1]) * 1024
                slack = RSS_SLACK + (RSS_SLACK_TLS if self.cfg["redis"]["tls"] == "on" else 0) + \
                    (RSS_SLACK_TLS if self.cfg["clients"]["tls"] == "on" else 0)
                if rss > max_memory + slack:
                    self.violation(None, "worker %d RSS %d bytes > max_memory %d + %d" % (wid, rss, max_memory, slack))

    def proxy_http(self, timeout=15):
        """An HTTP connection to the proxy: HTTPS when its addresses are marked tls."""
        if self.client_context is not None:
            return http.client.HTTPSConnection("127.0.0.1", self.proxy.port, timeout=timeout,
                                               context=self.client_context)
        return http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=timeout)

    def proxy_resp(self, timeout=10):
        """A RESP connection to the proxy, logged in when the configuration has a user."""
        c = Resp(self.proxy.resp_port, timeout=timeout, context=self.client_context)
        if self.cfg["users"]:
            must(c("AUTH", "combo", COMBO_PASSWORD))
        return c

    def http_headers(self):
        if not self.cfg["users"]:
            return {}
        return {"Authorization": "Basic " + base64.b64encode(("combo:" + COMBO_PASSWORD).encode()).decode()}

    def access_log_path(self):
        return os.path.join(self.test.workdir, "access.log")

    def check_access_log(self):
        """With the access log on: every line of it in the documented format, from both fronts."""
        if self.cfg["log"]["access"] != "file":
            return
        with open(self.access_log_path(), "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        fronts = set()
        for line in lines:
            m = ACCESS_LINE.match(line)
            if m is None:
                self.violation(None, "access log: a line not in the format: %r" % line[:300])
                return
            fronts.add(m.group(1))
        if fronts != {"http", "resp"}:
            self.violation(None, "access log: %d lines, from %s only" % (len(lines), sorted(fronts) or "no front"))

    def check_log(self):
        self.check_access_log()
        log = self.proxy.log()
        for m in re.finditer(r"worker \d+ \(pid (\d+)\) killed by signal[^\n]*", log):
            if int(m.group(1)) not in self.killed_pids:
                self.violation(None, "log: " + m.group(0))
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            if marker in log:
                i = log.index(marker)
                self.violation(None, "sanitizer report in the proxy log:\n" + log[max(0, i - 500):i + 3000])

    def rebound(self):
        """Each change's bound again, from every configuration in force while it took effect: an
        expiry's was taken when its PEXPIRE was sent, before a reload that may have come before
        the key went (a longer ttl then bounds it)."""
        for key, hist in self.history.items():
            for i, (ws, we, state, b) in enumerate(hist[1:], 1):
                kind = "expiry" if (key, ws, we) in self.expiries else "write"
                hist[i] = (ws, we, state, max(b, self.bound_at(ws, we, kind)))

    def widen_for_silent_links(self):
        """A change made while a link was silent (or just before: its invalidation may be held in
        the relay) is bounded by the heartbeat, not by the invalidation delay."""
        for start, end in self.silent_spans:
            bound = max(silent_bound(c) for _, _, c in self.epochs)
            for hist in self.history.values():
                for i, (ws, we, state, b) in enumerate(hist):
                    if we >= start - SILENT_MARGIN and ws <= end:
                        hist[i] = (ws, we, state, max(b, bound + max(0.0, start - ws)))

    def in_windows(self, rs, re_, which):
        for w in self.windows:
            if which == "outage":
                if w["outage"] and w["start"] <= re_ and rs <= (w["back"] or 1e18) + w.get("grace", STALE_GRACE):
                    return True
            elif not w.get("no_failures") and w["start"] <= re_ and rs <= (w["whole"] or 1e18) + STALE_GRACE:
                return True
        return False

    def states_seen(self, key, rs, re_, extra):
        """The states the key may be read in, for a read in [rs, re_]: a state counts from the
        start of its write until the end of the next one plus that change's bound."""
        hist = self.history[key]
        out = []
        for i, (ws, we, state, _) in enumerate(hist):
            end = hist[i + 1][1] + max(hist[i + 1][3], extra) if i + 1 < len(hist) else 1e18
            if ws <= re_ and end >= rs:
                out.append(state)
        return out

    def check_reads(self):
        self.checked = 0
        for key, rs, re_, kind, value, detail, via, stale in self.reads:
            self.checked += 1
            outage = self.in_windows(rs, re_, "outage")
            failures = self.in_windows(rs, re_, "failures")
            if kind in ("lost", "unavailable", "bad"):
                if kind == "bad" or not failures:
                    hint = ""
                    if "WRONGTYPE" in detail and ("MGET" in via or "EXEC" in via):
                        hint = " [MGET reads another type as nil: GET and MGET joined fetches, defect 4]"
                    elif any(w["kind"].startswith("node_emptied") and w["start"] <= re_ and rs <= w["whole"]
                             for w in self.windows):
                        hint = " [during node_emptied: defect 5]"
                    self.violation(key, "%s read at %.3f-%.3f via %s: %s %s%s" % (
                        "an unexpected" if kind == "bad" else "a failed", rs, re_, via, kind, detail, hint), rs)
                elif "LOADING" in detail:
                    self.loading_answers += 1
                continue
            if stale and not outage:
                self.violation(key, "a STALE answer at %.3f-%.3f while Redis answers (%s, %r) [defect 6?]" % (
                    rs, re_, detail, value[:40] if value else value), rs)
            extra = max(outage_bound(c) for _, _, c in self.epochs) if outage or stale else 0
            states = self.states_seen(key, rs, re_, extra)
            ok = {"value": lambda: any(s == value for s in states),
                  "absent": lambda: ABSENT in states,
                  "other": lambda: OTHER_TYPE in states,
                  "absent_or_other": lambda: ABSENT in states or OTHER_TYPE in states}[kind]()
            if not ok:
                ever = kind != "value" or any(s == value for _, _, s, _ in self.history[key])
                why = "a value the key had, but not within the bound" if ever else "a value the key NEVER had"
                if any(start - SILENT_MARGIN <= re_ and rs <= end + 1.0 for start, end in self.silent_spans):
                    why += " [after a silent link: the heartbeat should have noticed it within heartbeat (defect 2?)]"
                elif kind == "absent" and OTHER_TYPE in states:
                    why = "nil/404 where the key held another type [defect 4: GET joined an MGET's fetch]"
                elif not ever and self.cfg_any("http", "etag", "on"):
                    why += " [etag = on: defect 1?]"
                self.violation(key, "read at %.3f-%.3f via %s answered %s%s (%s): %s" % (
                    rs, re_, via, kind, " %s" % show(value) if kind == "value" else "", detail, why), rs)

    def cfg_any(self, section, name, value):
        return any(c[section][name] == value for _, _, c in self.epochs)

    def key_events(self, key, at):
        """The key's last 12 writes before `at` and its reads in the half second before it."""
        writes = [(ws, "write %.3f-%.3f -> %s (bound %.3fs)" % (ws, we, show(state), b))
                  for ws, we, state, b in self.history.get(key, [])[1:] if ws <= at + 0.01][-12:]
        reads = [(rs, "read  %.3f-%.3f %s: %s %s %s%s" % (rs, re_, via, kind, show(value) if value is not None
                                                          else "", detail, " STALE" if stale else ""))
                 for k, rs, re_, kind, value, detail, via, stale in self.reads
                 if k == key and at - 0.5 <= rs <= at + 0.01][-18:]
        return [e for _, e in sorted(writes + reads)]

    def report(self):
        lines = ["seed %d: %d violation(s); %s, %s, faults %s" % (self.seed, len(self.violations),
                                                                   self.topology, describe_config(self.cfg),
                                                                   self.faults)]
        lines += ["  note: " + n for n in self.notes]
        lines += ["  window: %s %.3f..back %.3f..whole %.3f%s" % (
            w["kind"], w["start"], w["back"] or -1, w["whole"] or -1,
            " (outage, STALE until back + %.2fs)" % w.get("grace", STALE_GRACE) if w["outage"] else
            " (no STALE%s)" % (", no failed read" if w.get("no_failures") else "")) for w in self.windows]
        kinds = {}
        for _, text, _ in self.violations:
            kind = re.sub(r"\d+(\.\d+)?", "N", re.sub(r"<[^>]*>|b'[^']*'|'[^']*'", "V", text))[:150]
            kinds[kind] = kinds.get(kind, 0) + 1
        lines += ["  %5d x %s" % (n, kind) for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1])]
        shown = set()
        for key, text, at in self.violations[:20]:
            lines.append("VIOLATION (seed %d): %s%s" % (self.seed, "key %r: " % key if key else "", text))
            if key and at and key not in shown and key in self.history and len(shown) < 3:
                shown.add(key)
                lines += ["    " + e for e in self.key_events(key, at)]
        if len(self.violations) > 20:
            lines.append("  ... and %d more" % (len(self.violations) - 20))
        lines.append("  replay: make combo SEEDS=%d%s" % (self.seed, " SANITIZE=1" if SANITIZED else ""))
        return "\n".join(lines)


def show(v):
    if isinstance(v, bytes):
        return "<%d bytes %r>" % (len(v), v[:24]) if len(v) > 24 else repr(v)
    return str(v)


def describe_config(cfg):
    return " ".join("%s.%s=%s" % (s, k, v if v != "" else "''") for s, vals in cfg.items() for k, v in vals.items())


def coverage(seeds):
    """What the seeds draw, without running them: every option value and fault they cover."""
    seen = set()
    for seed in seeds:
        rng = random.Random(seed)
        cfg, topology, faults = draw_config(rng)
        seen |= {(s, k, v) for s, vals in cfg.items() for k, v in vals.items()}
        seen |= {("topology", topology, "")} | {("fault", f, topology) for f in faults}
        if bites(cfg):
            seen |= {("fault", f, topology + ", biting") for f in faults}
    return seen


class Summary:
    seeds, reads, violations, failed = [], 0, 0, []


class CombinationTest(unittest.TestCase):
    @classmethod
    def tearDownClass(cls):
        print("\ncombinations: %d seed(s) %s, %d reads checked, %d violation(s)%s" % (
            len(Summary.seeds), Summary.seeds, Summary.reads, Summary.violations,
            ", failing seeds %s" % Summary.failed if Summary.failed else ""))

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="redis-proxy-combo-")
        if os.environ.get("COMBO_KEEP"):  # to read the proxy's and the nodes' logs after a failure
            print("\nworkdir kept: %s" % self.workdir)
        else:
            self.addCleanup(shutil.rmtree, self.workdir, True)

    def run_seed(self, seed, seconds=SECONDS):
        run = Run(self, seed, seconds)
        print("\nseed %d: %s, %s, faults %s" % (seed, run.topology, describe_config(run.cfg), run.faults))
        sys.stdout.flush()
        started = time.monotonic()
        try:
            run.execute()
        finally:
            Summary.seeds.append(seed)
        Summary.reads += run.checked
        Summary.violations += len(run.violations)
        stale = sum(1 for r in run.reads if r[7])
        print("seed %d: %d reads checked (%d STALE), %d violation(s), %.1fs" % (
            seed, run.checked, stale, len(run.violations), time.monotonic() - started))
        if run.violations or run.errors:
            Summary.failed.append(seed)
            print(run.report())
        elif os.environ.get("COMBO_VERBOSE"):  # what the faults did, for a seed that passed
            print(run.report())
        self.assertEqual(run.errors, [], "the test's own threads failed (seed %d)" % seed)
        return run

    def test_fixed_seeds_cover_every_option_and_fault(self):
        seen = coverage(fixed_or_env_seeds())
        if os.environ.get("COMBO_SEEDS"):
            self.skipTest("explicit seeds")
        missing = [("topology", t, "") for t in set(TOPOLOGIES) if ("topology", t, "") not in seen]
        # Every fault in each topology it is drawn for, and those of defects 2 and 6 also in a
        # configuration where their regression would show (bites()).
        missing += [("fault", f, t) for t, fs in FAULTS.items() for f in fs if ("fault", f, t) not in seen]
        missing += [("fault", f, t + ", biting") for t, fs in FAULTS.items() for f in fs
                    if f in BITING_FAULTS and ("fault", f, t + ", biting") not in seen]
        missing += [(s, k, v) for s, k, choices, _ in CONFIG_OPTIONS for v in choices if (s, k, v) not in seen]
        missing += [("log", "access", v) for v in LOG_ACCESS if ("log", "access", v) not in seen]
        missing += [("redis", "tls", v) for v in REDIS_TLS if ("redis", "tls", v) not in seen]
        missing += [("clients", "tls", v) for v in CLIENT_TLS if ("clients", "tls", v) not in seen]
        missing += [("users", k, v) for users in USERS for k, v in users if ("users", k, v) not in seen]
        if not any(not draw_config(random.Random(seed))[0]["users"] for seed in fixed_or_env_seeds()):
            missing.append(("users", "none", ""))
        self.assertEqual(missing, [], "the fixed seeds miss these (choose others)")

    def test_soak(self):
        total = float(os.environ.get("COMBO_SOAK_SECONDS", "0"))
        if total <= 0:
            self.skipTest("COMBO_SOAK_SECONDS not set (make soak)")
        count = int(os.environ.get("COMBO_SOAK_SEEDS") or "0") or 10 ** 9
        end = time.monotonic() + total
        failed = []
        n = 0
        while time.monotonic() < end and n < count:
            n += 1
            seed = random.SystemRandom().randrange(1, 10 ** 6)
            self.doCleanups()  # the previous seed's processes and directory
            self.setUp()
            try:
                run = self.run_seed(seed)
                if run.violations or run.errors:
                    failed.append(seed)
            except AssertionError as e:  # the test's own threads failed: said, and the soak goes on
                print("seed %d: %s" % (seed, e))
                failed.append(seed)
        self.assertEqual(failed, [], "seeds with violations (replay each with make combo SEEDS=...)")


def fixed_or_env_seeds():
    if os.environ.get("COMBO_SEEDS"):
        return [int(s) for s in os.environ["COMBO_SEEDS"].replace(",", " ").split()]
    return FIXED_SEEDS


def _seed_test(seed):
    def test(self):
        run = self.run_seed(seed)
        self.assertEqual(run.violations, [], "seed %d: %d violation(s), see above; replay: make combo SEEDS=%d" % (
            seed, len(run.violations), seed))
    return test


if not os.environ.get("COMBO_SOAK_SECONDS"):
    for _seed in fixed_or_env_seeds():
        setattr(CombinationTest, "test_seed_%d" % _seed, _seed_test(_seed))
