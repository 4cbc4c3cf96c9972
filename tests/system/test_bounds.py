"""One client, one value or one request costs only itself: a value too large to read fails its
own request and nothing else, and what a client can make a worker hold is bounded."""
import os
import re
import signal
import socket
import threading
import time
import unittest

from harness import SANITIZED, ProxyTestCase, RedisClient, RedisError, read_until_closed, resp_encode, wait_until


def metric(text, name):
    m = re.search(r"^redis_proxy_%s (\d+)" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def rss_grown_mb(pid, before_kb):
    """How much the worker grew since before_kb; 0 under ASan, where RSS bounds say nothing."""
    return 0 if SANITIZED else (worker_rss_kb(pid) - before_kb) / 1024


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

    def test_an_mget_whose_whole_answer_passes_max_reply_size_is_fetched_key_by_key(self):
        # The bound is on one reply from Redis: four values of 900 kB are each within it, so the
        # MGET is answered (each key fetched on its own), and so is another client's MGET that
        # joined one of its fetches; a value too large by itself fails the MGET it is in.
        proxy = self.start_proxy(resp=True, redis={"max_reply_size": "2m"}, cache={"max_value_size": "1m"})
        keys = ["part%d" % i for i in range(4)]
        for key in keys:
            self.redis("SET", key, "p" * 900000)
        self.redis("SET", "huge", "h" * 3000000)
        a, b = proxy.resp(), proxy.resp()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        self.redis.proc.send_signal(signal.SIGSTOP)  # so that b's MGET joins a's fetch
        try:
            a.send_raw(resp_encode("MGET", *keys))
            b.send_raw(resp_encode("MGET", "part0"))
            wait_until(lambda: metric(proxy.admin("/metrics")[1], "coalesced_total") == 1, what="b's MGET joined")
        finally:
            self.redis.proc.send_signal(signal.SIGCONT)
        self.assertEqual(a.read_reply(), [b"p" * 900000] * 4)
        self.assertEqual(b.read_reply(), [b"p" * 900000])
        with self.assertRaises(RedisError) as caught:
            a("MGET", "part0", "huge")
        self.assertIn("ERR value too large", str(caught.exception))
        self.assertEqual(a("GET", "part1"), b"p" * 900000)
        # Fetched apart, each key is still asked with MGET: a list is nil, as in Redis's MGET.
        for key in ("q0", "q1", "q2"):  # not cached yet: together past max_reply_size
            self.redis("SET", key, "q" * 900000)
        self.redis("RPUSH", "list", "x")
        self.assertEqual(a("MGET", "q0", "q1", "q2", "list"), [b"q" * 900000] * 3 + [None])
        self.assertEqual(metric(proxy.admin("/metrics")[1], "redis_connects_total"), 1)

    def test_a_value_of_max_value_size_is_read_when_max_reply_size_is_the_same(self):
        # The bound counts a value, not the framing around it.
        proxy = self.start_proxy(redis={"max_reply_size": "1k"}, cache={"max_value_size": "1k"})
        self.redis("SET", "edge", "e" * 1024)
        self.redis("SET", "over", "o" * 1025)
        self.assertMiss(proxy.get("edge"), b"e" * 1024)
        self.assertHit(proxy.get("edge"), b"e" * 1024)
        self.assertEqual(proxy.get("over").status, 502)

    def test_a_reply_past_max_reply_size_read_whole_is_refused_too(self):
        # Once, a 30,000-byte reply passed a 1k bound because it arrived within one read.
        proxy = self.start_proxy(redis={"max_reply_size": "1k"}, cache={"max_value_size": "1k"})
        self.redis("SET", "mid", "m" * 30000)
        self.redis("SET", "k", "v")
        self.assertEqual(proxy.get("mid").status, 502)
        self.assertMiss(proxy.get("k"), b"v")


BIG = 1153434  # 1.1 MiB: past max_value_size (1m), so never cached


def bulk_bytes(n):
    return len(b"$%d\r\n" % n) + n + 2


def read_exactly(sock, n):
    """Reads n bytes, keeping only the first 64 of them."""
    head, got = b"", 0
    while got < n:
        chunk = sock.recv(min(1 << 20, n - got))
        if not chunk:
            raise ConnectionError("closed after %d of %d bytes" % (got, n))
        if len(head) < 64:
            head += chunk[:64 - len(head)]
        got += len(chunk)
    return head


def requests_answered(proxy):
    text = proxy.admin("/metrics")[1]
    return sum(int(v) for v in re.findall(r'^redis_proxy_requests_total\{front="resp",result="[a-z_]+"\} (\d+)',
                                          text, re.M))


def evicted(proxy, reason):
    m = re.search(r'^redis_proxy_clients_evicted_total\{reason="%s"\} (\d+)' % reason, proxy.admin("/metrics")[1], re.M)
    return int(m.group(1))


class SharedValueTest(ProxyTestCase):
    """A value not cached is copied once, whatever the number of answers that carry it."""

    def setUp(self):
        super().setUp()
        self.proxy = self.start_proxy(resp=True, proxy={"max_client_output": "2g", "max_client_memory": "4g"})
        self.redis("SET", "big", "b" * BIG)
        self.pid = self.proxy.worker_pids()[0]
        self.sock = socket.create_connection(("127.0.0.1", self.proxy.resp_port), timeout=30)
        self.addCleanup(self.sock.close)

    def assert_shared(self, request, answers, expected_bytes):
        before = worker_rss_kb(self.pid)
        self.sock.sendall(request)
        wait_until(lambda: requests_answered(self.proxy) >= answers, what="every answer made")
        grown_mb = rss_grown_mb(self.pid, before)
        # Copied per answer, they would take 330 MB.
        self.assertLess(grown_mb, 40, "the worker grew by %.0f MB for %d answers of one value" % (grown_mb, answers))
        self.assertEqual(read_exactly(self.sock, expected_bytes)[-10:], b"b" * 10)

    def test_one_mget_naming_a_large_key_many_times_holds_one_copy(self):
        # Once, one 9 KB MGET naming a 1.1 MiB key 1,000 times added 1,107 MB of RSS.
        n = 300
        self.assert_shared(resp_encode("MGET", *["big"] * n), n, len(b"*%d\r\n" % n) + n * bulk_bytes(BIG))

    def test_pipelined_gets_of_a_large_key_hold_one_copy(self):
        n = 300
        self.assert_shared(resp_encode("GET", "big") * n, n, n * bulk_bytes(BIG))


class ClientBoundsTest(ProxyTestCase):
    def test_a_client_whose_unread_answers_pass_max_client_output_is_closed(self):
        proxy = self.start_proxy(resp=True)  # max_client_output = 64m
        self.redis("SET", "big", "b" * BIG)
        self.redis("SET", "k", "v")
        hog = socket.create_connection(("127.0.0.1", proxy.resp_port), timeout=10)
        self.addCleanup(hog.close)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.sendall(resp_encode("MGET", *["big"] * 100))  # 110 MB of answer
        wait_until(lambda: evicted(proxy, "output") == 1, what="the client closed")
        read_until_closed(hog, 10)  # EOF: closed before its answer was written
        other = proxy.resp()
        self.addCleanup(other.close)
        self.assertEqual(other("GET", "k"), b"v")
        self.assertIn("held answers unread and lookups under way past max_client_output", proxy.log())
        self.assertIn("127.0.0.1:", proxy.log())  # its address

    def test_a_command_past_max_request_size_is_refused_and_its_client_closed(self):
        # Once, six connections each sending an unfinished 60 MB MGET took a worker to 343 MB.
        proxy = self.start_proxy(resp=True)  # max_request_size = 4m
        pid = proxy.worker_pids()[0]
        before = worker_rss_kb(pid)
        clients = []
        arg = b"$1000\r\n" + b"x" * 1000 + b"\r\n"
        for _ in range(6):
            s = socket.create_connection(("127.0.0.1", proxy.resp_port), timeout=10)
            self.addCleanup(s.close)
            try:  # an MGET of 9,999 keys of 1,000 bytes, 5 MB of it sent
                s.sendall(b"*10000\r\n$4\r\nMGET\r\n" + arg * 5000)
            except OSError:
                pass  # closed under it: what this test wants
            clients.append(s)
        for s in clients:
            # The error is sent before the close; with the rest of the command unread, the kernel
            # may turn the close into a reset that overtakes it.
            try:
                got = read_until_closed(s, 10)
                self.assertIn(b"-ERR Protocol error: request larger than max_request_size", got)
            except ConnectionResetError:
                pass
        self.assertEqual(evicted(proxy, "request"), 6)
        self.assertLess(rss_grown_mb(pid, before), 40)

    def test_max_request_size_is_exact(self):
        proxy = self.start_proxy(resp=True, proxy={"max_request_size": "2k", "max_key_size": "1k"})

        def mget_of(total):
            """An MGET of two keys, exactly `total` bytes long."""
            first = resp_encode("MGET", "a" * 1000)[2:]  # without its "*2"
            n = total
            while 2 + len(first) + len(b"$%d\r\n" % n) + n + 2 > total:
                n -= 1
            return b"*3" + first + b"$%d\r\n" % n + b"b" * n + b"\r\n"

        fits, over = mget_of(2048), mget_of(2049)
        self.assertEqual((len(fits), len(over)), (2048, 2049))
        client = proxy.resp()
        self.addCleanup(client.close)
        client.send_raw(fits)
        self.assertEqual(client.read_reply(), [None, None])
        client.send_raw(over)
        with self.assertRaises(RedisError) as caught:
            client.read_reply()
        self.assertIn("request larger than max_request_size", str(caught.exception))

    def test_past_max_client_memory_the_client_holding_the_most_is_closed(self):
        proxy = self.start_proxy(resp=True, proxy={"max_client_memory": "8m", "max_client_output": "4m",
                                                   "max_request_size": "3m"})
        self.redis("SET", "k", "v")
        # Unfinished MGETs of 8,000-byte keys: each holds an input buffer of up to 3 MB, and
        # together they pass 8 MB.
        arg = b"$8000\r\n" + b"x" * 8000 + b"\r\n"
        socks = []
        for sent in (125, 250, 360, 360):
            s = socket.create_connection(("127.0.0.1", proxy.resp_port), timeout=10)
            self.addCleanup(s.close)
            s.sendall(b"*%d\r\n$4\r\nMGET\r\n" % (sent + 6) + arg * sent)
            socks.append(s)
        wait_until(lambda: evicted(proxy, "memory") >= 1, what="a client evicted")
        # The smallest stays: the ones holding the most went first. Its MGET completes.
        socks[0].sendall(arg * 5)
        small = RedisClient.__new__(RedisClient)
        small.sock, small.file = socks[0], socks[0].makefile("rb")
        self.assertEqual(small.read_reply(), [None] * 130)
        fresh = proxy.resp()
        self.addCleanup(fresh.close)
        self.assertEqual(fresh("GET", "k"), b"v")
        self.assertIn("held the most while the worker's clients passed max_client_memory", proxy.log())

    def test_http_clients_that_do_not_read_count_against_max_client_memory(self):
        # What the kernel takes of an answer (its socket buffers, a few MB) is not ours to count:
        # values large enough that most of each answer stays with the worker.
        value = 12 * 1024 * 1024
        proxy = self.start_proxy(proxy={"max_client_memory": "24m", "max_client_output": "16m"},
                                 redis={"max_reply_size": "16m"}, cache={"max_value_size": "16m"})
        self.redis("SET", "big", "b" * value)
        self.assertEqual(proxy.get("big").status, 200)  # cached
        socks = []
        for _ in range(4):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", proxy.port))
            self.addCleanup(s.close)
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        wait_until(lambda: evicted(proxy, "memory") >= 1, what="an HTTP client evicted")
        self.assertEqual(proxy.get("big").status, 200)  # others are served
        self.assertIn("closing HTTP client 127.0.0.1:", proxy.log())


class SlowRedisStateTest(ProxyTestCase):
    def test_pipelined_mgets_waiting_on_a_stalled_redis_are_bounded(self):
        # Once, 41 MB of pipelined MGETs took a worker to 576 MB: the state of the lookups under
        # way was counted nowhere.
        proxy = self.start_proxy(resp=True, redis={"command_timeout": "5s"})
        pid = proxy.worker_pids()[0]
        before = worker_rss_kb(pid)
        self.redis.proc.send_signal(signal.SIGSTOP)
        self.addCleanup(self.redis.proc.send_signal, signal.SIGCONT)
        hog = socket.create_connection(("127.0.0.1", proxy.resp_port), timeout=10)
        self.addCleanup(hog.close)
        batch = b"".join(resp_encode("MGET", *["k%d:%d" % (i, j) for j in range(1000)]) for i in range(1000))
        try:
            hog.sendall(batch)  # 16 MB: a million keys
        except OSError:
            pass
        wait_until(lambda: evicted(proxy, "output") == 1, what="the client closed")
        grown_mb = rss_grown_mb(pid, before)
        self.assertLess(grown_mb, 150, "the worker grew by %.0f MB" % grown_mb)


class MemoryBurstTest(ProxyTestCase):
    """What a worker really holds stays near what its clients are counted for."""

    def flood(self, proxy, value_size, clients, repeat=9999):
        self.redis("SET", "v", "v" * value_size)
        warm = proxy.resp()
        self.addCleanup(warm.close)
        warm("GET", "v")  # cached
        mget = resp_encode("MGET", *["v"] * repeat)
        socks = []
        for _ in range(clients):
            s = socket.create_connection(("127.0.0.1", proxy.resp_port), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self.addCleanup(s.close)
            socks.append(s)
        for s in socks:
            try:
                s.sendall(mget)  # and never read
            except OSError:
                pass  # closed under it (evicted)
        return socks

    def test_one_turn_of_the_loop_cannot_take_a_worker_far_past_max_client_memory(self):
        # Once, 200 clients each sending one MGET of a 1 KiB key 9,999 times took a worker with
        # max_client_memory = 256m to 1.5 GB: every client ready in the same turn ran its MGET
        # before the eviction did.
        proxy = self.start_proxy(resp=True, proxy={"max_client_memory": "64m", "max_client_output": "32m"})
        pid = proxy.worker_pids()[0]
        before = worker_rss_kb(pid)
        peak = [before]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], worker_rss_kb(pid))
                done.wait(0.01)
        t = threading.Thread(target=sample)
        t.start()
        try:
            self.flood(proxy, 1024, 200)
            wait_until(lambda: evicted(proxy, "memory") > 0, what="evictions")
        finally:
            done.set()
            t.join()
        grown_mb = 0 if SANITIZED else (peak[0] - before) / 1024
        self.assertLess(grown_mb, 64 + 48, "the worker grew by %.0f MB at its peak" % grown_mb)
        fresh = proxy.resp()
        self.addCleanup(fresh.close)
        self.assertEqual(fresh("GET", "v"), b"v" * 1024)

    def test_answers_cost_about_what_they_are_counted_for(self):
        # Once, each answer referencing a value cost a chain of twice its size for the CRLF after
        # it: 8 clients x 9,999 answers of 1,025 bytes were counted 59 MB and held 393 MB. Values
        # up to 4 KiB are copied now (counted as they are), larger ones referenced (about 2 KiB of
        # chains each, counted at the value's length).
        for size in (1025, 5000):
            with self.subTest(value=size):
                proxy = self.start_proxy(resp=True, proxy={"max_client_memory": "2g", "max_client_output": "1g"})
                pid = proxy.worker_pids()[0]
                before = worker_rss_kb(pid)
                self.flood(proxy, size, 8)
                wait_until(lambda: requests_answered(proxy) >= 8 * 9999 + 1, what="every answer made")
                counted_mb = metric(proxy.admin("/metrics")[1], "client_memory_bytes") / (1024 * 1024)
                grown_mb = rss_grown_mb(pid, before)
                self.assertLess(grown_mb, counted_mb * 1.25 + 16,
                                "held %.0f MB for %.0f MB counted" % (grown_mb, counted_mb))
                proxy.stop()


class AdminConnectionsTest(ProxyTestCase):
    def test_idle_admin_connections_cannot_take_the_clients_descriptors(self):
        # Once, 3,000 idle admin connections under a 1,200-descriptor limit left HTTP and RESP
        # clients unserved: admin connections counted nowhere.
        proxy = self.start_proxy(resp=True, nofile_limit=256, proxy={"max_clients": "100"},
                                 admin={"max_clients": "4", "timeout": "1s"})
        self.redis("SET", "k", "v")
        pid = proxy.worker_pids()[0]
        idle = []
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", proxy.admin_port), timeout=10)
            self.addCleanup(s.close)
            idle.append(s)
        self.assertLess(len(os.listdir("/proc/%d/fd" % pid)), 100)  # 4 admin connections, not 300
        self.assertEqual(proxy.get("k").status, 200)
        client = proxy.resp()
        self.addCleanup(client.close)
        self.assertEqual(client("GET", "k"), b"v")

    def test_an_idle_admin_connection_is_closed_at_its_timeout(self):
        proxy = self.start_proxy(admin={"max_clients": "4", "timeout": "1s"})
        idle = []
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", proxy.admin_port), timeout=10)
            self.addCleanup(s.close)
            idle.append(s)
        started = time.monotonic()
        for s in idle:
            self.assertEqual(read_until_closed(s, 10), b"")  # closed by the proxy, not by us
        self.assertLess(time.monotonic() - started, 3)
        self.assertEqual(proxy.admin("/healthz")[0], 200)  # and the endpoint answers again


    def test_admin_clients_trickling_bytes_cannot_hold_the_admin_slots(self):
        # Each connection lasts [admin] timeout at most, busy or not: sixteen clients sending a
        # header byte a second would otherwise keep /healthz unreachable for ever.
        proxy = self.start_proxy(admin={"max_clients": "4", "timeout": "1s"})
        slow = []
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", proxy.admin_port), timeout=10)
            self.addCleanup(s.close)
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
            slow.append(s)
        stop = threading.Event()

        def trickle():
            while not stop.is_set():
                for s in slow:
                    try:
                        s.sendall(b"X")
                    except OSError:
                        pass
                stop.wait(0.3)  # the pace of these clients, not a wait for the proxy
        t = threading.Thread(target=trickle)
        t.start()
        self.addCleanup(t.join)
        self.addCleanup(stop.set)
        started = time.monotonic()
        self.assertEqual(proxy.admin("/healthz", timeout=10)[0], 200)
        self.assertLess(time.monotonic() - started, 3)


class MaxMemoryTest(ProxyTestCase):
    def fill(self, client, prefix, count, value):
        """Sets count keys in Redis and reads each once through the proxy (a miss, cached)."""
        for start in range(0, count, 1000):
            keys = ["%s:%d" % (prefix, i) for i in range(start, min(start + 1000, count))]
            args = []
            for k in keys:
                args += [k, value]
            self.redis("MSET", *args)
            self.assertEqual(client("MGET", *keys), [value.encode()] * len(keys))

    def test_a_capacity_of_a_billion_keys_costs_nothing_until_used(self):
        # Once, the hash table was sized from capacity at start: 1.1 GB of RSS at 10^9.
        proxy = self.start_proxy(cache={"capacity": "1000000000", "max_memory": "16m"})
        self.assertLess(worker_rss_kb(proxy.worker_pids()[0]) / 1024, 64)

    @unittest.skipIf(SANITIZED, "RSS is not measured under ASan (its shadow memory): rss_grown_mb is 0")
    def test_rss_stays_near_max_memory_when_one_entry_per_page_stays_read(self):
        # Found by an attack: as above, size class after size class, but after each page's
        # worth of entries its first is read again with all those kept before. LRU evicted the
        # rest, each kept entry held its 64 KiB page, and 40 classes held about 40 x 1m; now
        # pages past the bound and its slack are emptied, whatever their entries' recency.
        proxy = self.start_proxy(resp=True, cache={"capacity": "10000000", "max_memory": "1m",
                                                   "invalidation": "off"})
        client = proxy.resp()
        self.addCleanup(client.close)
        pid = proxy.worker_pids()[0]
        before = worker_rss_kb(pid)
        kept = []
        for size in range(64, 64 + 8 * 40, 8):  # entry sizes: 36-byte header, 8-byte key, value
            value = "v" * (size - 36 - 8)
            per_page = (65536 - 48 - ((65536 - 48) // size + 7) // 8 - 7) // size  # slab.cc's class_layout, roughly
            count = int(1.2 * 1024 * 1024 / size)
            keys = ["%03d%05d" % (size % 1000, i) for i in range(count)]
            for start in range(0, count, 1000):
                args = []
                for k in keys[start:start + 1000]:
                    args += [k, value]
                self.redis("MSET", *args)
            for start in range(0, count, per_page):
                client("MGET", *keys[start:start + per_page])
                kept.append(keys[start])
                client("MGET", *kept)
        grown_mb = rss_grown_mb(pid, before)
        self.assertLess(grown_mb, 6, "the worker grew by %.0f MB under max_memory = 1m" % grown_mb)
        self.assertGreater(metric(proxy.admin("/metrics")[1], "cache_evictions_total{reason=\"page\"}"), 0)

    def test_rss_follows_max_memory_whatever_the_mix_of_value_sizes(self):
        # Once, with max_memory = 8m, RSS went from 12.8 to 101 MB over 12 size classes while the
        # cache held 8 MB: pages stayed with their size class for ever.
        proxy = self.start_proxy(resp=True, cache={"capacity": "10000000", "max_memory": "4m"})
        client = proxy.resp()
        self.addCleanup(client.close)
        pid = proxy.worker_pids()[0]
        before = worker_rss_kb(pid)
        for n, size in enumerate(range(16, 400, 32)):  # 12 size classes, each filling the cache
            self.fill(client, "c%d" % n, 4 * 1024 * 1024 // (size + 80) + 1000, "v" * size)
        text = proxy.admin("/metrics")[1]
        self.assertLessEqual(metric(text, "cache_bytes"), 4 * 1024 * 1024)
        grown_mb = rss_grown_mb(pid, before)
        # 4 MB of cache, its table, a spare page per class and malloc's own: a few MB, not 12 x 4.
        self.assertLess(grown_mb, 12, "the worker grew by %.0f MB" % grown_mb)
