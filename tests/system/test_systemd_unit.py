"""The systemd unit says what the daemon relies on. Whether systemd itself accepts it
(systemd-analyze verify, with no warning) and how exposed it leaves the service
(systemd-analyze security) is asked of a real systemd by make check-systemd
(tests/systemd/check.sh): here, where systemd may not be PID 1 and the user may not be root,
systemd-analyze cannot be trusted to run."""
import os
import unittest

from harness import ROOT

UNIT = os.path.join(ROOT, "systemd", "redis-proxy.service")


class SystemdUnitTest(unittest.TestCase):
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
