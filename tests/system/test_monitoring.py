"""compose.yaml's monitoring profile, checked without a container engine (its images cannot be
pulled here): Prometheus scrapes the admin port conf/docker.ini configures, with a configuration
Prometheus accepts; Grafana reads its provisioning and the dashboard from files of the repository,
at the paths it looks in; the dashboard selects the provisioned datasource; both publish on
localhost only and only when the profile is asked for; Grafana takes no password from the file."""
import json
import os
import re
import shutil
import subprocess
import unittest

import yaml  # python3-yaml (make deps)

from harness import PROXY_BIN, ROOT

PROFILE = "monitoring"
PROMETHEUS_YML = "contrib/prometheus/prometheus.yml"
DASHBOARD = "contrib/grafana/redis-proxy.json"
# Where the images look: prom/prometheus's default --config.file, Grafana's provisioning folders.
PROMETHEUS_CONFIG_PATH = "/etc/prometheus/prometheus.yml"
GRAFANA_PROVISIONING = "/etc/grafana/provisioning"

# The keys of a Prometheus configuration this test knows to be accepted (Prometheus refuses a file
# with an unknown key). A key missing here fails the test: add it once Prometheus's
# configuration reference lists it in that place.
PROMETHEUS_KEYS = {
    "": {"global", "scrape_configs", "scrape_config_files", "rule_files", "alerting", "remote_write",
         "remote_read", "storage", "tracing"},
    "global": {"scrape_interval", "scrape_timeout", "evaluation_interval", "external_labels", "query_log_file",
               "body_size_limit", "sample_limit", "target_limit", "label_limit", "label_name_length_limit",
               "label_value_length_limit", "keep_dropped_targets"},
    "scrape_configs": {"job_name", "scrape_interval", "scrape_timeout", "metrics_path", "scheme", "params",
                       "honor_labels", "honor_timestamps", "static_configs", "file_sd_configs", "dns_sd_configs",
                       "relabel_configs", "metric_relabel_configs", "basic_auth", "authorization", "tls_config",
                       "follow_redirects", "enable_http2", "body_size_limit", "sample_limit", "target_limit",
                       "label_limit", "label_name_length_limit", "label_value_length_limit"},
    "static_configs": {"targets", "labels"},
}
# Prometheus's duration syntax (model.ParseDuration).
DURATION = re.compile(r"^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$")


def load_yaml(path):
    with open(os.path.join(ROOT, path)) as f:
        return yaml.safe_load(f)


def services():
    return load_yaml("compose.yaml")["services"]


def mounts(service):
    """{path in the container: path in the repository} of a service's bind mounts."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            found[target] = os.path.normpath(source[2:])
    return found


def in_repository(service, path):
    """The file of the repository a path in the container is, through its mounts; None if none."""
    for target, source in sorted(mounts(service).items(), key=lambda m: -len(m[0])):
        if path == target or path.startswith(target + "/"):
            return os.path.normpath(os.path.join(source, os.path.relpath(path, target)))
    return None


def files_under(service, folder):
    """The repository's files that the container sees under a folder, through its mounts."""
    found = set()
    for target, source in mounts(service).items():
        if target == folder or target.startswith(folder + "/") or folder.startswith(target + "/"):
            top = in_repository(service, folder) if folder.startswith(target + "/") else source
            if os.path.isfile(os.path.join(ROOT, top)):
                found.add(top)
            for parent, _, names in os.walk(os.path.join(ROOT, top)):
                found |= {os.path.relpath(os.path.join(parent, n), ROOT) for n in names}
    return sorted(found)


def admin_listen():
    r = subprocess.run([PROXY_BIN, "-T", "-c", os.path.join(ROOT, "conf", "docker.ini")], capture_output=True,
                       text=True, timeout=30, check=True)
    return re.search(r"^admin\.listen = (\S+)$", r.stdout, re.M).group(1)


def provisioned_datasource():
    (datasource,) = load_yaml("contrib/grafana/provisioning/datasources/prometheus.yml")["datasources"]
    return datasource


class MonitoringProfileTest(unittest.TestCase):
    def test_prometheus_and_grafana_are_in_the_profile_and_only_they(self):
        profiles = {name: service.get("profiles") for name, service in services().items()}
        self.assertEqual(profiles, {"redis": None, "redis-proxy": None, "prometheus": [PROFILE], "grafana": [PROFILE]})

    def test_images_are_pinned(self):
        for name, image in (("prometheus", "docker.io/prom/prometheus"), ("grafana", "docker.io/grafana/grafana-oss")):
            m = re.match(r"^(.*):(v?\d+\.\d+\.\d+)$", services()[name]["image"])
            self.assertTrue(m, services()[name]["image"])
            self.assertEqual(m.group(1), image)

    def test_every_published_port_is_on_localhost_only(self):
        for name, service in services().items():
            for port in service.get("ports", []):
                self.assertTrue(port.startswith("127.0.0.1:"), "%s publishes %s" % (name, port))
        self.assertIn("127.0.0.1:9090:9090", services()["prometheus"]["ports"])
        self.assertIn("127.0.0.1:3000:3000", services()["grafana"]["ports"])

    def test_prometheus_scrapes_the_proxy_service_at_the_admin_port_of_docker_ini(self):
        listen = admin_listen()
        host, port = listen.rsplit(":", 1)
        self.assertIn(host, ("*", "0.0.0.0", "[::]"), "the admin endpoint must be reachable on the compose network")
        prometheus = services()["prometheus"]
        self.assertEqual(in_repository(prometheus, PROMETHEUS_CONFIG_PATH), PROMETHEUS_YML)
        self.assertIn("redis-proxy", prometheus["depends_on"])
        (job,) = load_yaml(PROMETHEUS_YML)["scrape_configs"]
        self.assertEqual(job["job_name"], "redis-proxy")
        self.assertEqual(job.get("metrics_path", "/metrics"), "/metrics")
        self.assertEqual(job.get("scheme", "http"), "http")
        targets = [t for static in job["static_configs"] for t in static["targets"]]
        self.assertEqual(targets, ["redis-proxy:" + port])
        self.assertIn("redis-proxy", services())

    def test_prometheus_yml_has_only_keys_prometheus_accepts(self):
        config = load_yaml(PROMETHEUS_YML)

        def keys(mapping, where):
            self.assertIsInstance(mapping, dict, where)
            unknown = set(mapping) - PROMETHEUS_KEYS[where]
            self.assertFalse(unknown, "%s: keys not known to be accepted in %s" % (PROMETHEUS_YML, where or "the top"))

        keys(config, "")
        keys(config.get("global", {}), "global")
        durations = [config.get("global", {}).get(k) for k in ("scrape_interval", "scrape_timeout",
                                                                "evaluation_interval")]
        names = []
        for job in config["scrape_configs"]:
            keys(job, "scrape_configs")
            names.append(job["job_name"])
            self.assertIsInstance(job["job_name"], str)
            durations += [job.get("scrape_interval"), job.get("scrape_timeout")]
            self.assertTrue(job.get("metrics_path", "/").startswith("/"))
            for static in job.get("static_configs", []):
                keys(static, "static_configs")
                for target in static["targets"]:
                    self.assertRegex(target, r"^[A-Za-z0-9.-]+:\d+$")
        self.assertEqual(len(names), len(set(names)), "job names must be unique")
        for duration in durations:
            if duration is not None:
                self.assertRegex(str(duration), DURATION)
                self.assertNotEqual(duration, "")

    @unittest.skipUnless(shutil.which("promtool"), "promtool is not installed (Debian's prometheus package)")
    def test_promtool_accepts_prometheus_yml(self):
        r = subprocess.run(["promtool", "check", "config", os.path.join(ROOT, PROMETHEUS_YML)], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_grafana_reads_provisioning_and_dashboard_from_files_of_the_repository(self):
        grafana = services()["grafana"]
        for source in mounts(grafana).values():
            self.assertTrue(os.path.exists(os.path.join(ROOT, source)), source)
        datasources = in_repository(grafana, GRAFANA_PROVISIONING + "/datasources")
        dashboards = in_repository(grafana, GRAFANA_PROVISIONING + "/dashboards")
        self.assertEqual((datasources, dashboards), ("contrib/grafana/provisioning/datasources",
                                                     "contrib/grafana/provisioning/dashboards"))
        providers = [p for f in sorted(os.listdir(os.path.join(ROOT, dashboards))) if f.endswith((".yml", ".yaml"))
                     for p in load_yaml(os.path.join(dashboards, f))["providers"]]
        loaded = []
        for provider in providers:
            self.assertEqual(provider["type"], "file")
            loaded += [f for f in files_under(grafana, provider["options"]["path"]) if f.endswith(".json")]
        self.assertEqual(loaded, [DASHBOARD])
        home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        self.assertEqual(in_repository(grafana, home), DASHBOARD)

    def test_the_datasource_is_the_profiles_prometheus(self):
        datasource = provisioned_datasource()
        self.assertEqual((datasource["type"], datasource["access"]), ("prometheus", "proxy"))
        published = services()["prometheus"]["ports"][0].rsplit(":", 1)[1]
        self.assertEqual(datasource["url"], "http://prometheus:" + published)
        self.assertEqual(datasource["jsonData"]["timeInterval"], load_yaml(PROMETHEUS_YML)["global"]["scrape_interval"])
        self.assertIn("prometheus", services()["grafana"]["depends_on"])

    def test_the_dashboard_selects_the_provisioned_datasource(self):
        uid = provisioned_datasource()["uid"]
        with open(os.path.join(ROOT, DASHBOARD)) as f:
            dashboard = json.load(f)
        # Provisioning does not fill in an import's ${DS_...} inputs: nothing may use one.
        self.assertNotIn("${DS_", json.dumps({k: v for k, v in dashboard.items() if k != "__inputs"}))
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        variable = variables["datasource"]
        self.assertEqual((variable["type"], variable["query"], variable["current"]["value"]),
                         ("datasource", "prometheus", uid))
        references = [panel.get("datasource") for panel in dashboard["panels"]]
        references += [target.get("datasource") for panel in dashboard["panels"] for target in panel.get("targets", [])]
        references += [v["datasource"] for v in variables.values() if "datasource" in v]
        self.assertGreater(len(references), 30)
        for reference in references:
            self.assertEqual(reference["type"], "prometheus")
            self.assertIn(reference["uid"], ("${datasource}", uid))

    def test_grafana_takes_its_admin_password_from_the_environment_and_will_not_start_without_one(self):
        grafana = services()["grafana"]
        self.assertIsNone(grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"])  # (no value in the file)
        self.assertNotIn("restart", grafana)  # (a missing password is said once, not in a loop)
        shell, flag, script = grafana["entrypoint"]
        self.assertEqual((shell, flag), ("/bin/sh", "-c"))
        self.assertTrue(script.endswith("; exec /run.sh"))  # the image's own entrypoint
        script = script.replace("$$", "$").replace("exec /run.sh", "echo started")  # as compose hands it over
        env = {"PATH": os.environ["PATH"]}
        r = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=10)
        self.assertEqual((r.returncode, r.stdout), (1, ""))
        self.assertIn("GF_SECURITY_ADMIN_PASSWORD", r.stderr)
        env["GF_SECURITY_ADMIN_PASSWORD"] = "chosen"
        r = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=10)
        self.assertEqual((r.returncode, r.stdout), (0, "started\n"))


if __name__ == "__main__":
    unittest.main()
