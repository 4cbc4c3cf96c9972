"""RESP front: real Redis clients read through the proxy's cache."""
import os
import signal
import socket
import subprocess
import time

from harness import (PIPELINE_BIN, ProxyTestCase, RedisClient, RedisError, read_until_closed, resp_encode,
                     resp_read, wait_until, worker_pid)


def redis_cli(port, *args):
    p = subprocess.run(["redis-cli", "-p", str(port)] + list(args), capture_output=True, timeout=30)
    return p.stdout.decode()


def command_calls(redis, name):
    for line in redis("INFO", "commandstats").decode().splitlines():
        if line.startswith("cmdstat_%s:" % name):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def raw_reply(f):
    """One reply's bytes as they came (a simple line, an error, or a bulk string)."""
    line = f.readline()
    if line.startswith(b"$") and int(line[1:]) >= 0:
        return line + f.read(int(line[1:]) + 2)
    return line


class RespTestCase(ProxyTestCase):
    def start(self, **sections):
        self.proxy = self.start_proxy(resp=True, **sections)
        self.client = self.proxy.resp()
        self.addCleanup(self.client.close)
        return self.proxy


class RespGetTest(RespTestCase):
    def setUp(self):
        super().setUp()
        self.start()

    def test_redis_cli_get(self):
        self.redis("SET", "user:42", "alice")
        self.assertEqual(redis_cli(self.proxy.resp_port, "GET", "user:42"), "alice\n")
        self.assertEqual(redis_cli(self.proxy.resp_port, "GET", "absent"), "\n")

    def test_get_is_cached(self):
        self.redis("SET", "k", "old")
        self.assertEqual(self.client("GET", "k"), b"old")
        self.redis("SET", "k", "new")
        self.assertEqual(self.client("GET", "k"), b"old")
        self.assertEqual(command_calls(self.redis, "get"), 1)

    def test_missing_key_is_null_and_not_cached(self):
        self.assertIsNone(self.client("GET", "nope"))
        self.redis("SET", "nope", "here")
        self.assertEqual(self.client("GET", "nope"), b"here")

    def test_binary_key_and_value(self):
        key, value = b"k\x00\r\n\xff", bytes(range(256)) * 4
        self.redis("SET", key, value)
        self.assertEqual(self.client("GET", key), value)
        self.assertEqual(self.client("GET", key), value)

    def test_large_value(self):
        value = os.urandom(1024 * 1024)
        self.redis("SET", "big", value)
        self.assertEqual(self.client("GET", "big"), value)
        self.assertEqual(self.client("GET", "big"), value)

    def test_mget_mixes_hits_misses_and_missing_keys_with_one_redis_mget(self):
        for k in ("a", "b", "c"):
            self.redis("SET", k, k.upper())
        self.assertEqual(self.client("GET", "a"), b"A")  # a is now cached
        gets, mgets = command_calls(self.redis, "get"), command_calls(self.redis, "mget")
        self.assertEqual(self.client("MGET", "a", "b", "nope", "c", "a"), [b"A", b"B", None, b"C", b"A"])
        self.assertEqual(command_calls(self.redis, "mget"), mgets + 1)  # the misses, together
        self.assertEqual(command_calls(self.redis, "get"), gets)
        self.redis("SET", "b", "changed")
        self.assertEqual(self.client("MGET", "b", "c"), [b"B", b"C"])  # now all hits
        self.assertEqual(command_calls(self.redis, "mget"), mgets + 1)
        self.assertEqual(self.client("MGET", "c"), [b"C"])  # one key is still an array

    def test_wrongtype_is_redis_error_and_connection_stays_open(self):
        self.redis("RPUSH", "list", "x")
        with self.assertRaisesRegex(RedisError, "^WRONGTYPE"):
            self.client("GET", "list")
        self.assertEqual(self.client("PING"), b"PONG")

    def test_get_and_mget_of_a_key_of_another_type_answer_as_redis_does(self):
        # MGET answers nil for a list where GET answers WRONGTYPE: neither is the other's
        # answer, cached or joined in flight, whichever comes first.
        self.redis("RPUSH", "L", "x")
        for _ in range(2):
            with self.assertRaisesRegex(RedisError, "^WRONGTYPE"):
                self.client("GET", "L")
            self.assertEqual(self.client("MGET", "L", "L"), [None, None])
        self.assertEqual(self.proxy.get("L").status, 409)
        for first, second, key in (("GET", "MGET", "l2"), ("MGET", "GET", "l3")):
            self.redis("RPUSH", key, "x")
            self.client.send_raw(resp_encode(first, key) + resp_encode(second, key))
            answers = []
            for _ in range(2):
                try:
                    answers.append(self.client.read_reply())
                except RedisError as e:
                    answers.append(str(e).split()[0])
            expected = {"GET": "WRONGTYPE", "MGET": [None]}
            self.assertEqual(answers, [expected[first], expected[second]], (first, second))
        # An absent key is still cached as such (cache_not_found) by either command.
        self.assertEqual(self.client("MGET", "nosuch"), [None])
        self.assertIsNone(self.client("GET", "nosuch"))

    def test_inline_commands(self):
        self.redis("SET", "k", "v")
        self.client.send_raw(b"GET k\r\nPING\r\n\r\nECHO hi\n")
        self.assertEqual(self.client.read_reply(), b"v")
        self.assertEqual(self.client.read_reply(), b"PONG")
        self.assertEqual(self.client.read_reply(), b"hi")

    def test_inline_quoting_is_split_as_redis_splits_it(self):
        # Byte for byte against redis-server itself: the same inline lines, the same answers.
        self.start()
        self.redis("SET", "a b", "spaced")
        self.redis("SET", "A\n", "escaped")
        self.redis("SET", "it's", "quoted")
        lines = [b'GET "a b"\r\n', b'GET "\\x41\\n"\r\n', b"GET 'it\\'s'\r\n", b'ECHO "x\\ty"\r\n',
                 b'GET "unbalanced\r\n']
        for line in lines:
            answers = []
            for port in (self.proxy.resp_port, self.redis.port):
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall(line)
                    f = s.makefile("rb")
                    answer = raw_reply(f)
                    if answer.startswith(b"-ERR Protocol error"):
                        answer += b" closed" if f.read(1) == b"" else b" open"
                    answers.append(answer)
                    f.close()
            self.assertEqual(answers[0], answers[1], line)

    def test_connection_commands(self):
        c = self.client
        self.assertEqual(c("PING"), b"PONG")
        self.assertEqual(c("PING", "hello"), b"hello")
        self.assertEqual(c("ECHO", "x y"), b"x y")
        self.assertEqual(c("SELECT", "0"), b"OK")
        with self.assertRaisesRegex(RedisError, "serves database 0 only"):
            c("SELECT", "1")
        self.assertIsNone(c("CLIENT", "GETNAME"))
        self.assertEqual(c("CLIENT", "SETNAME", "app"), b"OK")
        self.assertEqual(c("CLIENT", "GETNAME"), b"app")
        self.assertEqual(c("CLIENT", "SETINFO", "lib-name", "x"), b"OK")
        self.assertEqual(c("CLIENT", "SETINFO", "LIB-VER", "1.2.3"), b"OK")
        with self.assertRaisesRegex(RedisError, "^ERR Unrecognized option 'foo'$"):
            c("CLIENT", "SETINFO", "foo", "x")
        with self.assertRaisesRegex(RedisError, "^ERR lib-name cannot contain spaces, newlines or special characters"):
            c("CLIENT", "SETINFO", "lib-name", "a b")
        # CLIENT SETNAME's rules are Redis's: asked of both, the same answers and the same name after.
        direct = RedisClient(self.redis.port)
        for name in ["app", "with space", "new\nline", "tab\t", "ok-!~", "caf\u00e9", ""]:
            outcomes = []
            for conn in (direct, c):
                try:
                    outcomes.append((conn("CLIENT", "SETNAME", name), conn("CLIENT", "GETNAME")))
                except RedisError as e:
                    outcomes.append((str(e), conn("CLIENT", "GETNAME")))
            self.assertEqual(outcomes[0], outcomes[1], repr(name))
        direct.close()
        with self.assertRaisesRegex(RedisError, "^NOPROTO"):
            c("HELLO", "4")
        hello = c("HELLO", "2")
        fields = dict(zip(hello[0::2], hello[1::2]))
        self.assertEqual(fields[b"proto"], 2)
        self.assertEqual(fields[b"server"], b"redis-proxy")
        self.assertEqual(c("COMMAND"), [])
        self.assertEqual(c("COMMAND", "DOCS"), [])
        self.assertEqual(c("CONFIG", "GET", "maxmemory"), [])
        self.assertEqual(c("CONFIG", "GET", "save"), [b"save", b""])

    def test_info_reports_cache_numbers(self):
        self.redis("SET", "k", "v")
        self.client("GET", "k")
        self.client("GET", "k")
        info = self.client("INFO").decode()
        self.assertIn("# Server", info)
        self.assertIn("# Stats", info)
        self.assertIn("cache_hits:1\r\n", info)
        self.assertIn("cache_misses:1\r\n", info)
        self.assertIn("cache_keys:1\r\n", info)

    def test_info_sums_every_worker_and_keeps_counts_of_a_worker_that_died(self):
        proxy = self.start_proxy(resp=True, proxy={"workers": "2"})
        self.redis("SET", "k", "v")
        clients = [proxy.resp() for _ in range(16)]  # spread over both workers by SO_REUSEPORT
        serving = set()
        for c in clients:
            serving.add(worker_pid(c))
            self.assertEqual(c("GET", "k"), b"v")
            c.close()
        def info(name):
            c = proxy.resp()
            try:
                for line in c("INFO").decode().splitlines():
                    if line.startswith(name + ":"):
                        return int(line.split(":")[1])
            finally:
                c.close()
        self.assertEqual(info("workers"), 2)
        self.assertEqual(info("cache_hits") + info("cache_misses"), 16)
        self.assertEqual(info("cache_misses"), len(serving))  # one per worker that got a client: own caches
        os.kill(proxy.worker_pids()[0], signal.SIGKILL)
        wait_until(lambda: proxy.log().count("worker 0 ready") == 2, what="worker 0 respawned")
        self.assertEqual(info("cache_hits") + info("cache_misses"), 16)  # counters never go back

    def test_unknown_and_write_commands_are_refused_and_connection_stays_open(self):
        c = self.client
        with self.assertRaises(RedisError) as e:
            c("FOO", "bar", "baz")
        self.assertEqual(str(e.exception), "ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' ")
        with self.assertRaisesRegex(RedisError, "^READONLY"):
            c("SET", "k", "v")
        with self.assertRaisesRegex(RedisError, "^READONLY"):
            c("del", "k")
        with self.assertRaisesRegex(RedisError, "^ERR wrong number of arguments for 'get' command$"):
            c("GET")
        with self.assertRaisesRegex(RedisError, "^ERR wrong number of arguments for 'get' command$"):
            c("GET", "a", "b")
        self.assertIsNone(self.redis("GET", "k"))  # nothing was written
        self.assertEqual(c("PING"), b"PONG")

    def test_quit_answers_ok_and_closes(self):
        self.assertEqual(self.client("QUIT"), b"OK")
        self.assertTrue(self.client.at_eof())

    def test_half_closed_client_still_gets_its_answers(self):
        self.redis("SET", "k", "v")
        with socket.create_connection(("127.0.0.1", self.proxy.resp_port), timeout=10) as s:
            s.sendall(resp_encode("GET", "k") + resp_encode("GET", "other"))
            s.shutdown(socket.SHUT_WR)
            data = read_until_closed(s)
        self.assertEqual(data, b"$1\r\nv\r\n$-1\r\n")


class RespPipelineTest(RespTestCase):
    def test_hiredis_pipeline_of_1000_gets_mixing_hits_and_misses_in_order(self):
        self.start()
        keys = ["key:%d" % i for i in range(1000)]
        for i, k in enumerate(keys):
            if i % 3 != 2:  # every third key does not exist
                self.redis("SET", k, "value-%d" % i)
        for k in keys[::4]:  # a quarter is cached before: hits among the misses
            self.client("GET", k)
        out = subprocess.run([PIPELINE_BIN, str(self.proxy.resp_port)], input="\n".join(keys) + "\n",
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.splitlines()
        self.assertEqual(len(lines), 1000)
        for i, line in enumerate(lines):
            expected = "N" if i % 3 == 2 else "V " + ("value-%d" % i).encode().hex()
            self.assertEqual(line, expected, "reply %d" % i)

    def test_deep_pipeline_without_reading_is_answered_in_full_and_in_order(self):
        self.start()
        self.redis("SET", "hit", "h")
        self.client("GET", "hit")
        n = 20000
        payload = b"".join(resp_encode("GET", "hit" if i % 2 else "miss:%d" % i) for i in range(n))
        self.client.send_raw(payload)  # 20,000 commands before reading any answer
        for i in range(n):
            self.assertEqual(self.client.read_reply(), b"h" if i % 2 else None, i)

    def test_deep_pipeline_of_hits_only_resumes_after_backpressure(self):
        # Only hits: every answer is made while reading, none arrives later from Redis, so the
        # commands held back by backpressure must be resumed and answered by the write path.
        # 150 GETs of a 100 KiB value arrive in one read (4 KiB) but make 15 MiB of answers: the
        # proxy stops at its 1 MiB bound with the rest already in its buffer and nothing more to
        # read, so only the write path can resume them. The client reads nothing until it has
        # sent everything, through a small receive buffer.
        self.start()
        value = os.urandom(100 * 1024)
        self.redis("SET", "hit", value)
        self.client("GET", "hit")
        n = 150
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.settimeout(20)
        s.connect(("127.0.0.1", self.proxy.resp_port))
        self.addCleanup(s.close)
        s.sendall(resp_encode("GET", "hit") * n)
        f = s.makefile("rb")
        for i in range(n):
            self.assertEqual(resp_read(f), value, i)
        s.sendall(resp_encode("PING"))
        self.assertEqual(resp_read(f), b"PONG")

    def test_redis_benchmark_reports_no_errors(self):
        self.start(proxy={"workers": "2"})
        for pipeline in ("1", "16"):
            p = subprocess.run(["redis-benchmark", "-p", str(self.proxy.resp_port), "-t", "get",
                                "-n", "100000", "-c", "50", "-P", pipeline, "-q"],
                               capture_output=True, text=True, timeout=120)
            output = p.stdout + p.stderr
            self.assertEqual(p.returncode, 0, output)
            self.assertIn("GET:", output)
            # redis-benchmark 7 stops at the first error reply with a non-zero status
            self.assertNotIn("rror", output)
            self.assertNotIn("WARNING", output)


class RespCacheSemanticsTest(RespTestCase):
    def test_ttl_as_over_http(self):
        self.start(cache={"ttl": "500ms"})
        self.redis("SET", "k", "v1")
        inserted = time.monotonic()
        self.assertEqual(self.client("GET", "k"), b"v1")
        self.redis("SET", "k", "v2")
        self.assertEqual(self.client("GET", "k"), b"v1")
        time.sleep(max(0, inserted + 0.55 - time.monotonic()))
        self.assertEqual(self.client("GET", "k"), b"v2")

    def test_lru_as_over_http(self):
        self.start(cache={"capacity": "3"})
        for k in "abcd":
            self.redis("SET", k, k + "1")
        for k in "abc":
            self.client("GET", k)
        self.client("GET", "a")  # b is now least recently read
        self.client("GET", "d")  # evicts b
        for k in "abcd":
            self.redis("SET", k, k + "2")
        self.assertEqual(self.client("MGET", "a", "c", "d"), [b"a1", b"c1", b"d1"])
        self.assertEqual(self.client("GET", "b"), b"b2")

    def test_http_and_resp_share_one_cache(self):
        self.start()
        self.redis("SET", "k", "from redis")
        self.assertEqual(self.proxy.get("k").header("X-Cache"), "MISS")
        self.redis("SET", "k", "changed")
        self.assertEqual(self.client("GET", "k"), b"from redis")  # cached by the HTTP GET
        self.redis("SET", "j", "v")
        self.assertEqual(self.client("GET", "j"), b"v")
        self.assertHit(self.proxy.get("j"), b"v")  # cached by the RESP GET


class RespRobustnessTest(RespTestCase):
    def assert_closed_with(self, payload, error, **sections):
        other = self.proxy.resp()
        self.addCleanup(other.close)
        bad = self.proxy.resp()
        self.addCleanup(bad.close)
        bad.send_raw(payload)
        with self.assertRaises(RedisError) as e:
            bad.read_reply()
        self.assertIn(error, str(e.exception))
        self.assertTrue(bad.at_eof())
        self.assertEqual(other("PING"), b"PONG")  # other clients are unaffected
        self.assertEqual(self.client("PING"), b"PONG")

    def test_malformed_input_closes_only_that_client(self):
        self.start()
        self.assert_closed_with(b"*1\r\n:1\r\n", "Protocol error: expected '$'")
        self.assert_closed_with(b"*x\r\n", "Protocol error: invalid multibulk length")
        self.assert_closed_with(b"*1\r\n$3\r\nGETxx", "Protocol error: bulk not terminated by CRLF")

    def test_oversize_key_and_too_many_arguments(self):
        self.start(proxy={"max_key_size": "100", "resp_max_args": "10"})
        self.assert_closed_with(b"*2\r\n$3\r\nGET\r\n$101\r\n", "longer than max_key_size")
        self.assert_closed_with(b"*11\r\n", "Protocol error: invalid multibulk length")
        self.assertEqual(len(self.client("MGET", *["k%d" % i for i in range(9)])), 9)

    def test_answers_before_a_protocol_error_are_still_delivered_in_order(self):
        self.start()
        self.redis("SET", "k", "v")
        c = self.proxy.resp()
        self.addCleanup(c.close)
        c.send_raw(resp_encode("GET", "k") + resp_encode("PING") + b"*1\r\n:x\r\n")
        self.assertEqual(c.read_reply(), b"v")
        self.assertEqual(c.read_reply(), b"PONG")
        with self.assertRaisesRegex(RedisError, "Protocol error"):
            c.read_reply()
        self.assertTrue(c.at_eof())

    def test_redis_down_is_an_error_reply_and_hits_are_served(self):
        self.start()
        self.redis("SET", "hot", "cached")
        self.assertEqual(self.client("GET", "hot"), b"cached")
        self.redis.stop()
        with self.assertRaisesRegex(RedisError, "^BACKENDDOWN"):
            self.client("GET", "cold")
        with self.assertRaisesRegex(RedisError, "^BACKENDDOWN"):
            self.client("MGET", "hot", "cold")
        self.assertEqual(self.client("GET", "hot"), b"cached")
        self.assertEqual(self.client("MGET", "hot"), [b"cached"])
        self.assertEqual(self.client("MGET", "hot", "hot"), [b"cached", b"cached"])

    def test_slow_redis_is_a_timeout_error(self):
        self.start(redis={"command_timeout": "300ms"})
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            with self.assertRaisesRegex(RedisError, "^BACKENDTIMEOUT"):
                self.client("GET", "cold")
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        self.redis("SET", "cold", "now")
        wait_until(lambda: self.try_get("cold") == b"now", what="recovery")

    def try_get(self, key):
        try:
            return self.client("GET", key)
        except RedisError:
            return None

    def test_clients_leaving_with_answers_pending_do_not_crash_the_worker(self):
        self.start(redis={"command_timeout": "5s"})
        pid = self.proxy.worker_pids()[0]
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            for i in range(20):
                c = RedisClient(self.proxy.resp_port)
                c.send_raw(resp_encode("GET", "gone:%d" % i) + resp_encode("PING") +
                           resp_encode("MGET", "x:%d" % i, "y"))
                c.close()
            self.assertEqual(self.client("PING"), b"PONG")
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        wait_until(lambda: command_calls(self.redis, "mget") >= 20, what="abandoned commands answered")
        self.redis("SET", "after", "ok")
        self.assertEqual(self.client("GET", "after"), b"ok")
        self.assertEqual(self.proxy.worker_pids()[0], pid)

    def test_idle_client_is_closed_after_client_timeout(self):
        self.start(proxy={"client_timeout": "1s"})
        started = time.monotonic()
        self.assertEqual(self.client("PING"), b"PONG")
        self.assertTrue(self.client.at_eof())
        self.assertGreater(time.monotonic() - started, 0.8)

    def test_max_clients_is_one_budget_across_both_fronts(self):
        self.start(proxy={"max_clients": "2"})  # self.client holds one slot
        self.redis("SET", "k", "v")
        http = self.proxy.connection()
        self.addCleanup(http.close)
        self.assertEqual(self.proxy.get("k", http).status, 200)  # the second slot
        waiting = socket.create_connection(("127.0.0.1", self.proxy.resp_port), timeout=10)
        self.addCleanup(waiting.close)
        waiting.sendall(resp_encode("PING"))
        waiting.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            waiting.recv(100)
        http.close()
        waiting.settimeout(10)
        self.assertEqual(waiting.recv(100), b"+PONG\r\n")

    def test_resp_listen_equal_to_listen_is_refused(self):
        proxy = self.start_proxy(wait=False)
        proxy.stop()
        port = proxy.port
        from harness import Proxy
        p = Proxy(self.workdir, {"proxy": {"listen": "127.0.0.1:%d" % port,
                                           "resp_listen": "127.0.0.1:%d" % port},
                                 "redis": {"address": "127.0.0.1:%d" % self.redis.port}})
        p.write_config()
        from harness import PROXY_BIN
        out = subprocess.run([PROXY_BIN, "-c", p.config_path], capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 78)  # EX_CONFIG
        self.assertIn(":4: resp_listen in [proxy] (127.0.0.1:%d) and listen (127.0.0.1:%d) cannot share a port"
                      % (port, port), out.stderr)
