"""A Redis Cluster behind the proxy ([redis] cluster): routing by hash slot, redirects, MGET across
slots, coherence per node, a live slot migration and a failover, all against a real cluster of
three primaries and three replicas on loopback (cluster.py)."""
import re
import shutil
import tempfile
import threading
import time
import unittest

from cluster import RedisCluster, key_slot
from harness import Proxy, ProxyTestCase, RedisClient, RedisError, free_port, resp_encode, wait_until
from test_invalidation import BUSY_SCRIPT_US


def metric(text, name):
    m = re.search(r"(?m)^%s (\d+)$" % re.escape(name), text)
    return int(m.group(1)) if m else None


class ClusterProxyMixin:
    def start_cluster_proxy(self, cluster, seeds=None, resp=True, **sections):
        seeds = seeds or ["127.0.0.1:%d" % s.port for s in cluster.servers[:3]]
        settings = {"redis": {"cluster": " ".join(seeds)}}
        for section, values in sections.items():
            settings.setdefault(section, {}).update(values)
        p = Proxy(self.workdir, settings, resp)
        self.addCleanup(self._stop_proxy, p)
        p.start()
        # Ready means the map is read and every primary connected: the admin's /readyz says so,
        # and with tracking, whether every primary tracks what the workers read.
        wait_until(lambda: p.admin("/readyz")[0] == 200, what="the proxy connected to every primary")
        if settings.get("cache", {}).get("invalidation") == "tracking":
            wait_until(lambda: "tracking established in %d of %d\n" % (p.workers, p.workers) in p.admin("/readyz")[1],
                       what="every primary tracking the workers' reads")
        return p

    def cset(self, cluster, key, value):
        """SET straight on the key's primary."""
        cluster.server(cluster.owner(key_slot(key)))("SET", key, value)


class ClusterReadTest(ClusterProxyMixin, ProxyTestCase):
    """Reads through one cluster that every test shares and none reshapes."""
    START_REDIS = False

    @classmethod
    def setUpClass(cls):
        cls.cluster_dir = tempfile.mkdtemp(prefix="redis-proxy-cluster-")
        cls.addClassCleanup(shutil.rmtree, cls.cluster_dir, True)
        cls.cluster = RedisCluster(cls.cluster_dir)
        cls.addClassCleanup(cls.cluster.stop)
        cls.cluster.start()
        cls.owner_of_slot = {}
        for n in cls.cluster.primaries():
            for a, b in n["slots"]:
                for s in range(a, b + 1):
                    cls.owner_of_slot[s] = n["port"]

    def owner(self, key):
        return self.owner_of_slot[key_slot(key)]

    def set(self, key, value):
        self.cluster.server(self.owner(key))("SET", key, value)

    def test_slot_function_agrees_with_redis(self):
        r = RedisClient(self.cluster.servers[0].port)
        for key in ["", "a", "foo", "{user1000}.following", "{}x", "a{}b{c}", "{{a}}", "x{a"]:
            self.assertEqual(key_slot(key), r("CLUSTER", "KEYSLOT", key), key)
        r.close()

    def test_reads_across_every_slot_range_and_primary(self):
        proxy = self.start_cluster_proxy(self.cluster)
        keys = ["read:%d" % i for i in range(300)]
        for k in keys:
            self.set(k, "v-" + k)
        self.assertEqual(len({self.owner(k) for k in keys}), 3, "the keys cover every primary")
        for k in keys:
            self.assertMiss(proxy.get(k), b"v-" + k.encode())
        for k in keys:
            self.assertHit(proxy.get(k), b"v-" + k.encode())
        resp = proxy.resp()
        for k in keys[:30]:
            self.assertEqual(resp("GET", k), b"v-" + k.encode())
        self.assertEqual(proxy.get("read:none").status, 404)
        self.assertIn(b"redis_backend:cluster", resp("INFO"))
        resp.close()

    def test_hash_tags_route_to_their_slot(self):
        proxy = self.start_cluster_proxy(self.cluster)
        keys = ["{user7}.name", "{user7}.mail", "x{}y", "{}z", "a{b}{c}"]
        for k in keys:
            self.set(k, k.upper())
        self.assertEqual(key_slot("{user7}.name"), key_slot("{user7}.mail"))
        for k in keys:
            self.assertMiss(proxy.get(k), k.upper().encode())
        resp = proxy.resp()
        self.assertEqual(resp("MGET", "{user7}.name", "{user7}.mail"), [b"{USER7}.NAME", b"{USER7}.MAIL"])
        resp.close()

    def test_mget_across_slots_answers_in_key_order(self):
        proxy = self.start_cluster_proxy(self.cluster)
        keys = ["mget:%d" % i for i in range(60)]
        for i, k in enumerate(keys):
            if i % 4 != 3:
                self.set(k, "m%d" % i)
        want = [None if i % 4 == 3 else b"m%d" % i for i in range(60)]
        resp = proxy.resp()
        self.assertGreater(len({key_slot(k) for k in keys}), 50, "one MGET spans many slots")
        self.assertEqual(resp("MGET", *keys), want)
        # Hits and misses mixed, keys repeated, in an order of their own.
        mixed = ["mget:new1"] + keys[::-1] + ["mget:new2", keys[5]]
        self.set("mget:new1", "n1")
        self.assertEqual(resp("MGET", *mixed), [b"n1"] + want[::-1] + [None, b"m5"])
        resp.close()

    def test_writes_on_each_primary_reach_the_cache(self):
        proxy = self.start_cluster_proxy(self.cluster, cache={"invalidation": "tracking"})
        by_owner = {}
        for i in range(100):
            by_owner.setdefault(self.owner("inv:%d" % i), "inv:%d" % i)
        self.assertEqual(len(by_owner), 3)
        for k in by_owner.values():
            self.set(k, "old")
            self.assertMiss(proxy.get(k), b"old")
            self.assertHit(proxy.get(k), b"old")
        for k in by_owner.values():
            self.set(k, "new")
        for k in by_owner.values():
            wait_until(lambda: proxy.get(k).body == b"new", timeout=5, what="%s invalidated" % k)
        status, text = proxy.admin("/metrics")
        self.assertEqual(metric(text, "redis_proxy_tracking_workers"), 1)

    def test_losing_one_nodes_link_distrusts_only_its_slots(self):
        proxy = self.start_cluster_proxy(self.cluster, cache={"invalidation": "tracking"})
        by_owner = {}
        for i in range(100):
            by_owner.setdefault(self.owner("link:%d" % i), "link:%d" % i)
        for k in by_owner.values():
            self.set(k, "v")
            self.assertMiss(proxy.get(k), b"v")
        victim = sorted(by_owner)[0]
        # The proxy's invalidation link on that node: the one subscribed connection.
        killed = self.cluster.server(victim)("CLIENT", "KILL", "TYPE", "pubsub")
        self.assertGreaterEqual(killed, 1)
        wait_until(lambda: "invalidation tracking of 127.0.0.1:%d lost" % victim in proxy.log(), timeout=5,
                   what="the lost link noticed")
        for port, k in by_owner.items():
            r = proxy.get(k)
            self.assertEqual(r.body, b"v")
            self.assertEqual(r.header("X-Cache"), "MISS" if port == victim else "HIT", (port, victim))

    def test_connections_are_two_per_primary_per_worker(self):
        proxy = self.start_cluster_proxy(self.cluster, proxy={"workers": "2"}, cache={"invalidation": "tracking"})
        wait_until(lambda: metric(proxy.admin("/metrics")[1], "redis_proxy_tracking_workers") == 2,
                   what="tracking in both workers")
        for k in ("conn:%d" % i for i in range(50)):
            proxy.get(k)

        def proxy_clients(port):
            # Everything but replicas (flags S) and the connection asking.
            lines = self.cluster.server(port)("CLIENT", "LIST").decode().splitlines()
            return [l for l in lines if " flags=S " not in l and "cmd=client|list" not in l]
        for port in sorted(set(self.owner_of_slot.values())):
            wait_until(lambda: len(proxy_clients(port)) == 4, timeout=5,
                       what="4 connections on %d: %r" % (port, proxy_clients(port)))
            self.assertEqual(sum(" flags=P " in l for l in proxy_clients(port)), 2, "one link per worker")

    def test_a_seed_list_whose_first_node_is_down(self):
        seeds = ["127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % self.cluster.servers[1].port]
        proxy = self.start_cluster_proxy(self.cluster, seeds=seeds)
        self.set("seed:a", "1")
        self.assertMiss(proxy.get("seed:a"), b"1")


class ClusterConfigTest(ClusterProxyMixin, ProxyTestCase):
    def test_a_standalone_redis_named_as_cluster_is_told_plainly(self):
        p = Proxy(self.workdir, {"redis": {"cluster": "127.0.0.1:%d" % self.redis.port}})
        self.addCleanup(self._stop_proxy, p)
        p.start()
        wait_until(lambda: "it is no cluster node, use [redis] address" in p.log(), timeout=5,
                   what="the refusal logged")
        r = p.get("anything")
        self.assertEqual(r.status, 503)
        self.assertEqual(p.admin("/readyz")[0], 503)


class ClusterTopologyTest(ClusterProxyMixin, ProxyTestCase):
    """Each test reshapes a cluster of its own."""
    START_REDIS = False

    def setUp(self):
        super().setUp()
        self.cluster = RedisCluster(self.workdir)
        self.addCleanup(self.cluster.stop)
        self.cluster.start()

    def reader(self, proxy, expected, errors, stop):
        """Reads the keys in a loop until stop is set; anything but the expected value (a function
        of the key, read at the time of the answer) is recorded in errors."""
        conn = proxy.connection(timeout=10)
        resp = proxy.resp()
        keys = list(expected)
        rounds = 0
        while not stop.is_set():
            for k in keys:
                r = proxy.get(k, conn)
                want = expected[k]()
                if (want is None and r.status != 404) or (want is not None and (r.status, r.body) != (200, want)):
                    errors.append((k, r.status, r.body, want))
            got = resp("MGET", *keys)
            want = [expected[k]() for k in keys]
            if got != want:
                errors.append(("MGET", got, want))
            rounds += 1
        conn.close()
        resp.close()
        errors.append(("rounds", rounds))

    def test_live_slot_migration_under_reads(self):
        proxy = self.start_cluster_proxy(self.cluster, cache={"invalidation": "tracking"})
        source = self.cluster.primaries()[0]
        target = self.cluster.primaries()[1]
        slot = source["slots"][0][0]
        keys = [RedisCluster.key_in_slot(slot, "mig%d:" % i) for i in range(15)]
        absent = RedisCluster.key_in_slot(slot, "absent:")
        src = self.cluster.server(source["port"])
        dst = self.cluster.server(target["port"])
        values = {}
        for k in keys:
            values[k] = b"value-" + k.encode()
            src("SET", k, values[k])
        expected = {k: (lambda k=k: values.get(k)) for k in keys + [absent]}
        for k in keys:
            self.assertMiss(proxy.get(k), values[k])
        self.assertEqual(proxy.get(absent).status, 404)
        errors, stop = [], threading.Event()
        t = threading.Thread(target=self.reader, args=(proxy, expected, errors, stop))
        t.start()
        try:
            dst("CLUSTER", "SETSLOT", slot, "IMPORTING", source["id"])
            src("CLUSTER", "SETSLOT", slot, "MIGRATING", target["id"])
            for k in keys:
                src("MIGRATE", "127.0.0.1", target["port"], "", 0, 5000, "KEYS", k)
                time.sleep(0.05)  # reads meanwhile: migrated keys are asked of the target (ASK)
            for s in [target, source] + self.cluster.primaries()[2:]:
                self.cluster.server(s["port"])("CLUSTER", "SETSLOT", slot, "NODE", target["id"])
            time.sleep(0.5)  # reads after: the source answers MOVED
        finally:
            stop.set()
            t.join(30)
        rounds = errors.pop()
        self.assertEqual(errors, [], "wrong or failed reads during the migration")
        self.assertGreater(rounds[1], 5)
        text = proxy.admin("/metrics")[1]
        self.assertGreater(metric(text, "redis_proxy_cluster_asks_total"), 0)
        self.assertGreater(metric(text, "redis_proxy_cluster_moved_total"), 0)
        # A write on the new owner reaches the cache, for a key cached before and one never there.
        changed = keys[0]
        for _ in range(3):
            proxy.get(changed)
        dst("SET", changed, "after")
        dst("SET", absent, "created")
        wait_until(lambda: proxy.get(changed).body == b"after", timeout=5, what="the write on the new owner")
        wait_until(lambda: proxy.get(absent).body == b"created", timeout=5, what="the key created on the new owner")

    def test_two_nodes_redirecting_to_each_other_are_waited_out_within_the_command_s_time(self):
        # A migration's last step told to the old owner before the new one (as redis-cli 7.0's
        # reshard may, node by node): for a moment the old owner says MOVED to the new, and the new
        # one, still importing, MOVED back. The proxy asks again after a pause, not unavailable at
        # the fifth redirect; a loop that outlasts command_timeout is unavailable (503).
        proxy = self.start_cluster_proxy(self.cluster, redis={"command_timeout": "2s"})
        source, target = self.cluster.primaries()[0], self.cluster.primaries()[1]
        slot = source["slots"][0][0]
        src, dst = self.cluster.server(source["port"]), self.cluster.server(target["port"])
        keys = [RedisCluster.key_in_slot(slot, "loop%d:" % i) for i in range(2)]
        for k in keys:
            src("SET", k, b"value-" + k.encode())
        self.assertEqual(proxy.get(keys[1]).status, 200)  # the map is read and the slot's owner connected
        dst("CLUSTER", "SETSLOT", slot, "IMPORTING", source["id"])
        src("CLUSTER", "SETSLOT", slot, "MIGRATING", target["id"])
        src("MIGRATE", "127.0.0.1", target["port"], "", 0, 5000, "KEYS", *keys)
        src("CLUSTER", "SETSLOT", slot, "NODE", target["id"])  # the old owner first: the loop
        before = metric(proxy.admin("/metrics")[1], "redis_proxy_cluster_retries_total")
        answers = []
        t = threading.Thread(target=lambda: answers.append(proxy.get(keys[0])))
        started = time.monotonic()
        t.start()
        try:
            wait_until(lambda: metric(proxy.admin("/metrics")[1], "redis_proxy_cluster_retries_total") > before,
                       timeout=5, what="the read redirected in a loop and paused")
        finally:
            for s in [target] + self.cluster.primaries()[2:]:
                self.cluster.server(s["port"])("CLUSTER", "SETSLOT", slot, "NODE", target["id"])
            t.join(10)
        self.assertEqual((answers[0].status, answers[0].body), (200, b"value-" + keys[0].encode()))
        self.assertLess(time.monotonic() - started, 2.0)

        # A loop that lasts: unavailable within command_timeout (300ms), and said in the log.
        other = [n for n in self.cluster.primaries() if n["port"] not in (source["port"], target["port"])][0]
        slot2 = other["slots"][0][0]
        first, stuck = [RedisCluster.key_in_slot(slot2, "stuck%d:" % i) for i in range(2)]
        proxy2 = self.start_cluster_proxy(self.cluster, redis={"command_timeout": "300ms"})
        self.assertEqual(proxy2.get(first).status, 404)
        o, t2 = self.cluster.server(other["port"]), self.cluster.server(target["port"])
        t2("CLUSTER", "SETSLOT", slot2, "IMPORTING", other["id"])
        o("CLUSTER", "SETSLOT", slot2, "MIGRATING", target["id"])
        o("CLUSTER", "SETSLOT", slot2, "NODE", target["id"])
        try:
            started = time.monotonic()
            self.assertEqual(proxy2.get(stuck).status, 503)
            # Paused and asked again until the next pause would end past the 300ms.
            self.assertTrue(0.1 <= time.monotonic() - started < 1.0, time.monotonic() - started)
            wait_until(lambda: "redirect(s); answering unavailable" in proxy2.log(), timeout=5,
                       what="the loop in the log")
        finally:
            for s in self.cluster.primaries():
                self.cluster.server(s["port"])("CLUSTER", "SETSLOT", slot2, "NODE", target["id"])

    def test_a_cached_not_found_is_not_answered_while_its_slot_migrates(self):
        proxy = self.start_cluster_proxy(self.cluster, cache={"invalidation": "tracking"})
        source, target = self.cluster.primaries()[0], self.cluster.primaries()[1]
        slot = source["slots"][0][0]
        key = RedisCluster.key_in_slot(slot, "born-on-the-target:")
        self.assertEqual(proxy.get(key).status, 404)
        self.assertEqual(proxy.get(key).header("X-Cache"), "HIT")  # a cached "not found"
        src, dst = self.cluster.server(source["port"]), self.cluster.server(target["port"])
        dst("CLUSTER", "SETSLOT", slot, "IMPORTING", source["id"])
        src("CLUSTER", "SETSLOT", slot, "MIGRATING", target["id"])
        c = RedisClient(target["port"])  # the key is created where the slot is going
        c("ASKING")
        c("SET", key, "created")
        c.close()
        started = time.monotonic()
        # The migration is learnt at the next map refresh (cluster_refresh, 1s); the slot stays
        # MIGRATING throughout, so only that can end the cached "not found".
        wait_until(lambda: proxy.get(key).body == b"created", timeout=5, what="the key created on the target")
        self.assertLess(time.monotonic() - started, 2.5)
        self.assertEqual(proxy.get(key).header("X-Cache"), "MISS")  # asked of the target: never cached

    def test_failover_after_a_primary_is_killed(self):
        # No stale_if_error: within their TTL the dead primary's keys are answered anyway (STALE).
        proxy = self.start_cluster_proxy(self.cluster, cache={"invalidation": "tracking"},
                                         redis={"command_timeout": "5s"})
        victim = self.cluster.primaries()[0]
        replica = self.cluster.replica_of(victim["port"])
        owner = {}
        for n in self.cluster.primaries():
            for a, b in n["slots"]:
                for s in range(a, b + 1):
                    owner[s] = n["port"]
        keys = ["fo:%d" % i for i in range(1500)]
        theirs = [k for k in keys if owner[key_slot(k)] == victim["port"]][:5]
        others = [k for k in keys if owner[key_slot(k)] != victim["port"]][:900]
        clients = {port: RedisClient(port) for port in set(owner.values())}
        for k in theirs + others:
            clients[owner[key_slot(k)]]("SET", k, "before")
        for c in clients.values():
            c.close()
        for k in theirs:
            self.assertMiss(proxy.get(k), b"before")
        on_replica = RedisClient(replica)
        self.addCleanup(on_replica.close)
        on_replica("READONLY")
        wait_until(lambda: all(on_replica("GET", k) == b"before" for k in theirs), what="the keys replicated")
        self.cluster.server(victim["port"]).proc.kill()
        self.cluster.server(victim["port"]).proc.wait()
        # Until the replica takes over: the killed node's keys come stale (tracking is never
        # worse than off), and other slots' misses all succeed, however long the cluster reports
        # itself down.
        started = time.monotonic()
        fresh = iter(others)
        marks = set()
        while True:
            for k in theirs:
                r = proxy.get(k)
                self.assertEqual((r.status, r.body), (200, b"before"), r)
                marks.add(r.header("X-Cache"))
            k = next(fresh)
            self.assertMiss(proxy.get(k), b"before")
            if on_replica("ROLE")[0] == b"master":
                break
            self.assertLess(time.monotonic() - started, 25, "no failover")
            time.sleep(0.025)  # pacing: the fresh keys last 20 seconds
        self.assertIn("STALE", marks)  # the dead primary's keys, while nobody served their slots
        # The promoted replica serves its slots; what is written there reaches the cache.
        self.cluster.server(replica)("SET", theirs[0], "after")
        wait_until(lambda: proxy.get(theirs[0]).body == b"after", timeout=10, what="the promoted replica read")
        wait_until(lambda: proxy.get(theirs[0]).header("X-Cache") == "HIT", timeout=5, what="cached again")
        self.cluster.server(replica)("SET", theirs[0], "again")
        wait_until(lambda: proxy.get(theirs[0]).body == b"again", timeout=5, what="tracked on the new primary")
        wait_until(lambda: "closing the connections to 127.0.0.1:%d" % victim["port"] in proxy.log(), timeout=5,
                   what="the dead node's connections closed")


if __name__ == "__main__":
    unittest.main()


class EmptiedNodeTest(ClusterProxyMixin, ProxyTestCase):
    START_REDIS = False

    def test_reads_in_flight_on_a_node_whose_last_slot_leaves_are_asked_of_the_new_owner(self):
        # The map sweep closes a node that owns no slot any more; the reads in flight on it were
        # once answered 503. The node is kept busy by a script, so that a read waits on it while
        # the map moves all its slots away.
        cluster = RedisCluster(self.workdir, replicas=0)
        self.addCleanup(cluster.stop)
        cluster.start()
        for s in cluster.servers:  # the script must not make the others fail the busy node over
            s("CONFIG", "SET", "cluster-node-timeout", "20000")
        proxy = self.start_cluster_proxy(cluster, redis={"command_timeout": "10s", "cluster_refresh": "100ms"})
        x, y = cluster.primaries()[2], cluster.primaries()[1]  # not the first: the map is read from that one
        key = RedisCluster.key_in_slot(x["slots"][0][0], "emptied:")
        busy_x = cluster.server(x["port"])
        busy_x("SET", key, "on-x")
        busy_x("CONFIG", "SET", "busy-reply-threshold", "20000")  # others' commands wait, no -BUSY
        script = threading.Thread(target=lambda: busy_x("EVAL", BUSY_SCRIPT_US % 3000000, "0"), daemon=True)
        script.start()
        self.addCleanup(script.join, 10)
        wait_until(lambda: self.busy(busy_x), what="the script running")
        answer = []
        reader = threading.Thread(target=lambda: answer.append(proxy.get(key)), daemon=True)
        reader.start()
        self.addCleanup(reader.join, 15)
        wait_until(lambda: metric(proxy.admin("/metrics")[1], "redis_proxy_fetches_waiting") == 1,
                   what="the read waiting on the busy node")
        # Every slot of x to y, said to y (importing, then its own: a new epoch wins) and to z.
        # The key is written on y while it imports, before any node says it owns the slot.
        slots = [s for a, b in x["slots"] for s in range(a, b + 1)]
        to_y = cluster.server(y["port"])
        others = [cluster.server(n["port"]) for n in cluster.primaries() if n["port"] not in (x["port"], y["port"])]
        self.pipeline(to_y, [("CLUSTER", "SETSLOT", s, "IMPORTING", x["id"]) for s in slots])
        self.assertEqual(self.pipeline(to_y, [("ASKING",), ("SET", key, "on-y")]), [b"OK", b"OK"])
        self.pipeline(to_y, [("CLUSTER", "SETSLOT", s, "NODE", y["id"]) for s in slots])
        for o in others:
            self.pipeline(o, [("CLUSTER", "SETSLOT", s, "NODE", y["id"]) for s in slots])
        wait_until(lambda: "which owns no slot any more" in proxy.log(), what="the emptied node closed")
        reader.join(15)
        self.assertEqual((answer[0].status, answer[0].body), (200, b"on-y"))

    def pipeline(self, server, commands):
        c = RedisClient(server.port)
        try:
            c.send_raw(b"".join(resp_encode(*cmd) for cmd in commands))
            return [c.read_reply() for _ in commands]
        finally:
            c.close()

    def busy(self, server):
        """Whether the server runs a script: a PING waits (busy-reply-threshold is high)."""
        try:
            c = RedisClient(server.port, timeout=0.2)
        except OSError:
            return False
        try:
            c("PING")
            return False
        except OSError:  # (socket.timeout)
            return True
        finally:
            c.close()
