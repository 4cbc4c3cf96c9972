"""The Dockerfile and compose.yaml, as far as they can be checked without a Docker engine: the
container config is valid, the build stage calls make targets that exist, the runtime stage
installs exactly the libraries the binary links, and the HEALTHCHECK command works."""
import json
import os
import re
import subprocess

import yaml  # python3-yaml (make deps)

from harness import PROXY_BIN, ROOT, ProxyTestCase

DOCKERFILE = os.path.join(ROOT, "Dockerfile")


def dockerfile():
    with open(DOCKERFILE) as f:
        return f.read().replace("\\\n", " ")


class ContainerFilesTest(ProxyTestCase):
    START_REDIS = False

    def test_container_config_is_valid_and_listens_on_every_address(self):
        conf = os.path.join(ROOT, "conf", "docker.ini")
        r = subprocess.run([PROXY_BIN, "-T", "-c", conf], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        for line in ("proxy.listen = *:8080", "proxy.resp_listen = *:6380", "admin.listen = *:9121",
                     "redis.address = redis:6379"):
            self.assertIn(line + "\n", r.stdout)

    def test_build_stage_uses_make_targets_that_exist(self):
        with open(os.path.join(ROOT, "Makefile")) as f:
            targets = set(re.findall(r"^([a-z-]+):", f.read(), re.M))
        runs = " ".join(l for l in dockerfile().splitlines() if l.startswith("RUN "))
        used = set()
        for invocation in re.findall(r"\bmake ((?:[^&]|&(?!&))*)", runs):  # up to the next &&
            used |= {word for word in invocation.split() if not word.startswith("-") and "=" not in word}
        self.assertEqual(used, {"build-deps", "all", "unit", "install"})
        self.assertTrue(set(used) <= targets, used)

    def test_runtime_stage_installs_the_libraries_the_binary_links(self):
        # Direct dependencies only (readelf NEEDED): apt brings what those need in turn.
        needed = re.findall(r"\(NEEDED\).*\[(.*)\]",
                            subprocess.run(["readelf", "-d", PROXY_BIN], capture_output=True, text=True).stdout)
        paths = dict(re.findall(r"^\s*(\S+) => (/\S+)", subprocess.run(["ldd", PROXY_BIN], capture_output=True,
                                                                     text=True).stdout, re.M))
        packages = set()
        for soname in needed:
            if "asan" in soname or "ubsan" in soname:
                continue  # a SANITIZE=1 build
            owner = ""
            for path in (paths[soname], os.path.realpath(paths[soname])):
                owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True).stdout
                if owner:
                    break
            self.assertTrue(owner, soname)
            packages.add(owner.split(":")[0])
        packages -= {"libc6", "libgcc-s1", "libstdc++6"}  # in every Debian image
        runtime = dockerfile().split("FROM debian:bookworm-slim\n")[1]
        installed = set(re.search(r"--no-install-recommends (.*?) &&", runtime).group(1).split())
        self.assertEqual(installed, packages)

    def test_healthcheck_command_asks_readyz_at_the_configured_address(self):
        m = re.search(r'HEALTHCHECK .*CMD (\[.*\])', dockerfile())
        command = json.loads(m.group(1))
        self.assertEqual(command, ["/usr/sbin/redis-proxy", "--health", "-c", "/etc/redis-proxy/proxy.ini"])
        self.redis = self.start_redis()
        proxy = self.start_proxy()
        command = [PROXY_BIN] + command[1:-1] + [proxy.config_path]  # the built binary, the test's file
        self.assertEqual(subprocess.run(command, timeout=10, stdout=subprocess.DEVNULL).returncode, 0)
        proxy.stop()
        self.assertEqual(subprocess.run(command, timeout=10, stderr=subprocess.DEVNULL).returncode, 1)

    def test_compose_file_runs_redis_and_the_proxy(self):
        with open(os.path.join(ROOT, "compose.yaml")) as f:
            services = yaml.safe_load(f)["services"]
        # Without a profile asked for (test_monitoring.py checks the monitoring profile's).
        services = {name: service for name, service in services.items() if "profiles" not in service}
        self.assertEqual(sorted(services), ["redis", "redis-proxy"])
        proxy = services["redis-proxy"]
        self.assertEqual(proxy["build"], ".")
        self.assertEqual(proxy["depends_on"], ["redis"])
        self.assertEqual([s["restart"] for s in services.values()], ["unless-stopped"] * 2)
        self.assertEqual(proxy["ulimits"], {"nofile": {"soft": 65536, "hard": 65536}})
