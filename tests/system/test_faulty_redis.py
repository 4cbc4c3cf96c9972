"""A faulty Redis (wrong reply types, extra replies, half replies, endless bulks) must never
crash a worker, never get anything cached, and never hold a client longer than command_timeout."""
import socket
import time

from fake_redis import FakeRedis, bulk
from harness import ProxyTestCase, RedisError, wait_until


class FaultyRedisTestCase(ProxyTestCase):
    START_REDIS = False

    def setUp(self):
        super().setUp()
        self.fake = FakeRedis().start()
        self.addCleanup(self.fake.stop)
        self.fake.data = {b"a": b"A", b"b": b"B", b"k": b"value"}

    def start(self, **sections):
        self.proxy = self.start_proxy(server=self.fake, resp=True, **sections)
        self.client = self.proxy.resp()
        self.addCleanup(self.client.close)
        return self.proxy

    def assertWorkerNeverDied(self):
        log = self.proxy.log()
        self.assertEqual(log.count("worker 0 ready"), 1, log)
        self.assertNotIn("respawning", log)

    def resp_error(self, *command):
        with self.assertRaises(RedisError) as caught:
            self.client(*command)
        return str(caught.exception)


class WrongReplyShapeTest(FaultyRedisTestCase):
    def test_mget_answered_with_a_bulk_is_an_error_and_caches_nothing(self):
        # Once a use-after-free: the bulk was cached under the missed keys and freed at once.
        self.start()
        self.fake.on("MGET", b"$5\r\nWRONG\r\n")
        self.assertIn("BACKENDERROR", self.resp_error("MGET", "a", "b"))
        del self.fake.handlers["MGET"]
        self.assertEqual(self.client("GET", "a"), b"A")
        self.assertEqual(self.client("GET", "a"), b"A")
        self.assertEqual(self.client("MGET", "a", "b"), [b"A", b"B"])
        self.assertWorkerNeverDied()

    def test_mget_with_wrong_element_count_or_types_caches_nothing(self):
        self.start()
        for answer in (b"*1\r\n$1\r\nX\r\n",                      # one element for two keys
                       b"*2\r\n$1\r\nX\r\n*1\r\n$1\r\nY\r\n",     # a nested array
                       b"*2\r\n$1\r\nX\r\n:7\r\n",                # an integer element
                       b":2\r\n", b"+OK\r\n"):
            self.fake.on("MGET", answer)
            self.assertIn("BACKENDERROR", self.resp_error("MGET", "a", "b"), answer)
        del self.fake.handlers["MGET"]
        self.assertEqual(self.client("MGET", "a", "b"), [b"A", b"B"])
        self.assertWorkerNeverDied()

    def test_get_answered_with_wrong_types_is_502_and_not_cached(self):
        self.start()
        answers = [b"*1\r\n$1\r\nx\r\n", b":1\r\n", b"+OK\r\n"]
        for i, answer in enumerate(answers):
            self.fake.on("GET", answer)
            r = self.proxy.get("k%d" % i)
            self.assertEqual(r.status, 502, (answer, r))
            self.assertIn(b"wrong type", r.body)
        del self.fake.handlers["GET"]
        for i in range(len(answers)):
            self.fake.data[b"k%d" % i] = b"real"
            self.assertMiss(self.proxy.get("k%d" % i), b"real")
        self.assertWorkerNeverDied()

    def test_redis_error_reply_to_mget_is_answered_and_not_cached(self):
        self.start()
        self.fake.on("MGET", b"-ERR something odd\r\n")
        self.assertIn("something odd", self.resp_error("MGET", "a", "b"))
        del self.fake.handlers["MGET"]
        self.assertEqual(self.client("MGET", "a", "b"), [b"A", b"B"])
        self.assertWorkerNeverDied()
