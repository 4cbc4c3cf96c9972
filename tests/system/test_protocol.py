"""Speaking Redis as its clients expect: read-only transactions (MULTI/EXEC), RESP3 (HELLO 3),
INFO sections and DBSIZE. Where Redis itself can answer the same bytes, the proxy's answers are
compared with redis-server's byte for byte."""
import re
import signal
import socket
import subprocess
import time

from harness import (PROXY_BIN, Proxy, ProxyTestCase, RedisError, alive, read_until_closed, resp_encode, wait_until,
                     worker_pid)


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
        # An EXEC that cannot run ends the transaction, saying why.
        self.assertSameAsRedis([("MULTI",), ("GET", "a"), ("EXEC", "x"), ("GET", "a"), ("EXEC",)])

    def test_an_exec_whose_answers_pass_max_client_output_is_refused(self):
        proxy = self.start_proxy(resp=True, proxy={"max_client_output": "64k"})
        c = proxy.resp()
        self.addCleanup(c.close)
        c.send_raw(resp_encode("MULTI") + resp_encode("INFO") * 200 + resp_encode("GET", "a") + resp_encode("EXEC"))
        self.assertEqual([c.read_reply() for _ in range(202)], [b"OK"] + [b"QUEUED"] * 201)
        with self.assertRaisesRegex(RedisError, "^ERR EXEC's answers pass max_client_output"):
            c.read_reply()
        self.assertEqual(c("GET", "a"), b"1")  # the connection goes on
        # One cached key repeated: refused before its answer is built (it would be 1 MB here).
        self.redis("SET", "kb", "x" * 1000)
        self.assertEqual(len(c("GET", "kb")), 1000)
        c.send_raw(resp_encode("MULTI") + resp_encode("MGET", *["kb"] * 1000) + resp_encode("EXEC"))
        self.assertEqual([c.read_reply() for _ in range(2)], [b"OK", b"QUEUED"])
        with self.assertRaisesRegex(RedisError, "^ERR EXEC's answers pass max_client_output"):
            c.read_reply()
        self.assertEqual(c("GET", "a"), b"1")

    def test_a_snapshot_too_large_for_max_reply_size_fails_rather_than_splits(self):
        # Two values of 800 bytes: each fits max_reply_size (1k), their MGET does not. A plain
        # MGET reads them apart; a transaction's snapshot cannot, and answers them as too large.
        proxy = self.start_proxy(resp=True, redis={"max_reply_size": "1k"}, cache={"max_value_size": "1k"})
        self.redis("SET", "x", "1" * 800)
        self.redis("SET", "y", "2" * 800)
        c = proxy.resp()
        self.addCleanup(c.close)
        c.send_raw(resp_encode("MULTI") + resp_encode("GET", "x") + resp_encode("GET", "y") + resp_encode("EXEC"))
        replies = [c.file.readline() for _ in range(4)]
        self.assertEqual(replies[3], b"*2\r\n")
        for _ in range(2):
            self.assertTrue(c.file.readline().startswith(b"-ERR value too large"))
        self.assertEqual(c("MGET", "x", "y"), [b"1" * 800, b"2" * 800])

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
        r = redis.Redis(host="127.0.0.1", port=self.proxy.resp_port, single_connection_client=True)
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
                         [("HELLO", "2"), ("GET", "nosuch")],
                         [("HELLO", "2"), ("GET", "nosuch"), ("HELLO", "3"), ("GET", "nosuch")]):
            ours = exchange(self.proxy.resp_port, [("HELLO", "3")] + commands)
            theirs = exchange(self.redis.port, [("HELLO", "3")] + commands)
            hellos = [i for i, c in enumerate(commands, 1) if c[0] == "HELLO"]
            self.assertEqual([r for i, r in enumerate(ours[1:], 1) if i not in hellos],
                             [r for i, r in enumerate(theirs[1:], 1) if i not in hellos], commands)
            self.assertTrue(ours[0].startswith(b"%7\r\n$6\r\nserver\r\n$11\r\nredis-proxy\r\n"), ours[0])
            self.assertIn(b"$5\r\nproto\r\n:3\r\n", ours[0])

    def test_hello_options_and_refusals(self):
        self.assertSameAsRedis([("HELLO", "4"), ("HELLO", "x"), ("HELLO", "3", "BOGUS"), ("GET", "nosuch")])
        # Integers as Redis reads them: no spaces, no '+', no leading zeros, no "-0".
        self.assertSameAsRedis([("HELLO", " 3"), ("HELLO", "03"), ("HELLO", "+3"), ("SELECT", "00"),
                                ("SELECT", "-0"), ("SELECT", " 0"), ("SELECT", "0")])
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

    def test_maps_and_verbatim_strings_in_resp3(self):
        replies = exchange(self.proxy.resp_port, [("HELLO", "3"), ("CONFIG", "GET", "appendonly"),
                                                  ("CONFIG", "GET", "nosuch"), ("INFO", "replication")])
        self.assertEqual(replies[1], b"%1\r\n$10\r\nappendonly\r\n$2\r\nno\r\n")
        self.assertEqual(replies[2], b"%0\r\n")
        self.assertTrue(replies[3].startswith(b"=") and b"\r\ntxt:# Replication\r\n" in replies[3], replies[3])
        ours = exchange(self.proxy.resp_port, [("HELLO", "3"), ("CONFIG", "GET", "appendonly")])
        theirs = exchange(self.redis.port, [("HELLO", "3"), ("CONFIG", "GET", "appendonly")])
        self.assertEqual(ours[1], theirs[1])

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


def info_fields(text):
    return dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line and not line.startswith("#"))


def info_titles(text):
    return [line for line in text.split("\r\n") if line.startswith("# ")]


class InfoTest(ProtocolTestCase):
    def test_info_sections_and_the_fields_monitoring_tools_read(self):
        c = self.proxy.resp()
        self.addCleanup(c.close)
        self.assertEqual(c("MGET", "a", "b", "nosuch"), [b"1", b"two", None])
        self.assertEqual(c("GET", "a"), b"1")
        info = c("INFO").decode()
        self.assertEqual(info_titles(info), ["# Server", "# Clients", "# Memory", "# Persistence", "# Stats",
                                             "# Replication", "# Keyspace"])
        self.assertEqual(info, info.rstrip("\r\n") + "\r\n")  # as Redis: no blank line at the end
        f = info_fields(info)
        self.assertEqual(f["connected_clients"], "1")
        self.assertEqual(f["blocked_clients"], "0")
        self.assertEqual((f["keyspace_hits"], f["keyspace_misses"]), ("1", "3"))
        self.assertGreaterEqual(int(f["total_commands_processed"]), 3)
        self.assertGreaterEqual(int(f["total_connections_received"]), 1)
        self.assertGreater(int(f["used_memory"]), 0)
        self.assertRegex(f["used_memory_human"], r"^\d+(\.\d\d[KMGTP]|B)$")
        # The cache's keys: a and b (nosuch is cached as not found too, with cache_not_found).
        keys = int(c("DBSIZE"))
        self.assertIn(keys, (2, 3))
        m = re.match(r"keys=(\d+),expires=(\d+),avg_ttl=(\d+)$", f["db0"])
        self.assertIsNotNone(m, f["db0"])
        self.assertEqual((int(m.group(1)), int(m.group(2))), (keys, keys))
        # The TTL's mean time left, in ms (published by each worker every 100 ms).
        avg_ttl = lambda: int(info_fields(c("INFO", "keyspace").decode())["db0"].split("avg_ttl=")[1])
        ttl_ms = 60000
        wait_until(lambda: 0 < avg_ttl() <= ttl_ms, what="avg_ttl within the TTL")
        # Only the sections asked for, in Redis's order, any case; unknown ones add nothing.
        self.assertEqual(info_titles(c("INFO", "stats").decode()), ["# Stats"])
        self.assertEqual(info_titles(c("INFO", "keyspace", "CLIENTS").decode()), ["# Clients", "# Keyspace"])
        self.assertEqual(c("INFO", "nosuch"), b"")
        self.assertEqual(info_titles(c("INFO", "all").decode()), info_titles(info))

    def test_instantaneous_ops_per_sec_follows_the_load(self):
        c = self.proxy.resp()
        self.addCleanup(c.close)
        ops = lambda: int(info_fields(c("INFO", "stats").decode())["instantaneous_ops_per_sec"])

        def busy():
            c.send_raw(resp_encode("PING") * 500)
            for _ in range(500):
                c.read_reply()
            return ops() > 100
        wait_until(busy, what="instantaneous_ops_per_sec above 100 under load")

        def idle():
            time.sleep(0.2)  # the pace of the polling: its own INFO commands are counted too
            return ops() < 20
        wait_until(idle, what="instantaneous_ops_per_sec back near 0")

    def test_redis_cli_stat_shows_real_numbers(self):
        c = self.proxy.resp()
        self.addCleanup(c.close)
        c("MGET", "a", "b")
        # The keyspace line is published by the worker every 100 ms: --stat starts once it is.
        wait_until(lambda: "keys=2," in c("INFO", "keyspace").decode(), what="the keyspace line counts a and b")
        stat = subprocess.Popen(["redis-cli", "-p", str(self.proxy.resp_port), "--stat", "-i", "0.2"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(stat.wait, 10)
        self.addCleanup(stat.kill)
        rows = []
        while len(rows) < 4:
            line = stat.stdout.readline().decode()
            self.assertTrue(line, "redis-cli --stat ended")
            if line.split() and line.split()[0].isdigit():
                rows.append(line.split())
                c("GET", "a")  # a command between samples: requests move
        for row in rows:
            keys, mem, clients, blocked, requests = row[:5]
            self.assertEqual(keys, "2")
            self.assertRegex(mem, r"^\d+(\.\d\d)?[BKMGTP]$")
            self.assertEqual(blocked, "0")
            self.assertGreaterEqual(int(clients), 1)
            self.assertGreater(int(requests), 0)
        self.assertGreater(int(rows[-1][4]), int(rows[0][4]))


def curl(*args):
    out = subprocess.run(["curl", "-s", "-i"] + list(args), capture_output=True, timeout=30).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return int(lines[0].split()[1]), headers, body


class HttpProtocolTest(ProxyTestCase):
    def test_an_absolute_form_target_is_served_and_what_follows_it_too(self):
        proxy = self.start_proxy()
        self.redis("SET", "k", "v")
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(b"GET http://example.com/k HTTP/1.1\r\nHost: example.com\r\n\r\n"
                      b"GET /k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answers = read_until_closed(s)
        self.assertEqual(answers.count(b"HTTP/1.1 200 OK\r\n"), 2, answers)
        self.assertTrue(answers.endswith(b"\r\n\r\nv"), answers)

    def test_http_1_0_answers_carry_date_and_content_length(self):
        proxy = self.start_proxy()
        self.redis("SET", "k", "value")
        for url in ("/k", "/nosuch"):
            code, headers, body = curl("--http1.0", "http://127.0.0.1:%d%s" % (proxy.port, url))
            self.assertIn("date", headers)
            self.assertEqual(int(headers["content-length"]), len(body))

    def test_entries_with_etags_at_every_size_near_the_slabs_edge_are_served_and_freed(self):
        # An entry's digest was allocated but not freed: at 449-456 bytes of key and value
        # every eviction handed a malloc block to the slab, and workers crashed or served
        # values with a heap pointer in them.
        proxy = self.start_proxy(cache={"capacity": "1"}, http={"etag": "on"})
        conn = proxy.connection()
        self.addCleanup(conn.close)
        for size in range(440, 470):
            values = {k: bytes([65 + (size + i) % 26]) * size for i, k in enumerate("ab")}
            for k, v in values.items():
                self.redis("SET", k, v)
            for _ in range(2):
                for k, v in values.items():  # capacity 1: each read evicts the other key
                    r = proxy.get(k, conn)
                    self.assertEqual((r.status, r.body), (200, v), (size, k))
        self.assertNotIn("killed by signal", proxy.log())

    def test_etag_and_if_none_match(self):
        proxy = self.start_proxy(proxy={"workers": "2"}, http={"etag": "on"})
        self.redis("SET", "k", "value")
        url = "http://127.0.0.1:%d/k" % proxy.port
        # The same value has the same ETag from whichever worker answers (each has a cache of
        # its own: each misses once), hit or miss. New connections reach both workers.
        answers = []
        for _ in range(40):
            conn = proxy.connection()
            r = proxy.request("GET", "/k", conn)
            conn.close()
            answers.append((r.status, r.header("ETag"), r.body, r.header("X-Cache")))
        etag = answers[0][1]
        self.assertRegex(etag, r'^"[0-9a-f]{16}"$')
        self.assertEqual({a[:3] for a in answers}, {(200, etag, b"value")})
        self.assertEqual([a[3] for a in answers].count("MISS"), 2)
        for inm in (etag, "W/" + etag, '"nope", ' + etag, "*"):
            for version in ([], ["--http1.0"]):
                code, headers, body = curl(*version, "-H", "If-None-Match: " + inm, url)
                self.assertEqual((code, body, headers["etag"]), (304, b"", etag), (inm, version))
                self.assertNotIn("content-length", headers)
        code, headers, body = curl("-I", "-H", "If-None-Match: " + etag, url)
        self.assertEqual(code, 304)
        code, headers, body = curl("-H", 'If-None-Match: "nope"', url)
        self.assertEqual((code, body), (200, b"value"))
        # A 304 says nothing of a body it does not send; an If-None-Match list may span lines.
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(b'GET /k HTTP/1.1\r\nHost: x\r\nIf-None-Match: "a"\r\nIf-None-Match: "b", ' +
                      etag.encode() + b"\r\nConnection: close\r\n\r\n")
            answer = read_until_closed(s)
        self.assertTrue(answer.startswith(b"HTTP/1.1 304 Not Modified\r\n"), answer)
        self.assertNotIn(b"Content-Type", answer)
        self.assertNotIn(b"X-Cache", answer)
        # Across a reload the same value keeps its ETag (the key is the master's); a new value
        # has a new one. A restart makes a new key: every ETag changes, so no one who saw the
        # old ones can have prepared a collision (a client refetches once).
        proxy.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "serving; stopping" in proxy.log(), what="the reload")
        self.assertEqual(curl(url)[1]["etag"], etag)
        self.redis("SET", "k", "other")
        proxy.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: proxy.log().count("serving; stopping") == 2, what="the second reload")
        code, headers, body = curl("-H", "If-None-Match: " + etag, url)
        self.assertEqual((code, body), (200, b"other"))
        self.assertNotEqual(headers["etag"], etag)
        other = headers["etag"]
        proxy.stop()
        proxy.start()
        wait_until(lambda: proxy.admin("/readyz")[0] == 200, what="the restarted proxy ready")
        self.assertNotEqual(curl(url)[1]["etag"], other)

    def test_no_etag_unless_asked_for(self):
        proxy = self.start_proxy()
        self.redis("SET", "k", "value")
        url = "http://127.0.0.1:%d/k" % proxy.port
        code, headers, body = curl("-H", "If-None-Match: *", url)
        self.assertEqual((code, body), (200, b"value"))
        self.assertNotIn("etag", headers)
        self.assertNotIn("cache-control", headers)
        self.assertNotIn("age", headers)

    def test_cache_control_and_age(self):
        proxy = self.start_proxy(http={"cache_control": "public, max-age=30"})
        self.redis("SET", "k", "value")
        url = "http://127.0.0.1:%d/k" % proxy.port
        code, headers, body = curl(url)
        self.assertEqual((headers["cache-control"], headers["age"], headers["x-cache"]),
                         ("public, max-age=30", "0", "MISS"))
        # Age: seconds since the proxy read the value from Redis.
        wait_until(lambda: int(curl(url)[1]["age"]) >= 1, what="Age of a hit past 1 s")
        self.assertEqual(curl(url)[1]["x-cache"], "HIT")

    def test_settings_that_would_break_a_header_are_refused(self):
        proxy = Proxy(self.workdir, {"redis": {"address": "127.0.0.1:%d" % self.redis.port},
                                     "http": {"cache_control": "max-age=1\x01"}})
        proxy.write_config()
        out = subprocess.run([PROXY_BIN, "-t", "-c", proxy.config_path], capture_output=True, timeout=30)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn(b"cache_control in [http] must be printable", out.stderr)
