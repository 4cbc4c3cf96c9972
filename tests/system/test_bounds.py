"""One client, one value or one request costs only itself: a value too large to read fails its
own request and nothing else, and what a client can make a worker hold is bounded."""
import re

from harness import ProxyTestCase, RedisError


def metric(text, name):
    m = re.search(r"^redis_proxy_%s (\d+)" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def worker_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int([line for line in f if line.startswith("VmRSS:")][0].split()[1])


class LargeValueTest(ProxyTestCase):
    def test_a_value_past_max_reply_size_fails_its_request_only(self):
        # Once, a 9 MiB value reset the worker's Redis connection: every other miss failed and,
        # with tracking, the whole cache was distrusted.
        proxy = self.start_proxy(resp=True)
        self.redis("SET", "big", "x" * (9 * 1024 * 1024))
        self.redis("SET", "k", "v")
        self.redis("SET", "other", "o")
        self.assertMiss(proxy.get("k"), b"v")
        r = proxy.get("big")
        self.assertEqual(r.status, 502, r)
        self.assertEqual(r.body, b"value too large: redis's reply is larger than max_reply_size\n")
        client = proxy.resp()
        self.addCleanup(client.close)
        with self.assertRaises(RedisError) as caught:
            client("GET", "big")
        self.assertIn("ERR value too large", str(caught.exception))
        self.assertEqual(client("GET", "other"), b"o")  # the same connection, still in step
        self.assertHit(proxy.get("k"), b"v")  # nothing distrusted
        text = proxy.admin("/metrics")[1]
        self.assertEqual(metric(text, "redis_connects_total"), 1)
        self.assertEqual(metric(text, "tracking_losses_total"), 0)
        self.assertEqual(metric(text, "redis_replies_too_large_total"), 2)
        self.assertEqual(metric(text, "redis_out_of_step_total"), 0)

    def test_an_mget_whose_whole_answer_passes_max_reply_size_fails_alone(self):
        proxy = self.start_proxy(resp=True, redis={"max_reply_size": "2m"}, cache={"max_value_size": "1m"})
        keys = ["part%d" % i for i in range(4)]
        for key in keys:
            self.redis("SET", key, "p" * 900000)
        client = proxy.resp()
        self.addCleanup(client.close)
        with self.assertRaises(RedisError) as caught:
            client("MGET", *keys)
        self.assertIn("ERR value too large", str(caught.exception))
        self.assertEqual(client("MGET", *keys[:2]), [b"p" * 900000] * 2)  # within the bound
        self.assertEqual(metric(proxy.admin("/metrics")[1], "redis_connects_total"), 1)

    def test_a_reply_past_max_reply_size_read_whole_is_refused_too(self):
        # Once, a 30,000-byte reply passed a 1k bound because it arrived within one read.
        proxy = self.start_proxy(redis={"max_reply_size": "1k"}, cache={"max_value_size": "1k"})
        self.redis("SET", "mid", "m" * 30000)
        self.redis("SET", "k", "v")
        self.assertEqual(proxy.get("mid").status, 502)
        self.assertMiss(proxy.get("k"), b"v")
