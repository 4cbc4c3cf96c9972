"""Running under systemd (Type=notify): the notify protocol over a test NOTIFY_SOCKET, and log
lines with journald priorities when stderr is the journal."""
import os
import re
import signal
import socket

from harness import ProxyTestCase, wait_until


class ServiceManager:
    """A stand-in for systemd's end of NOTIFY_SOCKET: a unix datagram socket that collects what
    the proxy sends."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []

    def receive(self, timeout=10):
        self.sock.settimeout(timeout)
        msg = self.sock.recv(4096).decode()
        self.messages.append(msg)
        return msg

    def wait_for(self, field, timeout=10):
        """Messages until one carries `field` (e.g. READY=1); returns that message."""
        while True:
            msg = self.receive(timeout)
            if field in msg.split("\n"):
                return msg

    def close(self):
        self.sock.close()


class NotifyTest(ProxyTestCase):
    def manager(self):
        m = ServiceManager(os.path.join(self.workdir, "notify.sock"))
        self.addCleanup(m.close)
        return m

    def test_ready_only_once_every_worker_serves_then_stopping(self):
        m = self.manager()
        self.redis("SET", "k", "v")
        proxy = self.start_proxy(wait=False, proxy={"workers": "2"}, env={"NOTIFY_SOCKET": m.path})
        msg = m.wait_for("READY=1")
        # By READY, both workers have started and tried Redis: a GET is answered at once.
        self.assertEqual(proxy.log().count(" ready (pid "), 2, proxy.log())
        self.assertIn("STATUS=2 worker(s), 2 connected to Redis, 0 requests served", msg)
        self.assertEqual(proxy.get("k").status, 200)
        proxy.proc.send_signal(signal.SIGTERM)
        self.assertIn("STOPPING=1", m.wait_for("STOPPING=1"))
        self.assertEqual(proxy.proc.wait(10), 0)

    def test_ready_with_redis_down_says_so(self):
        m = self.manager()
        port = self.redis.port
        self.redis.stop()
        proxy = self.start_proxy(wait=False, env={"NOTIFY_SOCKET": m.path})
        msg = m.wait_for("READY=1")
        self.assertIn("STATUS=1 worker(s), 0 connected to Redis", msg)
        self.assertEqual(proxy.get("k").status, 503)

    def test_without_notify_socket_it_runs_as_ever(self):
        proxy = self.start_proxy(env={"NOTIFY_SOCKET": ""})
        self.redis("SET", "k", "v")
        self.assertEqual(proxy.get("k").status, 200)
        wait_until(lambda: "ready: 1 worker(s)" in proxy.log(), what="ready logged")
        self.assertNotIn("cannot notify", proxy.log())


class LogOncePerProxyTest(ProxyTestCase):
    def test_redis_down_at_start_is_one_warning_per_proxy_not_per_worker(self):
        port = self.redis.port
        self.redis.stop()
        proxy = self.start_proxy(proxy={"workers": "4"}, cache={"invalidation": "tracking"}, connected=False)
        # "ready" once every worker has made its first attempt (and failed: Redis is down).
        wait_until(lambda: "ready: 4 worker(s), 0 connected" in proxy.log(), what="every worker's first attempt")
        log = proxy.log()
        self.assertEqual(log.count("redis 127.0.0.1:%d: cannot connect: Connection refused" % port), 1, log)
        self.assertEqual(log.count("redis 127.0.0.1:%d (invalidation link): cannot connect" % port), 1, log)


class JournalLogTest(ProxyTestCase):
    def test_lines_carry_syslog_priorities_when_stderr_is_the_journal(self):
        # systemd sets JOURNAL_STREAM to stderr's device:inode; here stderr is the log file.
        from harness import Proxy
        port = self.redis.port
        self.redis.stop()
        proxy = Proxy(self.workdir, {"redis": {"address": "127.0.0.1:%d" % port}})
        open(proxy.log_path, "ab").close()
        st = os.stat(proxy.log_path)
        self.addCleanup(self._stop_proxy, proxy)
        proxy.start(env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
        wait_until(lambda: "cannot connect" in proxy.log(), what="a warning")
        lines = proxy.log().splitlines()
        self.assertTrue(all(l.startswith("<") for l in lines), lines)
        self.assertTrue(any(l.startswith("<6>[") and "worker 0 ready" in l for l in lines), lines)
        self.assertTrue(any(l.startswith("<4>[") and "cannot connect" in l for l in lines), lines)
        self.assertFalse(any(re.match(r"<\d>\d{4}-", l) for l in lines), lines)  # no timestamp of our own
        # The journal records the master's PID with every line (the stream is its): its own lines
        # do not repeat it; a worker's say whose they are.
        self.assertTrue(any(l.startswith("<6>redis-proxy starting") for l in lines), lines)
        self.assertFalse(any(l.startswith("<6>[") and "redis-proxy starting" in l for l in lines), lines)

    def test_another_stream_keeps_the_plain_format(self):
        proxy = self.start_proxy(env={"JOURNAL_STREAM": "1:2"})
        # (the first info line: whatever the open files limit, which may add a warning before it)
        first_info = [l for l in proxy.log().splitlines() if " info: " in l][0]
        self.assertRegex(first_info, r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[\d+\] info: ")
