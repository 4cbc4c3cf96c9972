"""The systemd unit: it verifies cleanly (systemd-analyze verify, any warning fails), scores well
on systemd-analyze security, and says what the daemon relies on. systemd is not PID 1 here, so
both run offline, against a root made of the unit, the built binary and the host's units."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import PROXY_BIN, ROOT

UNIT = os.path.join(ROOT, "systemd", "redis-proxy.service")
ANALYZE = shutil.which("systemd-analyze")


@unittest.skipIf(ANALYZE is None, "systemd-analyze is not installed")
class SystemdUnitTest(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="redis-proxy-unit-")
        self.addCleanup(shutil.rmtree, self.root, True)
        for d in ("usr/sbin", "etc/systemd/system", "lib/systemd"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        shutil.copytree("/lib/systemd/system", os.path.join(self.root, "lib/systemd/system"), symlinks=True)
        shutil.copy(PROXY_BIN, os.path.join(self.root, "usr/sbin/redis-proxy"))
        shutil.copy(UNIT, os.path.join(self.root, "etc/systemd/system"))

    def analyze(self, *args):
        return subprocess.run([ANALYZE] + list(args) + ["--root=" + self.root, "redis-proxy.service"],
                              capture_output=True, text=True, timeout=60)

    def test_unit_verifies_without_a_warning(self):
        # --man=no: the man page is checked where it is installed (make install)
        r = self.analyze("verify", "--man=no")
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""))

    def test_security_exposure_is_low(self):
        r = self.analyze("security", "--offline=true", "--no-pager")
        m = re.search(r"Overall exposure level for redis-proxy.service: ([0-9.]+)", r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        self.assertLessEqual(float(m.group(1)), 2.0, r.stdout)

    def test_unit_runs_the_daemon_as_it_expects(self):
        with open(UNIT) as f:
            lines = set(l.strip() for l in f if "=" in l and not l.startswith("#"))
        for want in ("Type=notify", "ExecReload=/usr/sbin/redis-proxy -c /etc/redis-proxy/proxy.ini -R $MAINPID",
                     "KillMode=mixed", "Restart=on-failure", "RestartPreventExitStatus=78",
                     "ExecStart=/usr/sbin/redis-proxy -c /etc/redis-proxy/proxy.ini", "User=redis-proxy",
                     "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet=",
                     "After=network-online.target redis-server.service", "Wants=network-online.target"):
            self.assertIn(want, lines)
        stop = [l for l in lines if l.startswith("TimeoutStopSec=")][0]
        self.assertGreater(int(stop.split("=")[1]), 10)  # past the default shutdown_timeout
