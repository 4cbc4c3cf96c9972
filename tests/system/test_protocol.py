"""Speaking Redis as its clients expect: read-only transactions (MULTI/EXEC), RESP3 (HELLO 3),
INFO sections and DBSIZE. Where Redis itself can answer the same bytes, the proxy's answers are
compared with redis-server's byte for byte."""
import signal
import socket
import subprocess

from harness import ProxyTestCase, RedisError, alive, resp_encode, wait_until, worker_pid


def raw_reply(f):
    """One whole reply's bytes as they came, nested types (arrays, maps, RESP3) included."""
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind = line[:1]
    if kind in b"$=!" and int(line[1:-2]) >= 0:
        return line + f.read(int(line[1:-2]) + 2)
    if kind in b"*~>" and int(line[1:-2]) >= 0:
        return line + b"".join(raw_reply(f) for _ in range(int(line[1:-2])))
    if kind in b"%|":
        return line + b"".join(raw_reply(f) for _ in range(2 * int(line[1:-2])))
    return line


def exchange(port, commands):
    """Sends every command at once (as a pipelining client does), reads one reply per command."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"".join(resp_encode(*c) for c in commands))
        f = s.makefile("rb")
        replies = [raw_reply(f) for _ in commands]
        f.close()
        return replies


class ProtocolTestCase(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.proxy = self.start_proxy(resp=True)
        self.redis("SET", "a", "1")
        self.redis("SET", "b", "two")
        self.redis("SET", "big", "x" * 5000)
        self.redis("HSET", "h", "f", "v")

    def assertSameAsRedis(self, commands):
        ours = exchange(self.proxy.resp_port, commands)
        theirs = exchange(self.redis.port, commands)
        self.assertEqual(ours, theirs, commands)
        return ours


class TransactionTest(ProtocolTestCase):
    def test_transactions_of_reads_answer_as_redis_does(self):
        # Twice: cold (every key fetched in one MGET) and warm (every key a hit).
        for _ in range(2):
            self.assertSameAsRedis([("MULTI",), ("GET", "a"), ("GET", "nosuch"), ("MGET", "b", "a", "nosuch"),
                                    ("GET", "big"), ("PING",), ("ECHO", "hi"), ("EXEC",)])
        self.assertSameAsRedis([("MULTI",), ("EXEC",)])
        self.assertSameAsRedis([("MULTI",), ("GET", "a"), ("DISCARD",), ("GET", "b")])
        # A key of another type reads as nil inside a transaction, as MGET reads it (Redis's
        # own EXEC would answer its GET with WRONGTYPE).
        replies = exchange(self.proxy.resp_port, [("MULTI",), ("GET", "h"), ("GET", "a"), ("EXEC",)])
        self.assertEqual(replies[3], b"*2\r\n$-1\r\n$1\r\n1\r\n")

    def test_errors_around_transactions_are_redis_s(self):
        self.assertSameAsRedis([("EXEC",)])
        self.assertSameAsRedis([("DISCARD",)])
        self.assertSameAsRedis([("MULTI",), ("MULTI",), ("GET", "a"), ("EXEC",)])
        # An unknown command, or a wrong arity, aborts the transaction: EXECABORT.
        self.assertSameAsRedis([("MULTI",), ("GET", "a"), ("NOSUCHCMD", "x"), ("EXEC",), ("GET", "a")])
        self.assertSameAsRedis([("MULTI",), ("GET", "a", "b"), ("EXEC",)])

    def test_a_write_inside_a_transaction_aborts_it(self):
        replies = exchange(self.proxy.resp_port, [("MULTI",), ("GET", "a"), ("SET", "a", "2"), ("EXEC",),
                                                  ("GET", "a")])
        self.assertEqual(replies[:2], [b"+OK\r\n", b"+QUEUED\r\n"])
        self.assertTrue(replies[2].startswith(b"-READONLY"), replies[2])
        self.assertEqual(replies[3], b"-EXECABORT Transaction discarded because of previous errors.\r\n")
        self.assertEqual(replies[4], b"$1\r\n1\r\n")
        self.assertEqual(self.redis("GET", "a"), b"1")

    def test_watch_is_refused_with_a_reason(self):
        c = self.proxy.resp()
        with self.assertRaisesRegex(RedisError, "^ERR WATCH is not supported by redis-proxy"):
            c("WATCH", "a")
        self.assertEqual(c("UNWATCH"), b"OK")
        self.assertEqual(c("MULTI"), b"OK")
        with self.assertRaisesRegex(RedisError, "^ERR WATCH inside MULTI is not allowed"):
            c("WATCH", "a")
        self.assertEqual(c("GET", "a"), b"QUEUED")
        self.assertEqual(c("EXEC"), [b"1"])  # WATCH's refusal inside MULTI does not abort it
        c.close()

    def test_a_miss_fetches_every_key_of_the_transaction_in_one_mget(self):
        c = self.proxy.resp()
        self.assertEqual(c("GET", "a"), b"1")  # cached
        calls = lambda name: command_calls(self.redis, name)
        gets, mgets = calls("get"), calls("mget")
        c.send_raw(resp_encode("MULTI") + resp_encode("GET", "a") + resp_encode("MGET", "b", "a") +
                   resp_encode("EXEC"))
        self.assertEqual([c.read_reply() for _ in range(4)], [b"OK", b"QUEUED", b"QUEUED", [b"1", [b"two", b"1"]]])
        # One MGET of all its keys, the cached one too: one snapshot of Redis.
        self.assertEqual((calls("get"), calls("mget")), (gets, mgets + 1))
        # Now all hits: nothing is asked of Redis.
        self.assertEqual(c("MULTI"), b"OK")
        c("GET", "a")
        c("MGET", "b", "a")
        self.assertEqual(c("EXEC"), [b"1", [b"two", b"1"]])
        self.assertEqual((calls("get"), calls("mget")), (gets, mgets + 1))
        c.close()

    def test_a_transaction_larger_than_max_request_size_is_aborted(self):
        proxy = self.start_proxy(resp=True, proxy={"max_request_size": "4k", "max_key_size": "1k"})
        c = proxy.resp()
        self.assertEqual(c("MULTI"), b"OK")
        for _ in range(3):
            self.assertEqual(c("GET", "k" * 1000), b"QUEUED")
        with self.assertRaisesRegex(RedisError, "^ERR transaction too large"):
            c("GET", "k" * 1000)
        with self.assertRaisesRegex(RedisError, "^ERR transaction too large"):
            c("GET", "k" * 1000)
        with self.assertRaisesRegex(RedisError, "^EXECABORT"):
            c("EXEC")
        self.assertEqual(c("GET", "a"), b"1")
        c.close()

    def test_redis_py_pipeline_with_its_default_transaction(self):
        import redis
        r = redis.Redis(port=self.proxy.resp_port, single_connection_client=True)
        self.addCleanup(r.close)
        pipe = r.pipeline()  # transaction=True: MULTI ... EXEC
        pipe.get("a").get("nosuch").mget("a", "b").get("big")
        self.assertEqual(pipe.execute(), [b"1", None, [b"1", b"two"], b"x" * 5000])
        with self.assertRaises(redis.exceptions.ResponseError):
            r.pipeline().get("a").set("a", "3").execute()
        self.assertEqual(r.get("a"), b"1")


def command_calls(redis, name):
    for line in redis("INFO", "commandstats").decode().splitlines():
        if line.startswith("cmdstat_%s:" % name):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


class Resp3Test(ProtocolTestCase):
    def test_hello_3_switches_the_connection_to_resp3(self):
        # Byte for byte as Redis, after HELLO (whose fields name the server): nil is "_".
        for commands in ([("GET", "a"), ("GET", "nosuch"), ("MGET", "a", "nosuch"), ("CLIENT", "GETNAME")],
                         [("MULTI",), ("GET", "nosuch"), ("MGET", "nosuch", "b"), ("EXEC",)],
                         [("HELLO", "2"), ("GET", "nosuch")]):
            ours = exchange(self.proxy.resp_port, [("HELLO", "3")] + commands)
            theirs = exchange(self.redis.port, [("HELLO", "3")] + commands)
            hellos = [i for i, c in enumerate(commands, 1) if c[0] == "HELLO"]
            self.assertEqual([r for i, r in enumerate(ours[1:], 1) if i not in hellos],
                             [r for i, r in enumerate(theirs[1:], 1) if i not in hellos], commands)
            self.assertTrue(ours[0].startswith(b"%7\r\n$6\r\nserver\r\n$11\r\nredis-proxy\r\n"), ours[0])
            self.assertIn(b"$5\r\nproto\r\n:3\r\n", ours[0])

    def test_hello_options_and_refusals(self):
        self.assertSameAsRedis([("HELLO", "4"), ("HELLO", "x"), ("HELLO", "3", "BOGUS"), ("GET", "nosuch")])
        c = self.proxy.resp()
        self.assertEqual(c("HELLO", "2", "AUTH", "default", "anything", "SETNAME", "app")[5], 2)
        self.assertEqual(c("CLIENT", "GETNAME"), b"app")
        with self.assertRaisesRegex(RedisError, "^WRONGPASS"):
            c("HELLO", "3", "AUTH", "someone", "pw")
        self.assertEqual(c("AUTH", "default", "pw"), b"OK")
        self.assertEqual(c("GET", "nosuch"), None)  # still RESP2
        with self.assertRaisesRegex(RedisError, "^ERR Command not allowed inside a transaction"):
            c("MULTI") and c("HELLO", "3")
        with self.assertRaisesRegex(RedisError, "^EXECABORT"):
            c("EXEC")
        c.close()

    def test_redis_cli_dash_3(self):
        # redis-cli -3 says "HELLO 3 failed" on stderr when refused; its output as with Redis.
        for args in (["GET", "nosuch"], ["MGET", "a", "nosuch", "b"], ["--no-raw", "GET", "nosuch"],
                     ["--no-raw", "MGET", "a", "nosuch"]):
            outs = [subprocess.run(["redis-cli", "-3", "-p", str(port)] + args, capture_output=True, timeout=30)
                    for port in (self.proxy.resp_port, self.redis.port)]
            self.assertEqual(outs[0].stderr, b"")
            self.assertEqual(outs[0].stdout, outs[1].stdout, args)

    def test_protocol_is_carried_through_a_reload(self):
        c = self.proxy.resp()
        self.addCleanup(c.close)
        c("HELLO", "3")
        old = worker_pid(c)
        self.proxy.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: not alive(old), what="the old worker gone")
        c.send_raw(resp_encode("GET", "nosuch"))
        self.assertEqual(c.file.readline(), b"_\r\n")
        self.assertNotEqual(worker_pid(c), old)  # the same connection, now the new worker's
