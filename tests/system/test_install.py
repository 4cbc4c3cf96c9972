"""make install lays out what the unit and the man page promise, and the man page documents
every setting the binary knows (from -T), so the two cannot drift apart."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import PROXY_BIN, ROOT

MAN_PAGE = os.path.join(ROOT, "packaging", "redis-proxy.8")


class InstallTest(unittest.TestCase):
    def test_make_install_into_destdir(self):
        dest = tempfile.mkdtemp(prefix="redis-proxy-install-")
        self.addCleanup(shutil.rmtree, dest, True)
        build = os.path.basename(os.path.dirname(PROXY_BIN))
        env = dict(os.environ, SANITIZE="1" if build == "build-asan" else "")
        r = subprocess.run(["make", "-s", "-C", ROOT, "install", "DESTDIR=" + dest, "PREFIX=/usr"],
                           capture_output=True, text=True, env=env, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for path, mode in (("usr/sbin/redis-proxy", 0o755), ("etc/redis-proxy/proxy.ini", 0o644),
                           ("lib/systemd/system/redis-proxy.service", 0o644),
                           ("usr/lib/sysusers.d/redis-proxy.conf", 0o644),
                           ("usr/share/man/man8/redis-proxy.8", 0o644)):
            st = os.stat(os.path.join(dest, path))
            self.assertEqual(st.st_mode & 0o777, mode, path)
        binary = os.path.join(dest, "usr/sbin/redis-proxy")
        check = subprocess.run([binary, "-t", "-c", os.path.join(dest, "etc/redis-proxy/proxy.ini")],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stderr)
        # a second install keeps the edited configuration
        with open(os.path.join(dest, "etc/redis-proxy/proxy.ini"), "a") as f:
            f.write("; edited\n")
        r = subprocess.run(["make", "-s", "-C", ROOT, "install", "DESTDIR=" + dest], capture_output=True,
                           text=True, env=env, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(dest, "etc/redis-proxy/proxy.ini")) as f:
            self.assertTrue(f.read().endswith("; edited\n"))
        self.assertTrue(os.path.exists(os.path.join(dest, "etc/redis-proxy/proxy.ini.dist")))

    def test_man_page_documents_every_setting(self):
        printed = subprocess.run([PROXY_BIN, "-T", "-c", "/dev/null"], capture_output=True, text=True,
                                 timeout=30).stdout
        with open(MAN_PAGE) as f:
            page = f.read()
        sections = re.split(r"^\.SS \[(\w+)\]$", page, flags=re.M)
        documented = {sections[i]: sections[i + 1] for i in range(1, len(sections), 2)}
        for line in printed.splitlines():
            key = line.split(" = ")[0]
            section, name = key.split(".", 1)
            self.assertIn(section, documented, key)
            self.assertRegex(documented[section], r"(?m)^\.BR? %s\b" % re.escape(name), key)

    @unittest.skipIf(shutil.which("groff") is None, "groff is not installed")
    def test_man_page_renders_without_warnings(self):
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", MAN_PAGE], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
