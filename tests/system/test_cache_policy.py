"""What the cache keeps and for how long, beyond TTL and LRU: single-flight misses, a byte bound,
cached "not found", and stale answers while Redis is down (stale_if_error)."""
import re
import socket

from harness import ProxyTestCase, RedisError, read_until_closed, wait_until
from relay import Relay
from test_admin import metric


def commandstat_calls(redis, command):
    m = re.search(rb"cmdstat_%s:calls=(\d+)" % command.encode(), redis("INFO", "commandstats"))
    return int(m.group(1)) if m else 0


class SingleFlightTest(ProxyTestCase):
    def held_redis(self):
        """A relay to the test's Redis, to hold the proxy's commands back while requests pile up."""
        relay = Relay(self.redis.port).start()
        self.addCleanup(relay.stop)
        return relay

    def test_concurrent_misses_for_one_key_cost_one_get_per_worker(self):
        relay = self.held_redis()
        proxy = self.start_proxy(proxy={"workers": "2"}, resp=True,
                                 redis={"address": "127.0.0.1:%d" % relay.port, "command_timeout": "20s"})
        self.redis("SET", "hot", "value")
        self.redis("CONFIG", "RESETSTAT")
        relay.hold()  # the first GET of each worker waits; every other request misses meanwhile
        socks = []
        for i in range(200):
            s = socket.create_connection(("127.0.0.1", proxy.port if i % 2 else proxy.resp_port), timeout=15)
            socks.append(s)
            s.sendall(b"GET /hot HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" if i % 2 else
                      b"*2\r\n$3\r\nGET\r\n$3\r\nhot\r\n")
        # Every request has reached a worker: all but the first of each worker joined a fetch.
        wait_until(lambda: metric(proxy.admin("/metrics")[1], "redis_proxy_coalesced_total") >= 198,
                   what="the requests to wait on a fetch")
        relay.release()
        for i, s in enumerate(socks):
            if i % 2:
                self.assertIn(b"\r\n\r\nvalue", read_until_closed(s))
            else:
                f = s.makefile("rb")
                self.assertEqual(f.readline(), b"$5\r\n")
                self.assertEqual(f.readline(), b"value\r\n")
                f.close()
            s.close()
        self.assertLessEqual(commandstat_calls(self.redis, "get"), 2)
        self.assertEqual(commandstat_calls(self.redis, "mget"), 0)

    def test_an_mget_joins_mget_fetches_on_their_way_but_never_a_gets(self):
        # A GET and an MGET of one key ask different questions (for a list: -WRONGTYPE, nil):
        # neither waits for the other's fetch. An MGET's repeated key, or another MGET of it, does.
        relay = self.held_redis()
        proxy = self.start_proxy(resp=True, redis={"address": "127.0.0.1:%d" % relay.port, "command_timeout": "20s"})
        self.redis("MSET", "a", "1", "b", "2", "c", "3")
        self.redis("CONFIG", "RESETSTAT")
        relay.hold()
        first = proxy.resp()
        first.send_raw(b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n")
        wait_until(lambda: metric(proxy.admin("/metrics")[1], "redis_proxy_redis_commands_total") >= 1,
                   what="the GET sent")
        second = proxy.resp()
        second.send_raw(b"*5\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nb\r\n")
        wait_until(lambda: metric(proxy.admin("/metrics")[1], "redis_proxy_redis_commands_total") >= 2,
                   what="the MGET sent")
        third = proxy.resp()
        third.send_raw(b"*2\r\n$4\r\nMGET\r\n$1\r\nc\r\n")
        # a, b and c go out in one MGET; the second b joins the first; the third client's c too.
        wait_until(lambda: metric(proxy.admin("/metrics")[1], "redis_proxy_coalesced_total") == 2,
                   what="two keys to join fetches")
        relay.release()
        self.assertEqual(first.read_reply(), b"1")
        self.assertEqual(second.read_reply(), [b"1", b"2", b"3", b"2"])
        self.assertEqual(third.read_reply(), [b"3"])
        for c in (first, second, third):
            c.close()
        self.assertEqual(commandstat_calls(self.redis, "get"), 1)
        self.assertEqual(commandstat_calls(self.redis, "mget"), 1)


class MemoryBoundTest(ProxyTestCase):
    def test_max_memory_holds_with_values_of_mixed_sizes(self):
        proxy = self.start_proxy(cache={"max_memory": "64k", "capacity": "100000"})
        for i in range(300):
            self.redis("SET", "k%d" % i, "x" * (50 + (i * 997) % 4000))
        for i in range(300):
            self.assertEqual(proxy.get("k%d" % i).status, 200)
        _, text = proxy.admin("/metrics")
        held = metric(text, "redis_proxy_cache_bytes")
        self.assertLessEqual(held, 64 * 1024)
        self.assertGreater(held, 48 * 1024)  # evicted down to fit, not emptied
        self.assertGreater(metric(text, "redis_proxy_cache_evictions_total", reason="lru"), 200)
        self.assertEqual(proxy.get("k299").header("X-Cache"), "HIT")  # the latest is kept


class NotFoundTest(ProxyTestCase):
    def test_an_mget_nil_is_cached_as_not_found_only_when_pttl_said_so(self):
        # MGET answers nil for a key of another type too: its nil means "no such key" only when
        # the PTTL beside it (follow_key_expiry) said -2.
        for follow, expected in (("on", "HIT"), ("off", "MISS")):
            proxy = self.start_proxy(resp=True, cache={"cache_not_found": "on", "follow_key_expiry": follow})
            c = proxy.resp()
            self.addCleanup(c.close)
            self.redis("RPUSH", "list-" + follow, "x")
            self.assertEqual(c("MGET", "nosuch", "list-" + follow), [None, None])
            self.assertEqual(proxy.get("nosuch").header("X-Cache"), expected, follow)
            self.assertEqual(proxy.get("list-" + follow).status, 409, follow)  # never a cached nil


    def test_not_found_is_cached_only_when_asked(self):
        on = self.start_proxy(cache={"cache_not_found": "on"})
        self.assertEqual((on.get("absent").status, on.get("absent").header("X-Cache")), (404, "HIT"))
        self.redis("SET", "absent", "now")
        self.assertEqual(on.get("absent").status, 404)  # until its TTL, as any cached answer
        default = self.start_proxy()
        self.assertEqual((default.get("nope").status, default.get("nope").header("X-Cache")), (404, "MISS"))

    def test_a_cached_not_found_in_an_mget(self):
        proxy = self.start_proxy(resp=True, cache={"cache_not_found": "on"})
        self.redis("SET", "a", "1")
        c = proxy.resp()
        self.assertEqual(c("MGET", "a", "gone"), [b"1", None])
        self.redis("CONFIG", "RESETSTAT")
        self.assertEqual(c("MGET", "a", "gone"), [b"1", None])
        c.close()
        self.assertEqual(commandstat_calls(self.redis, "mget"), 0)  # both hits


class StaleIfErrorTest(ProxyTestCase):
    def test_an_expired_entry_is_answered_stale_while_redis_is_down_within_the_grace(self):
        proxy = self.start_proxy(resp=True, cache={"ttl": "300ms", "stale_if_error": "1500ms"})
        self.redis("SET", "k", "v")
        self.assertEqual(proxy.get("k").header("X-Cache"), "MISS")
        self.redis.stop()
        wait_until(lambda: proxy.get("k").header("X-Cache") == "STALE", what="the TTL to pass")
        r = proxy.get("k")
        self.assertEqual((r.status, r.body, r.header("X-Cache")), (200, b"v", "STALE"))
        c = proxy.resp()
        self.assertEqual(c("GET", "k"), b"v")  # RESP: a plain value
        c.close()
        self.assertEqual(proxy.get("never-cached").status, 503)
        wait_until(lambda: proxy.get("k").status == 503, what="the grace to pass")
        self.assertGreaterEqual(metric(proxy.admin("/metrics")[1], "redis_proxy_stale_answers_total"), 2)

    def test_a_stale_entry_is_never_answered_while_redis_answers(self):
        proxy = self.start_proxy(cache={"ttl": "200ms", "stale_if_error": "10s"})
        self.redis("SET", "k", "old")
        self.assertEqual(proxy.get("k").body, b"old")
        self.redis("SET", "k", "new")
        wait_until(lambda: proxy.get("k").body == b"new", what="the TTL to pass")
        self.assertEqual(metric(proxy.admin("/metrics")[1], "redis_proxy_stale_answers_total"), 0)

    def test_without_the_setting_an_expired_entry_is_not_answered(self):
        proxy = self.start_proxy(cache={"ttl": "200ms"})
        self.redis("SET", "k", "v")
        self.assertEqual(proxy.get("k").status, 200)
        self.redis.stop()
        wait_until(lambda: proxy.get("k").status == 503, what="the TTL to pass")
