"""Real Node.js Redis clients (node-redis 4, ioredis 5, from npm: tests/clients) batching their
reads the way their users do: MULTI/EXEC transactions and pipelines, through the RESP port."""
import json
import os
import subprocess
import unittest

from harness import ProxyTestCase

CLIENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients")


class NodeClientsTest(ProxyTestCase):
    def setUp(self):
        if not os.path.isdir(os.path.join(CLIENTS, "node_modules")):
            # CI installs them (.ci/run); elsewhere `make check` tries, and needs the npm registry.
            message = "node clients not installed: npm ci --prefix tests/clients"
            if os.environ.get("CI") == "true":
                self.fail(message)
            raise unittest.SkipTest(message)
        super().setUp()

    def test_node_redis_and_ioredis_transactions_and_pipelines(self):
        proxy = self.start_proxy(resp=True)
        self.redis("SET", "a", "1")
        self.redis("SET", "b", "two")
        run = subprocess.run(["node", os.path.join(CLIENTS, "clients.js"), str(proxy.resp_port)],
                             capture_output=True, timeout=60)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        result = json.loads(run.stdout)
        aborted = "EXECABORT Transaction discarded because of previous errors."
        self.assertEqual(result["nodeRedis"], {"get": "1", "multi": ["1", None, ["1", "two"]], "aborted": aborted})
        self.assertEqual(result["ioredis"], {"multi": [[None, "1"], [None, None], [None, ["1", "two"]]],
                                             "pipeline": [[None, "1"], [None, ["two", None]]],
                                             "aborted": aborted})
        self.assertEqual(self.redis("GET", "a"), b"1")  # the write inside was never sent
