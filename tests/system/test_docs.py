"""The docs state only what the code and the bench say, and hold together.

- docs/configuration.md's reference table is the output of redis-proxy --settings (the settings
  table in config.cc), and conf/proxy.ini and the man page give every setting with its default.
- docs/operations.md's command-line block is the output of redis-proxy --help.
- docs/performance.md's tables and bench/results.md are what bench/report.py renders from the
  committed bench/results.json, and the plots they show exist.
- The prose written by hand (README.md and docs/*.md outside generated blocks) quotes no measured
  figure: no throughput, ratio, instruction count or latency percentile.
- Every relative link in README.md and docs/*.md reaches a file, and a heading when it names one.

`make docs` rewrites the generated blocks that come from the binary; run as
`test_docs.py --write BINARY` it does that. `make bench` rewrites the others.
"""
import glob
import os
import re
import subprocess
import sys
import tempfile
import unittest

from harness import PROXY_BIN, ROOT

sys.path.insert(0, os.path.join(ROOT, "bench"))
import report  # noqa: E402  (bench/report.py: renders, never measures)

REFERENCE = os.path.join(ROOT, "docs", "configuration.md")
OPERATIONS = os.path.join(ROOT, "docs", "operations.md")
README = os.path.join(ROOT, "README.md")
END = "<!-- end generated -->\n"
SETTINGS_BEGIN = "<!-- generated: redis-proxy --settings -->\n"
HELP_BEGIN = "<!-- generated: redis-proxy --help -->\n"

# Every generated block, whoever writes it: the binary's (make docs) or the bench's (make bench).
GENERATED = re.compile(r"<!-- generated\b.*?-->.*?<!-- end generated -->", re.S)
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.S | re.M)

# What a measured figure looks like in prose. Multipliers written with a space ("3 ×
# command_timeout", "workers × primaries") and sizes are not figures of the bench; a ratio is
# written against its number ("1.04x", "0.83×").
FIGURES = [
    ("a ratio", re.compile(r"(?<![\w.])\d+(?:\.\d+)?[x×](?!\w)")),
    ("a request rate", re.compile(r"\d[\d,.]*\s*k?\s*(?:req/s|requests/s|requests per second)", re.I)),
    ("an instruction count", re.compile(r"\d[\d,.]*\s+instructions", re.I)),
    ("a latency percentile", re.compile(r"\bp(?:50|90|99|99\.9)\b[^|\n]{0,16}?\d+(?:\.\d+)?\s*(?:ms|µs|us)\b")),
    ("a table of measurements", re.compile(r"^\|.*\b(?:req/s|instructions|p99 ms)\s*\|")),
]


def settings_table(binary):
    return subprocess.run([binary, "--settings"], capture_output=True, text=True, timeout=10, check=True).stdout


def help_block(binary):
    text = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10, check=True).stdout
    return "```\n" + text + "```\n"


def settings(binary):
    """(section, name, default) of every setting, as the table says them ("" for an empty one)."""
    found = []
    for line in settings_table(binary).splitlines()[2:]:
        section, name, default = [c.strip() for c in line.strip("|").split(" | ")[:3]]
        found.append((section, name.strip("`"), "" if default == "(empty)" else default.strip("`")))
    return found


def with_block(text, begin, block):
    start, end = text.index(begin) + len(begin), text.index(END, text.index(begin))
    return text[:start] + block + text[end:]


def markdown_files():
    return [README] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def read(path):
    with open(path) as f:
        return f.read()


def prose(text):
    """What a person wrote: the text without its generated blocks and its code blocks."""
    return FENCE.sub("", GENERATED.sub("", text))


def anchors(text):
    """The anchors GitHub makes of a file's headings: lower case, punctuation dropped, spaces to
    hyphens, a repeat numbered."""
    found, seen = set(), {}
    for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*$", FENCE.sub("", text), re.M):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else "%s-%d" % (slug, n))
    return found


class DocsTest(unittest.TestCase):
    def setUp(self):
        self.settings = settings(PROXY_BIN)
        self.assertGreater(len(self.settings), 30)

    def test_the_reference_is_the_settings_table(self):
        text = read(REFERENCE)
        self.assertEqual(text, with_block(text, SETTINGS_BEGIN, settings_table(PROXY_BIN)),
                         "docs/configuration.md is not what the settings table says: run make docs")

    def test_the_command_line_block_is_the_help(self):
        text = read(OPERATIONS)
        self.assertEqual(text, with_block(text, HELP_BEGIN, help_block(PROXY_BIN)),
                         "docs/operations.md's command line is not what --help says: run make docs")

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

    def test_the_man_page_gives_every_default(self):
        man = read(os.path.join(ROOT, "packaging", "redis-proxy.8"))
        sections = dict((m.group(1), m.start()) for m in re.finditer(r"(?m)^\.SS \[(\w+)\]$", man))
        for section, name, default in self.settings:
            part = man[sections[section]:]
            m = re.search(r'(?m)^\.BR %s " \(([^)]*)\)"' % re.escape(name), part)
            self.assertIsNotNone(m, "the man page's [%s] has no %s" % (section, name))
            if default == "":
                self.assertIn(m.group(1), ("none", "empty", "empty: off"), "man page: %s.%s" % (section, name))
            else:
                self.assertEqual(m.group(1), default, "man page: %s.%s" % (section, name))

    def test_the_notes_on_settings_name_only_settings_that_exist(self):
        text = read(REFERENCE)
        notes = text[text.index("## More on some settings"):]
        named = re.findall(r"(?m)^\| (\w+) `(\w+)` \|", notes)
        self.assertGreater(len(named), 10)
        known = set((s, n) for s, n, _ in self.settings)
        for section, name in named:
            self.assertIn((section, name), known, "docs/configuration.md's notes name %s.%s" % (section, name))

    def test_the_readme_minimal_configuration_loads(self):
        # (The "Running on a network" example names a password file: test_auth.py runs that one.)
        text = read(README)
        part = text[text.index("## A minimal configuration"):]
        part = part[:part.index("\n## ", 1)]
        blocks = re.findall(r"(?ms)^```ini\n(.*?)^```", part)
        self.assertTrue(blocks, "the README shows no configuration")
        for block in blocks:
            with tempfile.NamedTemporaryFile("w", suffix=".ini") as f:
                f.write(block)
                f.flush()
                p = subprocess.run([PROXY_BIN, "-t", "-c", f.name], capture_output=True, text=True, timeout=10)
            self.assertEqual(p.returncode, 0, "the README's configuration:\n%s%s" % (block, p.stdout + p.stderr))

    def test_performance_is_what_the_bench_measured(self):
        results = report.load()
        text = read(report.PERFORMANCE_MD)
        names = [m.group(2) for m in report.BLOCK.finditer(text)]
        for name in ("run", "throughput", "targets", "latency", "staleness", "memory", "instructions"):
            self.assertIn(name, names, "docs/performance.md has no generated %s block" % name)
        self.assertEqual(text, report.fill_blocks(text, results),
                         "docs/performance.md is not what bench/results.json says: run python3 bench/report.py")
        self.assertEqual(read(report.RESULTS_MD), report.results_md(results),
                         "bench/results.md is not what bench/results.json says: run python3 bench/report.py")
        for path in report.PLOTS.values():
            self.assertTrue(os.path.exists(path), path)
            self.assertIn("../bench/" + os.path.basename(path), text)

    def test_hand_written_prose_quotes_no_measured_figure(self):
        found = []
        for path in markdown_files():
            for line in prose(read(path)).splitlines():
                for what, pattern in FIGURES:
                    for m in pattern.finditer(line):
                        found.append("%s: %s %r in: %s" % (os.path.relpath(path, ROOT), what, m.group(0), line.strip()))
        self.assertEqual(found, [], "measured figures belong in generated blocks (make bench), not in prose")

    def test_the_figure_check_finds_figures(self):
        for text in ("about 1.04x webdis", "0.83× Redis", "41,997 req/s", "32,740 instructions per hit",
                     "p99 0.760 ms", "| contestant | req/s | p99 ms |"):
            self.assertTrue(any(p.search(text) for _, p in FIGURES), text)
        for text in ("3 × `command_timeout`", "0x1f", "8 bytes per entry", "HTTP/1.1", "a 15-bit float"):
            self.assertFalse(any(p.search(text) for _, p in FIGURES), text)

    def test_relative_links_reach_a_file_and_heading(self):
        broken = []
        for path in markdown_files():
            text = read(path)
            for m in re.finditer(r"\[[^\]]*\]\(([^)\s]+)\)", FENCE.sub("", text)):
                target = m.group(1)
                if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
                    continue
                file_part, _, anchor = target.partition("#")
                where = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
                name = "%s -> %s" % (os.path.relpath(path, ROOT), target)
                if not os.path.exists(where):
                    broken.append(name + ": no such file")
                elif anchor and where.endswith(".md") and anchor not in anchors(read(where)):
                    broken.append(name + ": no such heading")
        self.assertEqual(broken, [])


if __name__ == "__main__" and sys.argv[1:2] == ["--write"]:
    binary = sys.argv[2]
    for path, begin, block in ((REFERENCE, SETTINGS_BEGIN, settings_table(binary)),
                               (OPERATIONS, HELP_BEGIN, help_block(binary))):
        text = read(path)
        with open(path, "w") as f:
            f.write(with_block(text, begin, block))
