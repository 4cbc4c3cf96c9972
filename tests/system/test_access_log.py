"""The access log ([log] access): one line per HTTP request and per RESP command, in the format
access_log.h documents, from every worker; reopened on `redis-proxy -s reopen` after rotation;
a path that cannot be written fails the configuration check; and no password ever in it."""
import os
import re
import signal
import subprocess

from harness import PROXY_BIN, ProxyTestCase, RedisError, wait_until

# time client front method key status bytes cache duration
LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) (http|resp) (\S+) (\S+) (\S+) (\d+) "
                  r"(HIT|MISS|STALE|-) (\d+)$")


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        return f.read().decode(errors="replace").splitlines()


def fields(line):
    m = LINE.match(line)
    if m is None:
        raise AssertionError("not an access log line: %r" % line)
    return m.groups()[1:]  # all but the time


class AccessLogTest(ProxyTestCase):
    def wait_lines(self, path, n):
        wait_until(lambda: len(read_lines(path)) >= n, timeout=5, what="%d access log lines" % n)
        return read_lines(path)

    def test_every_request_and_command_gets_one_line(self):
        path = os.path.join(self.workdir, "access.log")
        self.redis("SET", "k", "hello")
        proxy = self.start_proxy(resp=True, proxy={"workers": "2"}, log={"access": path})
        self.assertMiss(proxy.get("k"), b"hello")
        # Each of two workers may hold it: ask on one connection, so the second is a hit.
        conn = proxy.connection()
        first = proxy.request("GET", "/k", conn)
        second = proxy.request("GET", "/k", conn)
        self.assertHit(second, b"hello")
        self.assertEqual(proxy.request("HEAD", "/k", conn).status, 200)  # the same worker: a hit
        conn.close()
        self.assertEqual(proxy.get("absent").status, 404)
        self.assertEqual(proxy.request("POST", "/k").status, 405)
        self.assertEqual(proxy.get("a b\n").status, 404)
        c = proxy.resp()
        self.assertEqual(c("GET", "k"), b"hello")
        self.assertEqual(c("MGET", "k", "absent"), [b"hello", None])
        self.assertEqual(c("PING"), b"PONG")
        with self.assertRaises(RedisError):
            c("AUTH", "someone", "s3cret-never-logged")
        with self.assertRaises(RedisError):
            c("SET", "k", "v")
        c.close()
        lines = self.wait_lines(path, 12)
        self.assertEqual(len(lines), 12, lines)
        got = [fields(line) for line in lines]
        for client, *_ in got:
            self.assertRegex(client, r"^127\.0\.0\.1:\d+$")
        http = [(front, method, key, status, cache) for _, front, method, key, status, _, cache, _ in got
                if front == "http"]
        self.assertEqual(sorted(http), sorted([
            ("http", "GET", "k", "200", "MISS"),
            ("http", "GET", "k", "200", first.header("X-Cache")),
            ("http", "GET", "k", "200", "HIT"),
            ("http", "GET", "absent", "404", "MISS"),
            ("http", "POST", "k", "405", "-"),
            ("http", "HEAD", "k", "200", "HIT"),
            ("http", "GET", "a\\x20b\\x0a", "404", "MISS"),
        ]))
        resp = [(method, key, status, cache) for _, front, method, key, status, _, cache, _ in got if front == "resp"]
        self.assertEqual(resp[0][:3], ("GET", "k", "OK"))
        self.assertEqual(resp[1][:3], ("MGET", "k", "OK"))
        self.assertEqual(resp[1][3], "MISS")  # absent was fetched
        self.assertEqual(resp[2], ("PING", "-", "OK", "-"))
        self.assertEqual(resp[3][0], "AUTH")
        self.assertEqual(resp[3][1], "-")  # never an argument that is not a key
        self.assertEqual(resp[4], ("SET", "-", "READONLY", "-"))
        # The bytes: the body (HTTP), the whole reply (RESP); the duration is a number.
        by_line = dict(((f[1], f[2], f[3], f[4]), f) for f in got)
        self.assertEqual(by_line[("http", "GET", "absent", "404")][5], str(len(b"key not found\n")))
        self.assertEqual(by_line[("resp", "GET", "k", "OK")][5], str(len(b"$5\r\nhello\r\n")))
        with open(path, "rb") as f:
            self.assertNotIn(b"s3cret-never-logged", f.read())
        self.assertNotIn("s3cret-never-logged", proxy.log())
        status, metrics = proxy.admin("/metrics")
        self.assertIn("redis_proxy_access_log_lines_total 12\n", metrics)
        self.assertIn("redis_proxy_access_log_dropped_total 0\n", metrics)

    def test_a_rotated_file_is_let_go_on_s_reopen(self):
        path = os.path.join(self.workdir, "access.log")
        pid_file = os.path.join(self.workdir, "proxy.pid")
        self.redis("SET", "k", "v")
        proxy = self.start_proxy(proxy={"workers": "2", "pid_file": pid_file}, log={"access": path})
        proxy.get("k")
        self.wait_lines(path, 1)
        os.rename(path, path + ".1")  # as logrotate does, before its postrotate
        done = subprocess.run([PROXY_BIN, "-c", proxy.config_path, "-s", "reopen"], capture_output=True, text=True,
                              timeout=10)
        self.assertEqual(done.returncode, 0, done.stderr)
        wait_until(lambda: proxy.log().count("reopening the access log") == 1, what="the master's SIGUSR1")
        # Every worker reopens: once one line is in the new file, the next twenty (new connections,
        # which the kernel spreads over both workers) all land there, none in the old one.
        wait_until(lambda: proxy.get("k").status == 200 and len(read_lines(path)) >= 1,
                   what="a line in the new file")
        old, new = len(read_lines(path + ".1")), len(read_lines(path))
        self.assertGreaterEqual(old, 1)
        for _ in range(20):
            self.assertEqual(proxy.get("k").status, 200)
        self.wait_lines(path, new + 20)
        self.assertEqual(len(read_lines(path + ".1")), old)
        self.assertNotIn("cannot reopen", proxy.log())

    def test_a_reload_may_move_the_log(self):
        first, second = os.path.join(self.workdir, "a.log"), os.path.join(self.workdir, "b.log")
        self.redis("SET", "k", "v")
        proxy = self.start_proxy(log={"access": first})
        proxy.get("k")
        self.wait_lines(first, 1)
        proxy.settings["log"]["access"] = second
        proxy.write_config()
        proxy.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload complete" in proxy.log() or "reload done" in proxy.log()
                   or proxy.log().count("ready (pid") >= 2, what="the new generation")
        wait_until(lambda: proxy.get("k").status == 200 and len(read_lines(second)) >= 1,
                   what="a line in the new file")

    def test_a_path_that_cannot_be_written_fails_the_check(self):
        config = os.path.join(self.workdir, "bad.ini")
        with open(config, "w") as f:
            f.write("[log]\naccess = %s/missing/access.log\n" % self.workdir)
        done = subprocess.run([PROXY_BIN, "-c", config, "-t"], capture_output=True, text=True, timeout=10)
        self.assertEqual(done.returncode, 78, done.stderr)
        self.assertIn("bad.ini:2: access in [log]: ", done.stderr)
        self.assertIn("cannot be created", done.stderr)
        self.assertIn("No such file or directory", done.stderr)
        # -t creates nothing (it may run as another user than the service), and waits on no FIFO.
        path = os.path.join(self.workdir, "new.log")
        with open(config, "w") as f:
            f.write("[log]\naccess = %s\n" % path)
        done = subprocess.run([PROXY_BIN, "-c", config, "-t"], capture_output=True, text=True, timeout=10)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertFalse(os.path.exists(path))
        os.mkfifo(path)
        done = subprocess.run([PROXY_BIN, "-c", config, "-t"], capture_output=True, text=True, timeout=10)
        self.assertEqual(done.returncode, 78, done.stderr)
        self.assertIn("is not a regular file", done.stderr)

    def test_refusals_for_who_asks_are_logged_without_their_secrets(self):
        path = os.path.join(self.workdir, "access.log")
        self.redis("SET", "user:1", "v")
        proxy = self.start_proxy(resp=True, log={"access": path}, users={"app": "on >app-pw-77 ~user:*"})
        c = proxy.resp()
        with self.assertRaises(RedisError):
            c("GET", "user:1")  # NOAUTH
        with self.assertRaises(RedisError):
            c("AUTH", "app", "wrong-pw-88")
        c("AUTH", "app", "app-pw-77")
        with self.assertRaises(RedisError):
            c("GET", "secret:1")  # NOPERM
        c("MULTI")
        c("GET", "user:1")
        self.assertEqual(c("EXEC"), [b"v"])
        c.close()
        lines = [fields(line) for line in self.wait_lines(path, 7)]
        got = [(method, key, status) for _, _, method, key, status, _, _, _ in lines]
        self.assertEqual(got, [("GET", "user:1", "NOAUTH"), ("AUTH", "-", "WRONGPASS"), ("AUTH", "-", "OK"),
                               ("GET", "secret:1", "NOPERM"), ("MULTI", "-", "OK"), ("GET", "user:1", "OK"),
                               ("EXEC", "-", "OK")])
        with open(path) as f:
            text = f.read()
        self.assertNotIn("app-pw-77", text)
        self.assertNotIn("wrong-pw-88", text)

    def test_stderr_carries_the_lines_beside_the_log(self):
        self.redis("SET", "k", "v")
        proxy = self.start_proxy(log={"access": "stderr"})
        proxy.get("k")
        wait_until(lambda: re.search(r"(?m)^\S+Z 127\.0\.0\.1:\d+ http GET k 200 1 MISS \d+$", proxy.log()),
                   what="the line on stderr")
