"""HTTP front: cached GET, status codes, headers, keys and values as docs/http.md documents them."""
import os
import socket
import time

from harness import ProxyTestCase, quote_key, read_until_closed


class HttpGetTest(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.proxy = self.start_proxy(cache={"ttl": "60s"})

    def test_miss_then_hit(self):
        self.redis("SET", "user:42", "alice")
        r = self.proxy.get("user:42")
        self.assertMiss(r, b"alice")
        self.assertEqual(r.header("Content-Type"), "application/octet-stream")
        self.assertEqual(r.header("Content-Length"), "5")
        self.assertHit(self.proxy.get("user:42"), b"alice")

    def test_cached_value_is_served_after_redis_changes(self):
        self.redis("SET", "k", "old")
        self.assertMiss(self.proxy.get("k"), b"old")
        self.redis("SET", "k", "new")
        self.assertHit(self.proxy.get("k"), b"old")
        self.redis("DEL", "k")
        self.assertHit(self.proxy.get("k"), b"old")

    def test_missing_key_is_404_and_not_cached(self):
        r = self.proxy.get("nope")
        self.assertEqual(r.status, 404)
        self.redis("SET", "nope", "now here")
        self.assertMiss(self.proxy.get("nope"), b"now here")

    def test_empty_key_is_400(self):
        self.assertEqual(self.proxy.request("GET", "/").status, 400)
        self.assertEqual(self.proxy.request("GET", "/?a=b").status, 400)

    def test_bad_percent_encoding_is_400(self):
        for path in ("/a%zz", "/a%4", "/a%"):
            self.assertEqual(self.proxy.request("GET", path).status, 400, path)

    def test_other_methods_are_405_with_allow(self):
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            r = self.proxy.request(method, "/k")
            self.assertEqual(r.status, 405, method)
            self.assertEqual(r.header("Allow"), "GET, HEAD", method)
            self.assertEqual(int(r.header("Content-Length")), len(r.body), method)
        # A CONNECT too says how long its answer is (http.client cannot send one).
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10) as s:
            s.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
            f = s.makefile("rb")
            self.assertTrue(f.readline().startswith(b"HTTP/1.1 405 "))
            headers = {}
            for line in iter(f.readline, b"\r\n"):
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            self.assertEqual(f.read(int(headers["content-length"])), b"only GET and HEAD are supported\n")

    def test_head_is_get_without_body(self):
        self.redis("SET", "h", "twelve bytes")
        r = self.proxy.request("HEAD", "/h")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")
        self.assertEqual(r.header("Content-Length"), "12")
        self.assertEqual(r.header("X-Cache"), "MISS")
        self.assertHit(self.proxy.get("h"), b"twelve bytes")
        self.assertEqual(self.proxy.request("HEAD", "/absent").status, 404)

    def test_percent_encoded_slash_is_the_same_key(self):
        self.redis("SET", "user/42", "v")
        self.assertMiss(self.proxy.request("GET", "/user%2F42"), b"v")
        self.assertHit(self.proxy.request("GET", "/user/42"), b"v")

    def test_query_string_is_not_part_of_the_key(self):
        self.redis("SET", "q", "v")
        self.assertMiss(self.proxy.request("GET", "/q?x=1"), b"v")
        self.assertHit(self.proxy.request("GET", "/q"), b"v")

    def test_binary_key_and_value(self):
        key = b"bin\x00key\xff\r\n"
        value = bytes(range(256)) + b"\x00" * 10
        self.redis("SET", key, value)
        self.assertMiss(self.proxy.get(key), value)
        self.assertHit(self.proxy.get(key), value)
        self.assertEqual(self.proxy.get(b"bin").status, 404)  # the NUL does not end the key

    def test_empty_value(self):
        self.redis("SET", "empty", "")
        self.assertMiss(self.proxy.get("empty"), b"")
        r = self.proxy.get("empty")
        self.assertHit(r, b"")
        self.assertEqual(r.header("Content-Length"), "0")

    def test_one_mib_value(self):
        value = os.urandom(1024 * 1024)
        self.redis("SET", "big", value)
        self.assertMiss(self.proxy.get("big"), value)
        self.assertHit(self.proxy.get("big"), value)

    def test_redis_error_reply_is_4xx_and_not_cached(self):
        self.redis("RPUSH", "list", "a")
        r = self.proxy.get("list")
        self.assertEqual(r.status, 409)
        self.assertIn(b"WRONGTYPE", r.body)
        self.redis("DEL", "list")
        self.redis("SET", "list", "a string now")
        self.assertMiss(self.proxy.get("list"), b"a string now")

    def test_keep_alive_serves_many_requests_on_one_connection(self):
        self.redis("SET", "ka", "v")
        conn = self.proxy.connection()
        try:
            for i in range(50):
                r = self.proxy.get("ka", conn)
                self.assertEqual((r.status, r.body), (200, b"v"))
                self.assertEqual(self.proxy.get("absent", conn).status, 404)
        finally:
            conn.close()

    def test_malformed_request_line_is_400_and_worker_lives(self):
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5) as s:
            s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
            reply = s.recv(1024)
        self.assertTrue(reply.startswith(b"HTTP/1.1 400"), reply)
        self.redis("SET", "alive", "yes")
        self.assertMiss(self.proxy.get("alive"), b"yes")


class KeySizeTest(ProxyTestCase):
    def test_key_longer_than_max_key_size_is_414(self):
        proxy = self.start_proxy(proxy={"max_key_size": "100"})
        self.redis("SET", "k" * 100, "fits")
        self.assertMiss(proxy.get("k" * 100), b"fits")
        self.assertEqual(proxy.get("k" * 101).status, 414)
        # the limit is on the decoded key: 100 encoded bytes are 100 key bytes
        self.assertHit(proxy.request("GET", "/" + "%6B" * 100), b"fits")

    def test_huge_request_line_is_refused_cleanly(self):
        # Past the header limit (3 x max_key_size + 16k) evhttp itself refuses the request line
        # with 400 before our handler sees it; below it, the key gets our 414.
        proxy = self.start_proxy(proxy={"max_key_size": "1k"})
        self.assertEqual(proxy.get("x" * 10000).status, 414)
        r = proxy.request("GET", "/" + "x" * 100000)
        self.assertEqual(r.status, 400)
        self.redis("SET", "ok", "1")
        self.assertMiss(proxy.get("ok"), b"1")


class MaxValueSizeTest(ProxyTestCase):
    def test_value_larger_than_max_value_size_is_served_not_cached(self):
        proxy = self.start_proxy(cache={"max_value_size": "1k"})
        big, small = b"b" * 1025, b"s" * 1024
        self.redis("SET", "big", big)
        self.redis("SET", "small", small)
        self.assertMiss(proxy.get("big"), big)
        self.assertMiss(proxy.get("big"), big)
        self.assertMiss(proxy.get("small"), small)
        self.assertHit(proxy.get("small"), small)


class ExpiryTest(ProxyTestCase):
    TTL = 0.6

    def test_entry_expires_ttl_after_insertion_even_when_read(self):
        proxy = self.start_proxy(cache={"ttl": "600ms"})
        self.redis("SET", "k", "v1")
        inserted = time.monotonic()
        self.assertMiss(proxy.get("k"), b"v1")
        self.redis("SET", "k", "v2")
        # reads during the TTL are hits and do not extend it
        while time.monotonic() - inserted < self.TTL - 0.25:
            self.assertHit(proxy.get("k"), b"v1")
            time.sleep(0.05)
        time.sleep(max(0, inserted + self.TTL + 0.05 - time.monotonic()))
        self.assertMiss(proxy.get("k"), b"v2")
        self.assertHit(proxy.get("k"), b"v2")


class EvictionTest(ProxyTestCase):
    def setUp(self):
        super().setUp()
        for k in "abcdefghij":
            self.redis("SET", k, k.upper())

    def test_lru_evicts_least_recently_read(self):
        proxy = self.start_proxy(cache={"capacity": "3"})
        for k in "abc":
            self.assertMiss(proxy.get(k), k.upper().encode())
        self.assertHit(proxy.get("a"), b"A")      # b is now the least recently read
        self.assertMiss(proxy.get("d"), b"D")     # evicts b
        for k in "acd":
            self.assertHit(proxy.get(k), k.upper().encode())
        self.assertMiss(proxy.get("b"), b"B")     # b was evicted (and now evicts a)
        self.assertMiss(proxy.get("a"), b"A")

    def test_capacity_is_exact(self):
        proxy = self.start_proxy(cache={"capacity": "5"})
        for k in "abcdefghij":
            self.assertMiss(proxy.get(k), k.upper().encode())
        for k in "fghij":                          # the last five are all cached
            self.assertHit(proxy.get(k), k.upper().encode())
        self.assertMiss(proxy.get("e"), b"E")      # the sixth most recent was not


class Http10Test(ProxyTestCase):
    def request(self, raw):
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10) as s:
            s.sendall(raw)
            data = read_until_closed(s)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(b":", 1) for l in lines[1:])}
        return lines[0], headers, body

    def test_http10_answers_carry_date_and_content_length(self):
        # evhttp gives them to HTTP/1.1 answers only: a 1.0 client had to read until the close.
        self.proxy = self.start_proxy()
        self.redis("SET", "k", "value")
        for target, status, body in ((b"/k", b"200", b"value"), (b"/k", b"200", b"value"), (b"/nope", b"404", None)):
            line, headers, got = self.request(b"GET " + target + b" HTTP/1.0\r\n\r\n")
            self.assertTrue(line.startswith(b"HTTP/1.0 " + status), line)
            self.assertEqual(int(headers[b"content-length"]), len(got))
            if body is not None:
                self.assertEqual(got, body)
            self.assertRegex(headers[b"date"], rb"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$")
        line, headers, got = self.request(b"HEAD /k HTTP/1.0\r\n\r\n")
        self.assertEqual((headers[b"content-length"], got), (b"5", b""))


class ContentTypeTest(ProxyTestCase):
    def test_content_type_of_values_is_a_setting(self):
        proxy = self.start_proxy(http={"content_type": "text/plain; charset=utf-8"})
        self.redis("SET", "k", "v")
        r = proxy.get("k")
        self.assertEqual(r.header("Content-Type"), "text/plain; charset=utf-8")
        self.assertEqual(r.body, b"v")


class AnswerHeadTest(ProxyTestCase):
    """A value's answer head is composed in one piece (http_front.cc compose_head): each header
    once, in HTTP/1.1 and 1.0, for a 200, a HEAD and a 304, and nothing evhttp adds beside it."""

    def head_lines(self, proxy, request):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(request)
            data = read_until_closed(s)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        names = [line.split(b":", 1)[0].lower() for line in lines[1:]]
        return lines[0], names, dict(line.split(b": ", 1) for line in lines[1:]), body

    def test_each_header_once(self):
        proxy = self.start_proxy(http={"etag": "on", "cache_control": "public, max-age=30"})
        self.redis("SET", "k", "value")
        for version in (b"1.1", b"1.0"):
            for method in (b"GET", b"HEAD"):
                status, names, headers, body = self.head_lines(
                    proxy, method + b" /k HTTP/" + version + b"\r\nConnection: close\r\n\r\n")
                self.assertEqual(status, b"HTTP/" + version + b" 200 OK")
                self.assertEqual(sorted(names), sorted(set(names)), names)
                for name in (b"content-type", b"x-cache", b"etag", b"cache-control", b"age", b"date",
                             b"content-length"):
                    self.assertIn(name, names)
                self.assertEqual(headers[b"Content-Type"], b"application/octet-stream")
                self.assertEqual(body, b"value" if method == b"GET" else b"")
        etag = headers[b"ETag"]
        status, names, headers, body = self.head_lines(
            proxy, b"GET /k HTTP/1.1\r\nIf-None-Match: " + etag + b"\r\nConnection: close\r\n\r\n")
        self.assertEqual(status, b"HTTP/1.1 304 Not Modified")
        self.assertEqual(sorted(n for n in names if n not in (b"date", b"connection")),
                         [b"age", b"cache-control", b"etag"])
        self.assertEqual(body, b"")
