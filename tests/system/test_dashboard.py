"""The Grafana dashboard (contrib/grafana/redis-proxy.json) asks only for what /metrics exports:
every metric each PromQL expression names, and every label it selects or groups by, is in the
page of a running proxy. A dashboard whose panels say "No data" after a rename fails here."""
import json
import os
import re

from harness import ROOT, ProxyTestCase
from test_admin import exposition_problems

DASHBOARD = os.path.join(ROOT, "contrib", "grafana", "redis-proxy.json")
# Labels Prometheus itself adds to every series it scrapes, and a histogram's bucket bound.
SCRAPE_LABELS = {"job", "instance", "le"}


def expressions(dashboard):
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def exported(text):
    """Each sample name of the page with the label names it carries."""
    found = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(?:\{([^}]*)\})? ", line)
        if m:
            labels = set(re.findall(r'([a-z_]+)="', m.group(2) or ""))
            found.setdefault(m.group(1), set()).update(labels)
    return found


class DashboardTest(ProxyTestCase):
    def test_every_expression_names_metrics_and_labels_the_proxy_exports(self):
        with open(DASHBOARD) as f:
            dashboard = json.load(f)
        proxy = self.start_proxy(resp=True, cache={"max_memory": "4m"})
        self.redis("SET", "k", "v")
        proxy.get("k")
        status, text = proxy.admin("/metrics")
        self.assertEqual((status, exposition_problems(text)), (200, []))
        samples = exported(text)
        checked = 0
        for title, expr in expressions(dashboard):
            names = set(re.findall(r"\bredis_proxy_[a-z_]+", expr))
            self.assertTrue(names, "%s: %s names no metric of ours" % (title, expr))
            for name in names:
                self.assertIn(name, samples, "%s: %s is not in /metrics" % (title, name))
                checked += 1
            carried = set().union(*(samples[n] for n in names)) | SCRAPE_LABELS
            selected = set(re.findall(r"([a-z_]+)\s*=~?\s*\"", expr))
            grouped = set(l.strip() for by in re.findall(r"\bby \(([^)]*)\)", expr) for l in by.split(","))
            for label in selected | grouped:
                self.assertIn(label, carried, "%s: label %s is on none of %s" % (title, label, sorted(names)))
        self.assertGreater(checked, 30)
        # ... and the check sees what it is there for.
        self.assertNotIn("redis_proxy_requests", samples)  # (only requests_total: a name must be whole)
