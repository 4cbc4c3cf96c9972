"""invalidation = tracking: a change made directly in Redis reaches every worker's cache, with a
TTL long enough (300s) that only an invalidation can explain a new answer. Each test first waits
until Redis tracks every worker, and makes sure each worker has the key cached (a hit), so that a
proxy without invalidation would fail it."""
import re
import signal
import threading
import time

from harness import ProxyTestCase, RedisError, RedisServer, one_connection_per_worker, wait_until
from fake_redis import FakeRedis
from relay import Relay
from test_admin import metric
from test_resp import command_calls

WORKERS = 2
FAST = 0.1  # seconds: the bound the coherence issue sets; invalidations take well under 1 ms


def answers_error(redis, prefix):
    """Whether Redis answers a PING with that error (-BUSY while a script runs, -LOADING while it
    loads its data); False while it cannot be reached."""
    try:
        redis("PING")
        return False
    except RedisError as e:
        return str(e).startswith(prefix)
    except (OSError, ConnectionError):
        return False


class TrackingTestCase(ProxyTestCase):
    def start_tracking_proxy(self, server=None, workers=WORKERS, **cache):
        settings = {"invalidation": "tracking", "ttl": "300s"}
        settings.update(cache)
        proxy = self.start_proxy(server, resp=True, proxy={"workers": str(workers)}, cache=settings)
        self.wait_tracked(proxy, workers)
        self.conns = self.one_connection_per_worker(proxy, workers)
        return proxy

    def wait_tracked(self, proxy, workers):
        wait_until(lambda: metric(proxy.admin("/metrics")[1], "redis_proxy_tracking_workers") == workers,
                   what="Redis to track every worker")

    def one_connection_per_worker(self, proxy, workers):
        conns = one_connection_per_worker(proxy, workers)
        for c in conns:
            self.addCleanup(c.close)
        return conns

    def hits(self, proxy):
        return metric(proxy.admin("/metrics")[1], "redis_proxy_requests_total", front="resp", result="hit")

    def cache_everywhere(self, proxy, key, value):
        """Reads the key through every worker until each answers it from its cache. (A change
        the test just made reaches the workers a moment later: wait for it first.)"""
        self.every_worker_answers(key, value)
        for c in self.conns:
            self.assertEqual(c("GET", key), value)
            before = self.hits(proxy)
            self.assertEqual(c("GET", key), value)
            self.assertEqual(self.hits(proxy), before + 1, "%r not cached by a worker" % key)

    def every_worker_answers(self, key, value, within=FAST):
        wait_until(lambda: all(c("GET", key) == value for c in self.conns), timeout=within,
                   what="every worker to answer %r for %r" % (value, key))


class InvalidationTest(TrackingTestCase):
    def test_changes_in_redis_reach_every_worker(self):
        proxy = self.start_tracking_proxy()
        for name, change, after in [
            ("SET", ("SET", "k", "new"), b"new"),
            ("DEL", ("DEL", "k"), None),
            ("EXPIRE", ("PEXPIRE", "k", "1"), None),
        ]:
            self.redis("SET", "k", "old")
            self.cache_everywhere(proxy, "k", b"old")
            self.redis(*change)
            # An expiry reaches the proxy when Redis deletes the key (its expiry cycle runs 10
            # times a second); the others at once.
            self.every_worker_answers("k", after, within=FAST if name != "EXPIRE" else 3.0)
        self.assertGreaterEqual(metric(proxy.admin("/metrics")[1], "redis_proxy_invalidations_total"), 3 * WORKERS)

    def test_flushall_and_flushdb_empty_every_worker(self):
        proxy = self.start_tracking_proxy()
        for flush in ("FLUSHALL", "FLUSHDB"):
            self.redis("MSET", "a", "1", "b", "2")
            self.cache_everywhere(proxy, "a", b"1")
            self.cache_everywhere(proxy, "b", b"2")
            self.redis(flush)
            self.every_worker_answers("a", None)
            self.every_worker_answers("b", None)
        self.assertGreaterEqual(metric(proxy.admin("/metrics")[1], "redis_proxy_invalidation_flushes_total"),
                                2 * WORKERS)

    def test_a_cached_not_found_is_dropped_when_the_key_is_created(self):
        proxy = self.start_tracking_proxy()
        self.cache_everywhere(proxy, "later", None)  # not found is cached by default with tracking
        self.redis("SET", "later", "here")
        self.every_worker_answers("later", b"here")

    def test_mget_reads_are_tracked_too(self):
        proxy = self.start_tracking_proxy()
        self.redis("MSET", "a", "1", "b", "2")
        for c in self.conns:
            self.assertEqual(c("MGET", "a", "b", "c"), [b"1", b"2", None])
        self.redis("SET", "b", "two")
        self.redis("SET", "c", "three")
        wait_until(lambda: all(c("MGET", "a", "b", "c") == [b"1", b"two", b"three"] for c in self.conns),
                   timeout=FAST, what="the MGETs to see the changes")

    def test_http_answers_follow_redis_too(self):
        proxy = self.start_tracking_proxy(workers=1)
        self.redis("SET", "user:42", "alice")
        self.assertEqual(proxy.get("user:42").body, b"alice")
        self.assertHit(proxy.get("user:42"), b"alice")
        self.redis("SET", "user:42", "bob")
        wait_until(lambda: proxy.get("user:42").body == b"bob", timeout=FAST, what="bob")


class InvalidationRaceTest(TrackingTestCase):
    def redis_gets(self):
        """GETs Redis has run so far."""
        m = re.search(rb"cmdstat_get:calls=(\d+)", self.redis("INFO", "commandstats"))
        return int(m.group(1)) if m else 0

    def race(self, between):
        """A first GET of k ("old") whose reply Redis has sent but the relay holds; then
        between(proxy), which sets k to "new" in Redis; then a second GET, which must send a fetch
        of its own (never join the first). Returns both answers, once the relay lets go."""
        relay = Relay(self.redis.port).start()
        self.addCleanup(relay.stop)
        proxy = self.start_tracking_proxy(server=relay, workers=1)
        self.redis("SET", "k", "old")
        # The data connection is the one Redis tracks (flags t): its replies wait in the relay.
        data = [l for l in self.redis("CLIENT", "LIST").decode().splitlines() if " flags=t " in l][0]
        relay.hold(relay.index_of(re.search(r" addr=(\S+) ", data).group(1)), to_redis=False, from_redis=True)
        answers = {}

        def get(name):
            answers[name] = proxy.get("k").body
        first = threading.Thread(target=get, args=("first",))
        first.start()
        wait_until(lambda: self.redis_gets() == 1, what="Redis to read the old value for the first request")
        between(proxy)
        second = threading.Thread(target=get, args=("second",))
        second.start()
        wait_until(lambda: self.redis_gets() == 2, what="a fetch of its own for the second request")
        relay.release()
        first.join(5)
        second.join(5)
        return proxy, answers

    def test_a_request_after_an_invalidation_never_gets_the_value_read_before_it(self):
        def write(proxy):
            self.redis("SET", "k", "new")  # its invalidation overtakes the held reply
            wait_until(lambda: metric(proxy.admin("/metrics")[1], "redis_proxy_invalidated_fetches_total") == 1,
                       what="the invalidation to reach the proxy")
        proxy, answers = self.race(write)
        self.assertEqual(answers, {"first": b"old", "second": b"new"})
        self.assertEqual(proxy.get("k").body, b"new")  # the old reply was not cached

    def test_a_request_after_a_lost_link_never_joins_a_fetch_sent_before_it(self):
        def lose_the_link_then_write(proxy):
            # The link goes, and the write after it is told to nobody: the worker distrusts all it
            # read, and a request from now on must not wait for the fetch sent before.
            self.redis("CLIENT", "KILL", "TYPE", "pubsub")
            wait_until(lambda: metric(proxy.admin("/metrics")[1], "redis_proxy_tracking_losses_total") == 1,
                       what="the lost link noticed")
            self.redis("SET", "k", "new")
        proxy, answers = self.race(lose_the_link_then_write)
        self.assertEqual(answers, {"first": b"old", "second": b"new"})


class KeyExpiryTest(TrackingTestCase):
    """Redis reports an expiry only when it deletes the key: lazily, when something reads it (the
    proxy never does, it has it cached), or in its sampled expiry cycle, which with many keys may
    come long after. Here that cycle is off, as if it never got to the key."""

    def start_lazy_redis(self):
        redis = self.start_redis(extra_args=["--enable-debug-command", "yes"])
        redis("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        return redis

    def test_an_entry_never_outlives_its_key(self):
        redis = self.start_lazy_redis()
        for invalidation in ("tracking", "off"):
            proxy = self.start_proxy(redis, cache={"invalidation": invalidation, "ttl": "300s"})
            redis("SET", "short", "lived", "PX", "600")
            started = time.monotonic()
            self.assertMiss(proxy.get("short"), b"lived")
            self.assertHit(proxy.get("short"), b"lived")  # cached while the key lives
            wait_until(lambda: proxy.get("short").status == 404, timeout=3, what="the key's expiry, with " + invalidation)
            self.assertGreater(time.monotonic() - started, 0.55, "not before the key expired")
            proxy.stop()

    def test_with_follow_key_expiry_off_an_entry_lives_its_ttl(self):
        redis = self.start_lazy_redis()
        proxy = self.start_proxy(redis, cache={"invalidation": "off", "ttl": "300s", "follow_key_expiry": "off"})
        redis("SET", "short", "lived", "PX", "200")
        self.assertMiss(proxy.get("short"), b"lived")
        wait_until(lambda: redis("EXISTS", "short") == 0, what="the key expired in Redis")
        self.assertHit(proxy.get("short"), b"lived")  # the price of one command per miss
        self.assertNotIn(b"cmdstat_pttl", redis("INFO", "commandstats"))


class LostLinkTest(TrackingTestCase):
    def test_a_killed_invalidation_connection_leaves_no_stale_value(self):
        proxy = self.start_tracking_proxy()
        self.redis("SET", "k", "old")
        self.cache_everywhere(proxy, "k", b"old")
        self.redis("CLIENT", "KILL", "TYPE", "pubsub")
        self.redis("SET", "k", "new")  # while the link is down: no invalidation reaches anyone
        wait_until(lambda: metric(proxy.admin("/metrics")[1], "redis_proxy_tracking_losses_total") >= WORKERS,
                   what="the workers to notice")
        for c in self.conns:
            self.assertEqual(c("GET", "k"), b"new")
        # Tracking comes back by itself, and invalidations with it.
        self.wait_tracked(proxy, WORKERS)
        self.cache_everywhere(proxy, "k", b"new")
        self.redis("SET", "k", "newer")
        self.every_worker_answers("k", b"newer")

    def test_redis_restarted_on_the_same_port_leaves_no_stale_value(self):
        proxy = self.start_tracking_proxy()
        self.redis("SET", "k", "old")
        self.cache_everywhere(proxy, "k", b"old")
        self.redis.stop()
        self.redis.start()  # empty: no persistence
        self.redis("SET", "k", "new")
        # While a worker has not reconnected yet, Redis cannot be reached: the old value within
        # its TTL is answered, marked STALE. Once it answers again, never the old value.
        answers = []

        def all_new():
            rs = [proxy.get("k") for _ in range(10)]
            answers.extend((r.body, r.header("X-Cache")) for r in rs)
            return all(r.body == b"new" for r in rs)
        wait_until(all_new, what="every worker to answer the new value")
        self.assertEqual([a for a in answers if a[0] == b"old" and a[1] != "STALE"], [])
        for c in self.conns:
            self.assertEqual(c("GET", "k"), b"new")

    def test_a_silent_link_is_caught_by_the_heartbeat(self):
        # The invalidation connection stays open but Redis's messages on it stop arriving: only
        # the heartbeat can tell.
        relay = Relay(self.redis.port).start()
        self.addCleanup(relay.stop)
        proxy = self.start_proxy(resp=True, redis={"address": "127.0.0.1:%d" % relay.port},
                                 cache={"invalidation": "tracking", "ttl": "300s", "heartbeat": "200ms"})
        self.wait_tracked(proxy, 1)
        self.conns = self.one_connection_per_worker(proxy, 1)
        self.assertEqual(relay.connections(), 2)
        self.redis("SET", "k", "old")
        self.cache_everywhere(proxy, "k", b"old")
        link = [l for l in self.redis("CLIENT", "LIST").decode().splitlines() if " sub=2 " in l][0]
        addr = re.search(r" addr=(\S+)", link).group(1)
        relay.hold(relay.index_of(addr), to_redis=False, from_redis=True)
        self.redis("SET", "k", "new")  # its invalidation is held in the relay
        started = time.monotonic()
        self.every_worker_answers("k", b"new", within=3.0)
        self.assertLess(time.monotonic() - started, 1.0)  # the heartbeat bounds it: 200 ms, plus slack
        self.assertIn("heartbeat not back", proxy.log())
        relay.release()


class StaleWithTrackingTest(TrackingTestCase):
    """Tracking is never worse than invalidation = off: while Redis cannot be reached, an entry
    within its TTL is answered (X-Cache: STALE); once Redis answers again, nothing stored before
    the outage is trusted."""

    def test_redis_down_entries_within_their_ttl_are_answered_stale(self):
        proxy = self.start_tracking_proxy(workers=1)
        self.redis("SET", "k", "v")
        self.cache_everywhere(proxy, "k", b"v")
        self.assertEqual([proxy.get("gone").header("X-Cache") for _ in range(2)], ["MISS", "HIT"])
        port = self.redis.port
        self.redis.stop()  # the link is lost: the entry stops being trusted, though its TTL runs
        wait_until(lambda: proxy.get("k").header("X-Cache") == "STALE", what="the loss to be noticed")
        stale_before = metric(proxy.admin("/metrics")[1], "redis_proxy_stale_answers_total")
        for _ in range(20):  # for as long as the outage lasts, not a grace
            r = proxy.get("k")
            self.assertEqual((r.status, r.body, r.header("X-Cache")), (200, b"v", "STALE"))
            self.assertEqual(self.conns[0]("GET", "k"), b"v")
            time.sleep(0.05)  # the outage goes on: part of the scenario, not a wait for the proxy
        self.assertEqual(metric(proxy.admin("/metrics")[1], "redis_proxy_stale_answers_total"), stale_before + 40)
        self.assertEqual(proxy.get("never-cached").status, 503)
        r = proxy.get("gone")  # a cached "not found" is answered stale too, and says so
        self.assertEqual((r.status, r.header("X-Cache")), (404, "STALE"))
        # Redis back, with other data: what was stored before the outage is not trusted.
        self.redis = self.start_redis(port=port)
        self.redis("SET", "k", "after")
        wait_until(lambda: proxy.get("k").body == b"after", what="the entry fetched again")

    def test_stale_answers_end_within_100ms_of_redis_accepting_connections_again(self):
        # The outage lasts long enough for the reconnect's back-off to reach its longest (2 s):
        # while entries are answered STALE, Redis is asked again every 50 ms all the same.
        proxy = self.start_tracking_proxy(workers=1)
        self.redis("SET", "k", "v")
        self.cache_everywhere(proxy, "k", b"v")
        port = self.redis.port
        self.redis.stop()
        conn = proxy.connection()
        self.addCleanup(conn.close)
        started = time.monotonic()
        while time.monotonic() - started < 3.0:  # the outage: read on, as clients do
            self.assertEqual(proxy.get("k", conn).header("X-Cache"), "STALE")
        self.redis = RedisServer(self.workdir, port)
        self.addCleanup(self.redis.stop)
        self.redis.start(wait=False)
        back = None
        last_stale = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            r = proxy.get("k", conn)
            now = time.monotonic()
            if back is None and self.redis._answers():
                back = time.monotonic()
            if r.header("X-Cache") == "STALE":
                last_stale = now
            elif back is not None:
                break
        self.assertIsNotNone(back, "Redis never came back")
        self.assertLess(last_stale - back, 0.1, "STALE answers went on after Redis was back")

    def test_a_data_connection_cut_under_a_redis_that_is_up_serves_nothing_stale(self):
        # Its first reconnect is at once and the reads wait for it: a change made meanwhile
        # (which no invalidation reports: Redis tracked the connection that was cut) is never
        # answered with the value before it.
        proxy = self.start_tracking_proxy(workers=1)
        self.redis("SET", "k", "old")
        self.cache_everywhere(proxy, "k", b"old")
        conn = proxy.connection()
        self.addCleanup(conn.close)
        connects = metric(proxy.admin("/metrics")[1], "redis_proxy_redis_connects_total")
        # A connection that has lasted a moment: one dropped right after it was made is a server
        # refusing it, backed off (test_faulty_redis.RefusingRedisTest).
        time.sleep(0.15)
        data = [l for l in self.redis("CLIENT", "LIST").decode().splitlines()
                if " sub=0 " in l and "cmd=client" not in l]
        for line in data:
            self.redis("CLIENT", "KILL", "ID", re.search(r"id=(\d+)", line).group(1))
        self.redis("SET", "k", "new")
        answers = [(r.body, r.header("X-Cache")) for r in (proxy.get("k", conn) for _ in range(200))]
        self.assertEqual([a for a in answers if a[1] == "STALE"], [])
        self.assertEqual(set(a[0] for a in answers[-10:]), {b"new"})
        self.assertGreater(metric(proxy.admin("/metrics")[1], "redis_proxy_redis_connects_total"), connects)

    def test_a_redis_loading_its_data_after_a_restart_is_bridged_with_stale_answers(self):
        # While a restarted Redis loads its data it answers -LOADING: Redis cannot serve yet,
        # as during the outage. Entries within their TTL are answered STALE, as invalidation =
        # off would answer them (as hits): never a 503 for a key the cache holds.
        proxy = self.start_tracking_proxy(workers=1)
        self.redis("SET", "k", "v")
        filler = []
        for i in range(20000):
            filler += ["filler:%d" % i, "x" * 10]
        self.redis("MSET", *filler)
        self.redis("SAVE")
        self.cache_everywhere(proxy, "k", b"v")
        port = self.redis.port
        self.redis.stop()
        loading = RedisServer(self.workdir, port, ["--key-load-delay", "100",
                                                   "--loading-process-events-interval-bytes", "1024"])
        self.addCleanup(loading.stop)
        loading.start(wait=False)
        wait_until(lambda: answers_error(loading, "LOADING"), what="Redis loading its data")
        answers = []
        while answers_error(loading, "LOADING"):
            r = proxy.get("k")
            answers.append((r.status, r.body))
        self.assertEqual(set(answers), {(200, b"v")})
        self.assertGreater(metric(proxy.admin("/metrics")[1], "redis_proxy_redis_error_replies_total"), 0,
                           "the proxy was answered -LOADING")
        wait_until(lambda: proxy.get("k").header("X-Cache") in ("HIT", "MISS"), what="Redis serving again")

    def test_past_its_ttl_an_entry_is_answered_only_within_stale_if_error(self):
        proxy = self.start_tracking_proxy(workers=1, ttl="1s", stale_if_error="1s")
        self.redis("SET", "k", "v")
        self.cache_everywhere(proxy, "k", b"v")
        self.redis.stop()
        wait_until(lambda: proxy.get("k").header("X-Cache") == "STALE", what="the loss to be noticed")
        wait_until(lambda: proxy.get("k").status == 503, timeout=5, what="the TTL and the grace to pass")


class TrackingLifecycleTest(TrackingTestCase):
    def test_a_reload_brings_tracking_back_and_a_stop_is_prompt(self):
        proxy = self.start_tracking_proxy()
        old = [c for c in self.conns]
        proxy.settings["cache"]["ttl"] = "200s"
        proxy.write_config()
        proxy.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "serving; stopping" in proxy.log(), what="the new generation")
        wait_until(lambda: metric(proxy.admin("/metrics")[1], "redis_proxy_workers") == WORKERS,
                   what="the old generation gone")
        for c in old:
            c.close()
        self.wait_tracked(proxy, WORKERS)
        self.conns = self.one_connection_per_worker(proxy, WORKERS)
        self.redis("SET", "k", "v1")
        self.cache_everywhere(proxy, "k", b"v1")
        self.redis("SET", "k", "v2")
        self.every_worker_answers("k", b"v2")
        for c in self.conns:
            c.close()
        started = time.monotonic()
        self.assertEqual(proxy.stop(), 0)
        self.assertLess(time.monotonic() - started, 5.0)  # the links and heartbeats hold nothing up


class UnsupportedTest(ProxyTestCase):
    START_REDIS = False

    def test_a_redis_without_tracking_gets_one_warning_and_ttl_only(self):
        fake = FakeRedis().start()
        self.addCleanup(fake.stop)
        fake.data[b"k"] = b"v"
        proxy = self.start_proxy(fake, cache={"invalidation": "tracking"})
        wait_until(lambda: "running without invalidation" in proxy.log(), what="the warning")
        self.assertEqual(proxy.get("k").status, 200)
        self.assertHit(proxy.get("k"), b"v")
        self.assertEqual(proxy.get("absent").status, 404)
        self.assertEqual(proxy.get("absent").header("X-Cache"), "MISS")  # auto: off without tracking
        self.assertEqual(proxy.log().count("running without invalidation"), 1)


# A script that keeps Redis busy for 1.5 s (BUSY_SCRIPT_US % microseconds: as long as asked).
BUSY_SCRIPT_US = """local t = redis.call('TIME'); local start = t[1] * 1000000 + t[2]
while true do local n = redis.call('TIME'); if n[1] * 1000000 + n[2] - start > %d then break end end
return 1"""
BUSY_SCRIPT = BUSY_SCRIPT_US % 1500000


class TransientRefusalTest(TrackingTestCase):
    def test_a_busy_redis_delays_tracking_but_never_switches_it_off(self):
        redis = self.start_redis(extra_args=["--busy-reply-threshold", "50"])
        busy = threading.Thread(target=lambda: redis("EVAL", BUSY_SCRIPT, "0"), daemon=True)
        busy.start()
        wait_until(lambda: answers_error(redis, "BUSY"), what="Redis answering -BUSY")
        proxy = self.start_proxy(redis, cache={"invalidation": "tracking", "ttl": "300s"})
        wait_until(lambda: "refuses CLIENT ID for now (BUSY" in proxy.log(), what="the refusal")
        status, body = proxy.admin("/readyz")
        self.assertIn("invalidation tracking established in 0 of 1", body)
        busy.join(10)
        self.wait_tracked(proxy, 1)  # retried once the script is over
        status, body = proxy.admin("/readyz")
        self.assertEqual(status, 200)
        self.assertIn("invalidation tracking established in 1 of 1\n", body)
        self.assertNotIn("running without invalidation", proxy.log())
        self.assertGreaterEqual(metric(proxy.admin("/metrics")[1], "redis_proxy_tracking_refusals_total"), 1)
        # And it works: cached, then changed in Redis, then answered new.
        redis("SET", "k", "old")
        self.assertEqual(proxy.get("k").body, b"old")
        self.assertHit(proxy.get("k"), b"old")
        redis("SET", "k", "new")
        wait_until(lambda: proxy.get("k").body == b"new", timeout=FAST, what="the invalidation")

    def test_a_busy_redis_does_not_switch_the_heartbeat_off(self):
        # The heartbeat's PUBLISH answered -BUSY once had switched the heartbeat off for good: a
        # silent loss of the link was never noticed again.
        proxy = self.start_tracking_proxy(workers=1, heartbeat="200ms")
        self.redis("CONFIG", "SET", "busy-reply-threshold", "50")
        busy = threading.Thread(target=lambda: self.redis("EVAL", BUSY_SCRIPT, "0"), daemon=True)
        busy.start()
        wait_until(lambda: answers_error(self.redis, "BUSY"), what="Redis answering -BUSY")
        busy.join(10)
        self.assertFalse(busy.is_alive())
        publishes = command_calls(self.redis, "publish")
        wait_until(lambda: command_calls(self.redis, "publish") >= publishes + 3, timeout=3,
                   what="the heartbeat to go on after the script")
        self.assertNotIn("refuses the heartbeat", proxy.log())


class AclTest(TrackingTestCase):
    def test_a_user_without_pubsub_channels_gets_one_warning_and_ttl_only(self):
        # Redis 7 gives new ACL users no channels (acl-pubsub-default resetchannels).
        self.redis("ACL", "SETUSER", "limited", "on", ">secret", "~*", "+@all", "resetchannels")
        proxy = self.start_proxy(redis={"username": "limited", "password": "secret"},
                                 cache={"invalidation": "tracking", "ttl": "300s"})
        wait_until(lambda: "refuses SUBSCRIBE" in proxy.log(), what="the warning")
        self.redis("SET", "k", "v")
        self.assertEqual(proxy.get("k").status, 200)
        self.assertHit(proxy.get("k"), b"v")  # cached, TTL only

    def test_a_user_granted_the_two_channels_gets_tracking(self):
        self.redis("ACL", "SETUSER", "granted", "on", ">secret", "~*", "+@all", "resetchannels",
                   "&__redis__:invalidate", "&__redis-proxy__:*")
        proxy = self.start_proxy(redis={"username": "granted", "password": "secret"},
                                 cache={"invalidation": "tracking", "ttl": "300s"})
        self.wait_tracked(proxy, 1)
        self.redis("SET", "k", "old")
        self.assertEqual(proxy.get("k").body, b"old")
        self.redis("SET", "k", "new")
        wait_until(lambda: proxy.get("k").body == b"new", timeout=FAST, what="the invalidation")
        self.assertNotIn("refuses", proxy.log())


class OffTest(ProxyTestCase):
    def test_with_invalidation_off_a_change_waits_for_the_ttl(self):
        proxy = self.start_proxy(cache={"invalidation": "off", "ttl": "300s"})
        self.redis("SET", "k", "old")
        self.assertEqual(proxy.get("k").body, b"old")
        self.redis("SET", "k", "new")
        self.assertHit(proxy.get("k"), b"old")
        self.assertEqual(len([l for l in self.redis("CLIENT", "LIST").splitlines() if b"cmd=" in l]), 2)
