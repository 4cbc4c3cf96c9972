"""Client authentication ([users]): RESP's AUTH and HELLO ... AUTH, HTTP's Basic and Bearer, each
user's key patterns, checked before the cache is looked at; the admin endpoint's token; secrets
read from files (at start and at every reload, refused when others may read them); and no
password in any log, error, INFO, CONFIG GET, /metrics or -T. Through the real binary, with
redis-py, redis-cli, curl and the Node.js clients."""
import base64
import hashlib
import http.client
import json
import os
import re
import signal
import subprocess
import time
import unittest

import redis as redis_py

from harness import PROXY_BIN, ProxyTestCase, RedisError, wait_until

CLIENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients")
APP_PASSWORD = "app-pw-6d1f"       # the app user's, in the file itself
READER_PASSWORD = "reader-pw-93ab"  # the reader's, from a password file
ADMIN_TOKEN = "admin-token-51c7"
SECRETS = (APP_PASSWORD, READER_PASSWORD, ADMIN_TOKEN)


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


class AuthTest(ProxyTestCase):
    def secret_file(self, name, text, mode=0o600):
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            f.write(text + "\n")
        os.chmod(path, mode)
        return path

    def start_with_users(self, **sections):
        """app: its password in the file, keys user:* and session:*; reader: its password from a
        file, keys user:*; the default user has no password here and is off."""
        reader_file = self.secret_file("reader.pw", READER_PASSWORD)
        users = {"app": "on >%s ~user:* ~session:*" % APP_PASSWORD,
                 "reader.password_file": reader_file,
                 "reader": "on ~user:*"}
        users.update(sections.pop("users", {}))
        proxy = self.start_proxy(resp=True, users=users, **sections)
        self.addCleanup(self.assert_no_secret_in_log, proxy)
        return proxy

    def assert_no_secret_in_log(self, proxy):
        log = proxy.log()
        for secret in SECRETS:
            self.assertNotIn(secret, log)

    def test_resp_authentication_and_key_patterns(self):
        self.redis("SET", "user:1", "alice")
        self.redis("SET", "secret:1", "s")
        proxy = self.start_with_users()
        c = proxy.resp()
        with self.assertRaises(RedisError) as e:
            c("GET", "user:1")
        self.assertEqual(str(e.exception), "NOAUTH Authentication required.")
        with self.assertRaises(RedisError) as e:
            c("AUTH", "app", "wrong")
        self.assertEqual(str(e.exception), "WRONGPASS invalid username-password pair or user is disabled.")
        self.assertEqual(c("AUTH", "app", APP_PASSWORD), b"OK")
        self.assertEqual(c("GET", "user:1"), b"alice")
        self.assertIsNone(c("GET", "session:9"))
        with self.assertRaises(RedisError) as e:
            c("GET", "secret:1")
        self.assertEqual(str(e.exception),
                         "NOPERM this user has no permissions to access one of the keys used as arguments")
        with self.assertRaises(RedisError) as e:  # refused whole, as Redis does
            c("MGET", "user:1", "secret:1")
        self.assertTrue(str(e.exception).startswith("NOPERM"))
        # Inside a transaction: refused while queueing, and EXEC aborts.
        self.assertEqual(c("MULTI"), b"OK")
        self.assertEqual(c("GET", "user:1"), b"QUEUED")
        with self.assertRaises(RedisError):
            c("GET", "secret:1")
        with self.assertRaises(RedisError) as e:
            c("EXEC")
        self.assertTrue(str(e.exception).startswith("EXECABORT"))
        # HELLO 3 AUTH logs in as another user, and answers in RESP3.
        c2 = proxy.resp()
        with self.assertRaises(RedisError) as e:
            c2("HELLO", "3")
        self.assertTrue(str(e.exception).startswith("NOAUTH HELLO must be called"))
        hello = c2("HELLO", "3", "AUTH", "reader", READER_PASSWORD)
        self.assertIn(b"redis-proxy", hello if isinstance(hello, list) else list(hello.values()))
        self.assertEqual(c2("GET", "user:1"), b"alice")
        with self.assertRaises(RedisError):
            c2("GET", "session:1")
        c.close()
        c2.close()
        _, metrics = proxy.admin("/metrics")
        self.assertIn('redis_proxy_auth_failures_total{front="resp"} 1\n', metrics)
        wait_until(lambda: "authentication failed for RESP client 127.0.0.1:" in proxy.log(), what="the log line")
        self.assertIn("user 'app'", proxy.log())

    def test_a_forbidden_key_answers_the_same_cached_absent_or_present(self):
        self.redis("SET", "secret:cached", "x")
        self.redis("SET", "secret:present", "y")
        proxy = self.start_with_users(users={"admin": "on >adm-pw-0 allkeys"})
        admin = proxy.resp()
        admin("AUTH", "admin", "adm-pw-0")
        self.assertEqual(admin("GET", "secret:cached"), b"x")  # now cached
        c = proxy.resp()
        c("AUTH", "app", APP_PASSWORD)
        answers = []
        for key in ("secret:cached", "secret:absent", "secret:present"):
            with self.assertRaises(RedisError) as e:
                c("GET", key)
            answers.append(str(e.exception))
        self.assertEqual(len(set(answers)), 1, answers)
        http = [proxy.request("GET", "/" + key, headers={"Authorization": basic("app", APP_PASSWORD)})
                for key in ("secret:cached", "secret:absent", "secret:present")]
        self.assertEqual({(r.status, r.body, tuple(sorted(r.headers.items()))) for r in http}.__len__(), 1,
                         [(r.status, r.body) for r in http])
        self.assertEqual(http[0].status, 403)
        # Nothing was looked up for them: the one miss is the admin's read, the only hit none.
        _, metrics = proxy.admin("/metrics")
        self.assertIn('redis_proxy_requests_total{front="http",result="miss"} 0\n', metrics)
        self.assertIn('redis_proxy_requests_total{front="resp",result="miss"} 1\n', metrics)
        self.assertIn('redis_proxy_requests_total{front="resp",result="hit"} 0\n', metrics)
        self.assertIn('redis_proxy_requests_total{front="resp",result="not_found"} 0\n', metrics)
        self.assertIn('redis_proxy_forbidden_requests_total{front="resp"} 3\n', metrics)
        self.assertIn('redis_proxy_forbidden_requests_total{front="http"} 3\n', metrics)
        admin.close()
        c.close()

    def test_http_basic_and_bearer(self):
        self.redis("SET", "user:1", "alice")
        proxy = self.start_with_users()
        r = proxy.get("user:1")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.header("WWW-Authenticate"), 'Basic realm="redis-proxy", charset="UTF-8"')
        self.assertEqual(proxy.request("GET", "/user:1", headers={"Authorization": basic("app", "nope")}).status, 401)
        self.assertEqual(proxy.request("GET", "/user:1", headers={"Authorization": "Bearer nope"}).status, 401)
        self.assertEqual(proxy.request("GET", "/user:1", headers={"Authorization": "Digest x"}).status, 401)
        ok = proxy.request("GET", "/user:1", headers={"Authorization": basic("app", APP_PASSWORD)})
        self.assertEqual((ok.status, ok.body), (200, b"alice"))
        ok = proxy.request("GET", "/user:1", headers={"Authorization": "Bearer " + READER_PASSWORD})
        self.assertEqual((ok.status, ok.body), (200, b"alice"))
        r = proxy.request("GET", "/session:1", headers={"Authorization": "Bearer " + READER_PASSWORD})
        self.assertEqual(r.status, 403)
        # One keep-alive connection changing its credentials: each request is judged by its own.
        conn = proxy.connection()
        self.assertEqual(proxy.request("GET", "/user:1", conn, {"Authorization": basic("app", APP_PASSWORD)}).status,
                         200)
        self.assertEqual(proxy.request("GET", "/user:1", conn, {"Authorization": basic("app", "bad")}).status, 401)
        self.assertEqual(proxy.request("GET", "/user:1", conn).status, 401)
        self.assertEqual(proxy.request("GET", "/session:1", conn,
                                       {"Authorization": basic("reader", READER_PASSWORD)}).status, 403)
        conn.close()
        # curl, as its users write it.
        url = "http://127.0.0.1:%d/user:1" % proxy.port
        out = subprocess.run(["curl", "-s", "-u", "app:" + APP_PASSWORD, url], capture_output=True, timeout=10)
        self.assertEqual(out.stdout, b"alice")
        out = subprocess.run(["curl", "-s", "-H", "Authorization: Bearer " + READER_PASSWORD, url],
                             capture_output=True, timeout=10)
        self.assertEqual(out.stdout, b"alice")
        _, metrics = proxy.admin("/metrics")
        self.assertIn('redis_proxy_auth_failures_total{front="http"} 4\n', metrics)

    def test_redis_py_and_redis_cli_log_in(self):
        self.redis("SET", "user:1", "alice")
        self.redis("SET", "secret:1", "s")
        proxy = self.start_with_users(users={"default": "on >default-pw-7 ~user:*"})
        client = redis_py.Redis(host="127.0.0.1", port=proxy.resp_port, username="app", password=APP_PASSWORD)
        self.assertEqual(client.get("user:1"), b"alice")
        with self.assertRaises(redis_py.exceptions.NoPermissionError):
            client.get("secret:1")
        client.close()
        client = redis_py.Redis(host="127.0.0.1", port=proxy.resp_port, password="default-pw-7")  # AUTH <password>
        self.assertEqual(client.get("user:1"), b"alice")
        client.close()
        with self.assertRaises(redis_py.exceptions.ResponseError) as e:
            redis_py.Redis(host="127.0.0.1", port=proxy.resp_port, username="app", password="no").get("user:1")
        self.assertIn("WRONGPASS", str(e.exception))
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(proxy.resp_port), "--no-auth-warning"]
        out = subprocess.run(cli + ["--user", "app", "--pass", APP_PASSWORD, "GET", "user:1"], capture_output=True,
                             text=True, timeout=10)
        self.assertEqual(out.stdout, "alice\n")
        out = subprocess.run(cli + ["-a", "default-pw-7", "GET", "user:1"], capture_output=True, text=True, timeout=10)
        self.assertEqual(out.stdout, "alice\n")
        out = subprocess.run(cli + ["GET", "user:1"], capture_output=True, text=True, timeout=10)
        self.assertIn("NOAUTH", out.stdout)

    def test_node_clients_log_in_as_acl_users(self):
        if not os.path.isdir(os.path.join(CLIENTS, "node_modules")):
            message = "node clients not installed: npm ci --prefix tests/clients"
            if os.environ.get("CI") == "true":
                self.fail(message)
            raise unittest.SkipTest(message)
        self.redis("SET", "user:1", "alice")
        proxy = self.start_with_users()
        run = subprocess.run(["node", os.path.join(CLIENTS, "auth.js"), str(proxy.resp_port), "app", APP_PASSWORD],
                             capture_output=True, timeout=60)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        result = json.loads(run.stdout)
        noperm = "NOPERM this user has no permissions to access one of the keys used as arguments"
        wrongpass = "WRONGPASS invalid username-password pair or user is disabled."
        self.assertEqual(result["nodeRedis"], {"allowed": "alice", "forbidden": noperm, "wrong": wrongpass})
        self.assertEqual(result["ioredis"], {"allowed": "alice", "forbidden": noperm, "wrong": wrongpass})

    def test_the_admin_token_guards_metrics_only(self):
        proxy = self.start_with_users(admin={"token_file": self.secret_file("token", ADMIN_TOKEN)})
        status, body = proxy.admin("/metrics")
        self.assertEqual(status, 401)
        self.assertEqual(proxy.admin("/healthz")[0], 200)
        self.assertEqual(proxy.admin("/readyz")[0], 200)
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", proxy.admin_port, timeout=10)
        conn.request("GET", "/metrics", headers={"Authorization": "Bearer " + ADMIN_TOKEN})
        r = conn.getresponse()
        text = r.read().decode()
        conn.close()
        self.assertEqual(r.status, 200)
        self.assertIn('redis_proxy_auth_failures_total{front="admin"} 1\n', text)
        for secret in SECRETS:
            self.assertNotIn(secret, text)

    def test_a_secret_file_others_may_read_is_refused_at_start(self):
        loose = self.secret_file("loose.pw", "x", mode=0o644)
        config = os.path.join(self.workdir, "loose.ini")
        with open(config, "w") as f:
            f.write("[redis]\npassword_file = %s\n" % loose)
        r = subprocess.run([PROXY_BIN, "-c", config, "-t"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("loose.ini:2: password_file in [redis]", r.stderr)
        self.assertIn(loose, r.stderr)
        with open(config, "w") as f:
            f.write("[users]\napp = on ~*\napp.password_file = %s\n" % loose)
        r = subprocess.run([PROXY_BIN, "-c", config, "-t"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("loose.ini:3: app.password_file in [users]", r.stderr)

    def test_redis_password_from_a_file_and_a_user_password_changed_by_reload(self):
        server = self.start_redis(extra_args=["--requirepass", "redis-pw-from-file"], password="redis-pw-from-file")
        reader_file = self.secret_file("reader2.pw", "first-pw")
        proxy = self.start_proxy(server, resp=True,
                                 redis={"password_file": self.secret_file("redis.pw", "redis-pw-from-file")},
                                 users={"reader": "on ~*", "reader.password_file": reader_file})
        c = proxy.resp()
        self.assertEqual(c("AUTH", "reader", "first-pw"), b"OK")
        self.assertIsNone(c("GET", "nothing"))  # Redis answered: the proxy logged in with the file's password
        with open(reader_file, "w") as f:
            f.write("second-pw\n")
        proxy.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "redis_proxy_config_generation 2\n" in proxy.admin("/metrics")[1],
                   what="the reload's generation")
        wait_until(lambda: self._logs_in(proxy, "second-pw"), what="the new password accepted")
        self.assertFalse(self._logs_in(proxy, "first-pw"))
        # The connection logged in before the reload was handed over, and is still the reader.
        self.assertIsNone(c("GET", "nothing"))
        self.assertIn("redis_proxy_connections_handed_over_total 1\n", proxy.admin("/metrics")[1])
        c.close()
        r = subprocess.run([PROXY_BIN, "-c", proxy.config_path, "-T"], capture_output=True, text=True, timeout=10)
        for secret in ("redis-pw-from-file", "second-pw", "first-pw"):
            self.assertNotIn(secret, r.stdout)
        self.assertIn("users.reader = on (1 password) allkeys", r.stdout)
        for secret in ("redis-pw-from-file", "second-pw", "first-pw"):
            self.assertNotIn(secret, proxy.log())

    def reload(self, proxy, users, generation):
        proxy.settings["users"] = users
        proxy.write_config()
        proxy.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "redis_proxy_config_generation %d\n" % generation in proxy.admin("/metrics")[1],
                   what="reload %d" % generation)

    def test_a_handed_over_connection_meets_the_new_rules(self):
        self.redis("SET", "user:1", "u")
        self.redis("SET", "secret:1", "s")
        proxy = self.start_proxy(resp=True, users={"app": "on >app-pw allkeys", "other": "on >other-pw ~*"})
        app, other = proxy.resp(), proxy.resp()
        self.assertEqual(app("AUTH", "app", "app-pw"), b"OK")
        self.assertEqual(other("AUTH", "other", "other-pw"), b"OK")
        self.assertEqual(app("GET", "secret:1"), b"s")
        # app now reads user:* only; other is gone.
        self.reload(proxy, {"app": "on >app-pw ~user:*"}, 2)
        wait_until(lambda: "redis_proxy_connections_handed_over_total 1\n" in proxy.admin("/metrics")[1]
                   and "its user is no longer in [users]" in proxy.log(), what="app handed over, other closed")
        self.assertEqual(app("GET", "user:1"), b"u")
        with self.assertRaises(RedisError) as e:
            app("GET", "secret:1")
        self.assertTrue(str(e.exception).startswith("NOPERM"))
        with self.assertRaises((ConnectionError, OSError, RedisError)):
            other("GET", "user:1")  # closed: its user is gone, as Redis closes a deleted user's clients
        # No [users] at all now: a logged-in connection is closed, not left unrestricted.
        self.reload(proxy, {}, 3)
        with self.assertRaises((ConnectionError, OSError, RedisError)):
            app("GET", "secret:1")
        app.close()
        other.close()

    def test_a_client_that_does_not_log_in_is_closed_at_request_timeout(self):
        proxy = self.start_with_users(proxy={"request_timeout": "300ms"})
        c = proxy.resp()
        started = time.monotonic()
        with self.assertRaises(RedisError):
            c("PING")
        wait_until(lambda: "redis_proxy_auth_timeouts_total 1\n" in proxy.admin("/metrics")[1], timeout=5,
                   what="the auth deadline")
        self.assertTrue(c.at_eof())
        self.assertLess(time.monotonic() - started, 3)
        c.close()
        logged_in = proxy.resp()  # one that logs in keeps its connection
        logged_in("AUTH", "app", APP_PASSWORD)
        wait_until(lambda: "redis_proxy_auth_timeouts_total 1\n" in proxy.admin("/metrics")[1], timeout=5)
        self.assertIsNone(logged_in("GET", "user:none"))
        logged_in.close()

    def test_redis_7_0_answers_before_a_login(self):
        proxy = self.start_with_users(users={"default": "on nopass ~user:*"})
        c = proxy.resp()  # the default user takes any password: logged in, as in Redis
        with self.assertRaises(RedisError) as e:
            c("AUTH", "anything")
        self.assertTrue(str(e.exception).startswith("ERR AUTH <password> called without any password configured"))
        self.assertIsNone(c("GET", "user:9"))
        with self.assertRaises(RedisError) as e:
            c("GET", "secret:1")
        self.assertTrue(str(e.exception).startswith("NOPERM"))
        c.close()
        # Without a login: what Redis says first (an unknown command, a wrong arity) comes first.
        proxy2 = self.start_with_users()
        c = proxy2.resp()
        with self.assertRaises(RedisError) as e:
            c("NOSUCHCOMMAND")
        self.assertTrue(str(e.exception).startswith("ERR unknown command"), e.exception)
        with self.assertRaises(RedisError) as e:
            c("GET")
        self.assertTrue(str(e.exception).startswith("ERR wrong number of arguments"), e.exception)
        with self.assertRaises(RedisError) as e:
            c("HELLO", "3")
        self.assertEqual(str(e.exception), "NOAUTH HELLO must be called with the client already authenticated, "
                         "otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and "
                         "select the RESP protocol version at the same time")
        c.close()
        # HTTP: the default user that takes any password needs no Authorization either.
        self.redis("SET", "user:9", "nine")
        self.assertEqual(proxy.get("user:9").body, b"nine")
        self.assertEqual(proxy.get("secret:1").status, 403)

    def _logs_in(self, proxy, password):
        c = proxy.resp()
        try:
            return c("AUTH", "reader", password) == b"OK"
        except RedisError:
            return False
        finally:
            c.close()

    def test_info_and_config_get_hold_no_secret(self):
        proxy = self.start_with_users()
        c = proxy.resp()
        c("AUTH", "app", APP_PASSWORD)
        text = c("INFO", "all")
        for name in ("requirepass", "masterauth", "user", "*"):
            text += b"".join(x for x in c("CONFIG", "GET", name) if isinstance(x, bytes))
        for secret in SECRETS:
            self.assertNotIn(secret.encode(), text)
        self.assertNotIn(hashlib.sha256(APP_PASSWORD.encode()).hexdigest().encode(), text)
        c.close()


class ReadmeNetworkExampleTest(ProxyTestCase):
    """The README's "Running on a network" example, as written: its configuration (ports and the
    password file's path moved into the test's), and its four command lines."""

    def test_the_readme_example_runs_as_written(self):
        from harness import ROOT, Proxy, free_ports
        with open(os.path.join(ROOT, "README.md")) as f:
            text = f.read()
        part = text[text.index("## Running on a network"):]
        ini = re.search(r"```ini\n(.*?)```", part, re.S).group(1)
        commands = re.search(r"```\n(redis-cli .*?)```", part, re.S).group(1).strip().splitlines()
        self.redis("SET", "user:42", "alice")
        self.redis("SET", "secret:1", "s")
        port, resp_port, admin_port = free_ports(3)
        reader_file = os.path.join(self.workdir, "reader.password")
        with open(reader_file, "w") as f:
            f.write("reader-secret\n")
        os.chmod(reader_file, 0o600)
        ini = (ini.replace("*:8080", "127.0.0.1:%d" % port).replace("*:6380", "127.0.0.1:%d" % resp_port)
               .replace("/etc/redis-proxy/reader.password", reader_file))
        config = os.path.join(self.workdir, "network.ini")
        with open(config, "w") as f:
            f.write(ini + "[redis]\naddress = 127.0.0.1:%d\n[admin]\nlisten = 127.0.0.1:%d\n" % (self.redis.port,
                                                                                             admin_port))
        with open(os.path.join(self.workdir, "network.log"), "wb") as log:
            proc = subprocess.Popen([PROXY_BIN, "-c", config], stdout=log, stderr=log)
        self.addCleanup(lambda: (proc.terminate(), proc.wait(15)))
        import http.client

        def ready():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=2)
                conn.request("GET", "/readyz")
                ok = conn.getresponse().status == 200
                conn.close()
                return ok
            except OSError:
                return False
        wait_until(ready, what="the README's proxy ready")
        outputs = []
        for line in commands:
            command = line.split("  #")[0].strip()
            command = (command.replace("-p 6380", "-p %d" % resp_port).replace("127.0.0.1:8080", "127.0.0.1:%d" % port)
                       .replace("/etc/redis-proxy/reader.password", reader_file))
            run = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=10)
            outputs.append(run.stdout.strip())
        self.assertEqual(outputs[0], "alice", outputs)
        self.assertTrue(outputs[1].startswith("NOPERM"), outputs[1])
        self.assertEqual(outputs[2], "alice")
        self.assertEqual(outputs[3], "alice")


class RevocationTest(ProxyTestCase):
    """A reload that changes who may read what serves nothing more by the old rules: a RESP
    connection in the middle of a transaction is closed rather than kept on the retiring worker,
    an idle HTTP keep-alive connection is closed rather than answered once more."""

    def test_a_reload_that_changes_the_users_serves_nothing_by_the_old_ones(self):
        self.redis("SET", "secret:1", "s")
        proxy = self.start_proxy(resp=True, users={"app": "on >app-pw allkeys"}, proxy={"shutdown_timeout": "30s"})
        c = proxy.resp()
        self.assertEqual(c("AUTH", "app", "app-pw"), b"OK")
        self.assertEqual(c("MULTI"), b"OK")  # not at a boundary: it cannot be handed over
        conn = proxy.connection()
        auth = {"Authorization": basic("app", "app-pw")}
        self.assertEqual(proxy.request("GET", "/secret:1", conn, auth).status, 200)  # idle keep-alive now
        proxy.settings["users"] = {"app": "on >app-pw ~user:*"}
        proxy.write_config()
        proxy.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "redis_proxy_config_generation 2\n" in proxy.admin("/metrics")[1], what="the reload")
        # The transaction's connection is closed: its EXEC never runs by the old rules.
        with self.assertRaises((ConnectionError, OSError, RedisError)):
            c("GET", "secret:1")
            c("EXEC")
        c.close()
        # The idle HTTP connection was closed; a new one meets the new rules.
        with self.assertRaises((ConnectionError, OSError, http.client.HTTPException)):
            r = proxy.request("GET", "/secret:1", conn, auth)
            self.assertNotEqual(r.status, 200, r)
            raise ConnectionError("answered %d" % r.status)
        conn.close()
        self.assertEqual(proxy.request("GET", "/secret:1", headers=auth).status, 403)

    def test_a_reload_that_keeps_the_users_keeps_its_connections(self):
        self.redis("SET", "k", "v")
        proxy = self.start_proxy(resp=True, users={"app": "on >app-pw allkeys"})
        c = proxy.resp()
        c("AUTH", "app", "app-pw")
        c("MULTI")
        proxy.settings["cache"]["ttl"] = "30s"  # not about who reads
        proxy.write_config()
        proxy.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "redis_proxy_config_generation 2\n" in proxy.admin("/metrics")[1], what="the reload")
        self.assertEqual(c("GET", "k"), b"QUEUED")
        self.assertEqual(c("EXEC"), [b"v"])
        c.close()


class BeforeLoginTest(ProxyTestCase):
    def test_what_a_client_may_do_before_it_logs_in_is_small(self):
        proxy = self.start_proxy(resp=True, users={"app": "on >app-pw allkeys"})
        c = proxy.resp()
        # HELLO's SETNAME takes no effect without a login.
        with self.assertRaises(RedisError):
            c("HELLO", "3", "SETNAME", "sneaky")
        c("AUTH", "app", "app-pw")
        self.assertIsNone(c("CLIENT", "GETNAME"))
        c.close()
        # A long command before a login is refused at its header: the worker holds nothing for it.
        c = proxy.resp()
        c.send_raw(b"*10000\r\n$4\r\nMGET\r\n")
        with self.assertRaises(RedisError) as e:
            c.read_reply()
        self.assertIn("Protocol error", str(e.exception))
        self.assertTrue(c.at_eof())
        c.close()
        # Logged in, the same command is fine.
        c = proxy.resp()
        c("AUTH", "app", "app-pw")
        self.assertEqual(c("MGET", *["k%d" % i for i in range(100)]), [None] * 100)
        c.close()

    def test_two_authorization_headers_are_refused(self):
        self.redis("SET", "k", "v")
        proxy = self.start_proxy(users={"app": "on >app-pw allkeys", "big": "on >big-pw allkeys"})
        import socket
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        s.sendall(("GET /k HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nAuthorization: %s\r\n\r\n"
                   % (basic("app", "app-pw"), basic("big", "big-pw"))).encode())
        self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 401 "))
        s.close()
