"""Redis down, slow, restarted; AUTH, SELECT and unix sockets."""
import os
import signal
import socket
import threading
import time

from fake_redis import FakeRedis
from harness import ProxyTestCase, RedisClient, RedisError, RedisServer, black_hole_port, free_port, wait_until
from relay import Relay
from test_admin import metric


class OutageTest(ProxyTestCase):
    def test_redis_down_misses_fail_fast_and_hits_are_served(self):
        # With invalidation off a cached key stays a hit; with tracking, Redis can no longer say
        # what changed, so it is answered STALE, but answered: tracking is never worse than off.
        for invalidation, marked in (("off", "HIT"), ("tracking", "STALE")):
            redis = self.start_redis()
            proxy = self.start_proxy(redis, cache={"invalidation": invalidation})
            if invalidation == "tracking":
                wait_until(lambda: metric(proxy.admin("/metrics")[1], "redis_proxy_tracking_workers") == 1,
                           what="tracking established")
            redis("SET", "hot", "cached")
            self.assertEqual(proxy.get("hot").status, 200)
            self.assertHit(proxy.get("hot"), b"cached")
            redis.stop()
            started = time.monotonic()
            r = proxy.get("cold")
            self.assertLess(time.monotonic() - started, 0.5)
            self.assertEqual(r.status, 503)
            self.assertEqual(r.header("Retry-After"), "1")
            # misses keep failing fast while Redis stays down (no queueing behind reconnect attempts)
            for _ in range(10):
                started = time.monotonic()
                self.assertEqual(proxy.get("cold").status, 503)
                self.assertLess(time.monotonic() - started, 0.5)
                r = proxy.get("hot")
                self.assertEqual((r.status, r.body, r.header("X-Cache")), (200, b"cached", marked), invalidation)
            proxy.stop()

    def test_proxy_reconnects_when_redis_comes_back(self):
        proxy = self.start_proxy()
        port = self.redis.port
        self.redis.stop()
        wait_until(lambda: proxy.get("k").status == 503, what="503 while redis is down")
        self.redis = self.start_redis(port=port)
        self.redis("SET", "k", "back")
        wait_until(lambda: proxy.get("k").status == 200, timeout=10, what="reconnect")
        self.assertHit(proxy.get("k"), b"back")

    def test_redis_down_at_start_then_up(self):
        port = free_port()
        down = RedisServer(self.workdir, port)
        proxy = self.start_proxy(server=down)
        self.assertEqual(proxy.get("k").status, 503)
        self.assertIn("cannot connect", proxy.log())
        up = self.start_redis(port=port)
        up("SET", "k", "v")
        wait_until(lambda: proxy.get("k").status == 200, timeout=10, what="first connect")

    def black_hole(self):
        return RedisServer(self.workdir, black_hole_port(self))  # never started: only its port is used

    def test_connect_timeout_when_redis_never_accepts(self):
        proxy = self.start_proxy(server=self.black_hole(), redis={"connect_timeout": "300ms"})
        wait_until(lambda: "connect_timeout reached" in proxy.log(), what="the connect timeout in the log")
        self.assertEqual(proxy.get("k").status, 503)

    def test_misses_are_refused_at_once_while_a_connect_hangs(self):
        proxy = self.start_proxy(server=self.black_hole(), redis={"connect_timeout": "10s", "command_timeout": "10s"})
        for _ in range(3):
            started = time.monotonic()
            r = proxy.get("k")
            self.assertEqual(r.status, 503)
            self.assertEqual(r.header("Retry-After"), "1")
            self.assertLess(time.monotonic() - started, 0.5, "waited on the connect")
        self.assertNotIn("no reply within command_timeout", proxy.log())

    def test_a_late_reply_fails_only_its_own_request(self):
        relay = Relay(self.redis.port).start()
        self.addCleanup(relay.stop)
        proxy = self.start_proxy(server=relay, redis={"command_timeout": "500ms"})
        self.redis("SET", "late", "L")
        self.redis("SET", "young", "Y")
        relay.hold(0, to_redis=False, from_redis=True)  # Redis's replies wait in the relay
        results = {}

        def get(key):
            r = proxy.get(key)
            results[key] = (r.status, r.body)
        # Each miss sends two commands: the key's PTTL (follow_key_expiry), then its GET.
        sent = lambda n: metric(proxy.admin("/metrics")[1], "redis_proxy_redis_commands_total") == 2 * n
        first = threading.Thread(target=get, args=("late",))
        first.start()
        wait_until(lambda: sent(1), what="the first GET sent")
        time.sleep(0.2)  # the scenario: a second GET 0.2s after the first, not a wait for the proxy
        second = threading.Thread(target=get, args=("young",))
        second.start()
        wait_until(lambda: sent(2), what="the second GET sent")
        first.join(5)
        self.assertEqual(results["late"][0], 504)
        relay.release()  # both replies now: the first is dropped, the second answers its GET
        second.join(5)
        self.assertEqual(results["young"], (200, b"Y"))
        self.assertEqual(metric(proxy.admin("/metrics")[1], "redis_proxy_redis_timeouts_total"), 2)  # PTTL, GET
        self.assertEqual(metric(proxy.admin("/metrics")[1], "redis_proxy_redis_connects_total"), 1)  # never reset
        self.assertMiss(proxy.get("late"), b"L")  # the late reply was not cached either

    def test_slow_redis_is_504_and_hits_are_served_meanwhile(self):
        proxy = self.start_proxy(redis={"command_timeout": "300ms"})
        self.redis("SET", "hot", "cached")
        self.assertEqual(proxy.get("hot").status, 200)
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            r = proxy.get("cold")
            elapsed = time.monotonic() - started
            self.assertEqual(r.status, 504, r)
            self.assertGreaterEqual(elapsed, 0.25)
            self.assertLess(elapsed, 2.0)
            self.assertHit(proxy.get("hot"), b"cached")
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        self.redis("SET", "cold", "now")
        wait_until(lambda: proxy.get("cold").status == 200, what="recovery after timeout")
        self.assertIn("no reply within command_timeout", proxy.log())


class TransientErrorTest(ProxyTestCase):
    START_REDIS = False

    def test_redis_loading_or_busy_is_503_with_retry_after_and_not_cached(self):
        fake = FakeRedis().start()
        self.addCleanup(fake.stop)
        fake.data[b"k"] = b"v"
        proxy = self.start_proxy(fake, resp=True)
        for error in (b"LOADING Redis is loading the dataset in memory", b"BUSY Redis is busy running a script",
                      b"MASTERDOWN Link with MASTER is down", b"TRYAGAIN Multiple keys request during rehashing"):
            fake.on("GET", b"-" + error + b"\r\n")
            r = proxy.get("k")
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.header("Retry-After"), "1")
            self.assertEqual(r.body, b"redis unavailable: " + error + b"\n")
            with self.assertRaises(RedisError) as e:  # RESP passes Redis's own error on
                proxy.resp()("GET", "k")
            self.assertEqual(str(e.exception), error.decode())
        del fake.handlers["GET"]
        self.assertMiss(proxy.get("k"), b"v")
        self.assertNotIn("refuses PTTL", proxy.log())


class AuthTest(ProxyTestCase):
    START_REDIS = False  # each test starts its own

    def test_password(self):
        self.redis = self.start_redis(extra_args=["--requirepass", "s3cret"], password="s3cret")
        self.redis("SET", "k", "v")
        proxy = self.start_proxy(redis={"password": "s3cret"})
        self.assertMiss(proxy.get("k"), b"v")

    def test_wrong_password_is_503_and_logged(self):
        self.redis = self.start_redis(extra_args=["--requirepass", "s3cret"], password="s3cret")
        proxy = self.start_proxy(redis={"password": "wrong"}, connected=False)
        wait_until(lambda: "AUTH refused" in proxy.log(), what="AUTH failure in the log")
        self.assertEqual(proxy.get("k").status, 503)
        self.assertNotIn("wrong", proxy.log())  # the password is never logged

    def test_acl_username(self):
        self.redis = self.start_redis()
        self.redis("ACL", "SETUSER", "reader", "on", ">pw", "~*", "+get", "+ping")
        self.redis("SET", "k", "v")
        proxy = self.start_proxy(redis={"username": "reader", "password": "pw"})
        self.assertMiss(proxy.get("k"), b"v")

    def test_database(self):
        self.redis = self.start_redis()
        c = RedisClient(self.redis.port)
        c("SELECT", 3)
        c("SET", "k", "in db 3")
        c.close()
        self.redis("SET", "k", "in db 0")
        proxy = self.start_proxy(redis={"database": "3"})
        self.assertMiss(proxy.get("k"), b"in db 3")

    def test_unix_socket(self):
        self.redis = self.start_redis()
        self.redis("SET", "k", "over unix")
        proxy = self.start_proxy(redis={"address": "unix:" + self.redis.unix_path})
        self.assertMiss(proxy.get("k"), b"over unix")
