"""Black-box harness: the real build/redis-proxy against a real redis-server, on free ports, in a
temp dir. Every process started here is stopped by the test's cleanups, also when it fails, and
dies with the test runner (PR_SET_PDEATHSIG) if the runner itself is killed."""
import collections
import ctypes
import http.client
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROXY_BIN = os.environ.get("PROXY_BIN") or os.path.join(ROOT, "build", "redis-proxy")
# A build with AddressSanitizer (`make check SANITIZE=1`): its quarantine keeps freed memory
# resident, so an RSS bound says nothing there (the plain build's run checks it).
SANITIZED = "build-asan" in PROXY_BIN
PIPELINE_BIN = os.environ.get("PIPELINE_BIN") or os.path.join(ROOT, "build", "resp-pipeline")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _proxy_preexec(nofile_limit):
    def preexec():
        _die_with_parent()
        if nofile_limit:
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile_limit, nofile_limit))
    return preexec


def free_port():
    return free_ports(1)[0]


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


_handed_out = collections.deque(maxlen=1024)


def port_is_free(port):
    """Nothing holds the port on any IPv4 or IPv6 address (a listener, a connection, TIME_WAIT)."""
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            s = socket.socket(family)
        except OSError:  # no IPv6 on this machine
            continue
        try:
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((address, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_ports(n, low=10000, high=None):
    """n distinct free ports, none handed out lately. They are drawn below the kernel's
    ephemeral range (32768 up here): a port bound to 0 comes from that range, and between the
    choice and the server's bind any outgoing connection of the test (a client, the proxy to
    Redis) could take it as its local port. Machines whose range leaves no room below draw
    above it, or, with no room there either, take the kernel's choice."""
    e_low, e_high = _ephemeral_range()
    if high is None:
        high = e_low - 1
        if high - low < 2000:
            low, high = e_high + 1, 65535
    chosen, tries = [], 0
    while len(chosen) < n:
        tries += 1
        if high - low >= 2000 and tries < 10000:
            p = random.randint(low, high)
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                p = s.getsockname()[1]
        if p not in chosen and p not in _handed_out and port_is_free(p):
            chosen.append(p)
    _handed_out.extend(chosen)
    return chosen


def alive(pid):
    """Whether the process runs (a zombie, exited but not yet reaped, does not count)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def run_threads(count, target):
    """target(i) in `count` threads at once; the exceptions they raised, as text (none: [])."""
    errors = []

    def wrapped(i):
        try:
            target(i)
        except Exception as e:  # collected, reported by the test
            errors.append("client %d: %r" % (i, e))

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def read_until_closed(sock, limit=10.0):
    """Everything the peer sends until it closes the connection (fails after `limit` seconds)."""
    sock.settimeout(limit)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def wait_until(condition, timeout=10.0, what="condition"):
    """Polls condition() until it returns a truthy value; fails the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(0.01)


def black_hole_port(test):
    """A port whose listener's accept queue is full: the kernel drops new SYNs, so a connect(2)
    to it hangs, as to a host that has gone away. Closed by the test's cleanups."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    test.addCleanup(listener.close)
    port = listener.getsockname()[1]
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        test.addCleanup(filler.close)
    return port


# --- a minimal RESP client, to talk to Redis directly --------------------------------------

class RedisError(Exception):
    pass


def resp_encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def resp_read(f):
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RedisError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [resp_read(f) for _ in range(n)]
    if kind == b"=":  # RESP3's verbatim string: a format ("txt:") and the text
        return f.read(int(rest) + 2)[4:-2]
    if kind == b"_":  # RESP3's null
        return None
    if kind == b"%":  # RESP3's map: its keys and values, flat, as RESP2 sends them
        return [resp_read(f) for _ in range(2 * int(rest))]
    raise ValueError("bad RESP line %r" % line)


class RedisClient:
    """context: an ssl.SSLContext to speak TLS with (checking the server as server_hostname)."""
    def __init__(self, port=None, unix_path=None, timeout=10, context=None, server_hostname="localhost"):
        self.closed = False
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(timeout)
            self.sock.connect(unix_path)
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if context is not None:
            self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        self.file = self.sock.makefile("rb")

    def __call__(self, *args):
        self.sock.sendall(resp_encode(*args))
        return resp_read(self.file)

    def send_raw(self, data):
        self.sock.sendall(data)

    def read_reply(self):
        return resp_read(self.file)

    def at_eof(self):
        return self.file.read(1) == b""

    def close(self):
        self.file.close()
        self.sock.close()


class RedisServer:
    def __init__(self, workdir, port=None, extra_args=()):
        self.workdir = workdir
        self.port = port or free_port()
        self.unix_path = os.path.join(workdir, "redis-%d.sock" % self.port)
        self.extra_args = list(extra_args)
        self.proc = None
        self.password = None

    def start(self, wait=True):
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--unixsocket", self.unix_path, "--save", "", "--appendonly", "no",
                "--dir", self.workdir, "--daemonize", "no"] + self.extra_args
        log = open(os.path.join(self.workdir, "redis-%d.log" % self.port), "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, preexec_fn=_die_with_parent)
        log.close()
        if wait:
            wait_until(self._answers, what="redis-server on port %d" % self.port)
        return self

    def _answers(self):
        if self.proc.poll() is not None:
            raise AssertionError("redis-server exited with %s" % self.proc.returncode)
        try:
            c = RedisClient(self.port, timeout=1)
            try:
                if self.password:
                    c("AUTH", self.password)
                return c("PING") == b"PONG"
            finally:
                c.close()
        except (OSError, ConnectionError):
            return False
        except RedisError as e:
            return "NOAUTH" not in str(e) and "LOADING" not in str(e)

    def __call__(self, *args):
        c = RedisClient(self.port)
        try:
            if self.password:
                c("AUTH", self.password)
            return c(*args)
        finally:
            c.close()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# --- the proxy ---------------------------------------------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return "<%d %r %r>" % (self.status, self.headers, self.body[:80])


def quote_key(key):
    if isinstance(key, str):
        key = key.encode()
    return urllib.parse.quote(key, safe="")


class Proxy:
    def __init__(self, workdir, settings, resp=False):
        self.workdir = workdir
        self.port, resp_port, self.admin_port = free_ports(3)
        self.resp_port = resp_port if resp else None
        self.settings = {"proxy": {"listen": "127.0.0.1:%d" % self.port, "workers": "1"},
                         # TTL-only unless a test asks for tracking: the coherence tests do
                         # (test_invalidation.py), the rest pin down the cache's own rules.
                         "redis": {}, "cache": {"invalidation": "off"},
                         "admin": {"listen": "127.0.0.1:%d" % self.admin_port},
                         "log": {"level": "info"}}
        if resp:
            self.settings["proxy"]["resp_listen"] = "127.0.0.1:%d" % self.resp_port
        for section, values in settings.items():
            self.settings.setdefault(section, {}).update(values)
        self.workers = int(self.settings["proxy"]["workers"])
        self.config_path = os.path.join(workdir, "proxy-%d.ini" % self.port)
        self.log_path = os.path.join(workdir, "proxy-%d.log" % self.port)
        self.proc = None

    def write_config(self):
        with open(self.config_path, "w") as f:
            for section, values in self.settings.items():
                f.write("[%s]\n" % section)
                for k, v in values.items():
                    f.write("%s = %s\n" % (k, v))

    def start(self, wait=True, nofile_limit=None, env=None):
        self.write_config()
        log = open(self.log_path, "ab")
        self.log_start = log.tell()  # this run's lines start here (a restart appends)
        self.proc = subprocess.Popen([PROXY_BIN, "-c", self.config_path], stdout=log, stderr=log,
                                     preexec_fn=_proxy_preexec(nofile_limit),
                                     env=dict(os.environ, **(env or {})))
        log.close()
        if wait:
            wait_until(lambda: self._all_workers_ready(), what="%d worker(s) ready" % self.workers)
        return self

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def worker_pids(self):
        """worker id -> pid of its latest start, from this run's part of the log."""
        with open(self.log_path, "rb") as f:
            f.seek(getattr(self, "log_start", 0))
            this_run = f.read().decode(errors="replace")
        pids = {}
        for m in re.finditer(r"worker (\d+) ready \(pid (\d+)\)", this_run):
            pids[int(m.group(1))] = int(m.group(2))
        return pids

    def _all_workers_ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("redis-proxy exited with %s:\n%s" % (self.proc.returncode, self.log()))
        return len(self.worker_pids()) == self.workers

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode if self.proc else None
        self.proc = None
        return code

    def connection(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, conn=None, headers=None):
        own = conn is None
        conn = conn or self.connection()
        try:
            conn.request(method, path, headers=headers or {})
            r = conn.getresponse()
            body = r.read()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, body)
        finally:
            if own:
                conn.close()

    def get(self, key, conn=None):
        return self.request("GET", "/" + quote_key(key), conn)

    def admin(self, path, timeout=10):
        """GET path from the admin endpoint: (status, body as text)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=timeout)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read().decode()
        finally:
            conn.close()

    def resp(self, timeout=10):
        """A RESP connection to the proxy's RESP port: call it with a command, get the reply."""
        return RedisClient(self.resp_port, timeout=timeout)


def worker_pid(conn):
    """The pid of the worker serving a RESP connection to the proxy (from its INFO)."""
    return int(re.search(rb"process_id:(\d+)", conn("INFO")).group(1))


def one_connection_per_worker(proxy, workers):
    """RESP connections until every worker serves one (the kernel picks the worker of each):
    one per worker, the others closed."""
    by_pid = {}
    for _ in range(200):
        c = proxy.resp()
        pid = worker_pid(c)
        if pid in by_pid:
            c.close()
        else:
            by_pid[pid] = c
        if len(by_pid) == workers:
            return list(by_pid.values())
    raise AssertionError("%d connections reached %d of %d workers" % (200, len(by_pid), workers))


class ProxyTestCase(unittest.TestCase):
    """Each test gets a temp dir and a fresh redis-server (unless START_REDIS is False);
    start_proxy() starts the proxy, with settings given per section: cache={"ttl": "1s"}."""
    START_REDIS = True

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="redis-proxy-test-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.redis = self.start_redis() if self.START_REDIS else None

    def start_redis(self, port=None, extra_args=(), password=None):
        r = RedisServer(self.workdir, port, extra_args)
        r.password = password
        self.addCleanup(r.stop)
        return r.start()

    def start_proxy(self, server=None, wait=True, nofile_limit=None, resp=False, env=None, connected=None, **sections):
        """With wait, returns once every worker is ready and, when the server is expected to
        answer (connected; by default: unless it is a RedisServer not running), connected to it:
        a miss is refused (503) until then."""
        server = server or self.redis
        settings = {"redis": {"address": "127.0.0.1:%d" % server.port}}
        for section, values in sections.items():
            settings.setdefault(section, {}).update(values)
        p = Proxy(self.workdir, settings, resp)
        self.addCleanup(self._stop_proxy, p)
        p.start(wait, nofile_limit, env)
        if connected is None:
            connected = getattr(server, "proc", True) is not None
        if wait and connected and p.settings["admin"].get("listen"):
            wait_until(lambda: p.admin("/readyz")[0] == 200, what="every worker connected to Redis")
        return p

    def _stop_proxy(self, p):
        p.stop()
        log = p.log()
        if self._outcome_failed():
            print("\n--- proxy log ---\n" + log)
        # Under `make check SANITIZE=1` a memory error aborts a worker, which the master would
        # quietly respawn: make any sanitizer report fail the test that caused it.
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            if marker in log:
                raise AssertionError("sanitizer report in the proxy log:\n" + log)

    def _outcome_failed(self):
        outcome = getattr(self, "_outcome", None)
        errors = getattr(getattr(outcome, "result", None), "errors", []) + \
            getattr(getattr(outcome, "result", None), "failures", [])
        return any(t is self for t, _ in errors)

    def assertHit(self, response, body):
        self.assertEqual(response.status, 200, response)
        self.assertEqual(response.body, body)
        self.assertEqual(response.header("X-Cache"), "HIT", response)

    def assertMiss(self, response, body):
        self.assertEqual(response.status, 200, response)
        self.assertEqual(response.body, body)
        self.assertEqual(response.header("X-Cache"), "MISS", response)
