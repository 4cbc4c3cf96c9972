"""The docs state only what the code says: the configuration reference in docs/configuration.md is
the output of redis-proxy --settings (the settings table in config.cc), and conf/proxy.ini, the
man page and the README name every setting with its default. `make docs` rewrites the reference;
run as `test_docs.py --write BINARY FILE` it does that."""
import os
import re
import subprocess
import sys
import unittest

from harness import PROXY_BIN, ROOT

REFERENCE = os.path.join(ROOT, "docs", "configuration.md")
BEGIN, END = "<!-- generated: redis-proxy --settings -->\n", "<!-- end generated -->\n"


def settings_table(binary):
    return subprocess.run([binary, "--settings"], capture_output=True, text=True, timeout=10, check=True).stdout


def settings(binary):
    """(section, name, default) of every setting, as the table says them ("" for an empty one)."""
    found = []
    for line in settings_table(binary).splitlines()[2:]:
        section, name, default = [c.strip() for c in line.strip("|").split(" | ")[:3]]
        found.append((section, name.strip("`"), "" if default == "(empty)" else default.strip("`")))
    return found


def with_reference(text, table):
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + table + text[end:]


class DocsTest(unittest.TestCase):
    def setUp(self):
        self.settings = settings(PROXY_BIN)
        self.assertGreater(len(self.settings), 30)

    def test_the_reference_is_the_settings_table(self):
        with open(REFERENCE) as f:
            text = f.read()
        self.assertEqual(text, with_reference(text, settings_table(PROXY_BIN)),
                         "docs/configuration.md is not what the settings table says: run make docs")

    def test_conf_proxy_ini_names_every_setting_and_no_other(self):
        found, section = {}, None
        with open(os.path.join(ROOT, "conf", "proxy.ini")) as f:
            for line in f:
                m = re.match(r"^\[(\w+)\]", line)
                if m:
                    section = m.group(1)
                    continue
                m = re.match(r"^;?\s*(\w+)\s*=\s*([^;]*?)\s*(;.*)?$", line)
                if m and section and section != "users":  # [users]: names, not settings
                    found[(section, m.group(1))] = m.group(2)
        self.assertEqual(sorted(found), sorted((s, n) for s, n, _ in self.settings))
        # Its values are the defaults, but for what the example turns on on purpose.
        on_purpose = {("proxy", "resp_listen"), ("redis", "cluster")}
        for section, name, default in self.settings:
            if (section, name) not in on_purpose:
                self.assertEqual(found[(section, name)], default, "%s.%s" % (section, name))

    def test_the_man_page_and_the_readme_give_every_default(self):
        with open(os.path.join(ROOT, "packaging", "redis-proxy.8")) as f:
            man = f.read()
        sections = dict((m.group(1), m.start()) for m in re.finditer(r"(?m)^\.SS \[(\w+)\]$", man))
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        for section, name, default in self.settings:
            part = man[sections[section]:]
            m = re.search(r'(?m)^\.BR %s " \(([^)]*)\)"' % re.escape(name), part)
            self.assertIsNotNone(m, "the man page's [%s] has no %s" % (section, name))
            if default == "":
                self.assertIn(m.group(1), ("none", "empty", "empty: off"), "man page: %s.%s" % (section, name))
            else:
                self.assertEqual(m.group(1), default, "man page: %s.%s" % (section, name))
            m = re.search(r"(?m)^\| %s \| `%s` \| ([^|]*) \|" % (section, re.escape(name)), readme)
            self.assertIsNotNone(m, "the README's table has no %s.%s" % (section, name))
            given = m.group(1).strip()
            self.assertTrue(given == "`%s`" % default or (default == "" and given.startswith("(empty")),
                            "README: %s.%s is %s, the table says %r" % (section, name, given, default))


if __name__ == "__main__" and sys.argv[1:2] == ["--write"]:
    binary, path = sys.argv[2], sys.argv[3]
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(with_reference(text, settings_table(binary)))
