"""Ownership of what waits on Redis: a command's context belongs to whoever sent it and is
cancelled when that owner goes, so no teardown order can free what a reply still points at.
The cases are those where a reply is still owed when its sender is torn down: a cluster node
that never answers CLIENT TRACKING, at stop, at reload and when the node leaves the map. Under
`make check SANITIZE=1` a use-after-free aborts the worker and fails the test (harness.py)."""
import signal

from fake_redis import FakeRedis, cluster_slots_reply, subscribe_confirmations
from harness import Proxy, ProxyTestCase, wait_until
from test_admin import metric


class FakeClusterNode(FakeRedis):
    """A cluster primary that serves the map it is told and every GET, confirms the tracking
    link's SUBSCRIBE, and (stuck=True) never answers CLIENT TRACKING, nor anything after it."""

    def __init__(self, stuck=True):
        super().__init__()
        self.stuck = stuck
        self.owners = None  # CLUSTER SLOTS: [(first, last, port)]; default: this node owns all
        self.on("CLUSTER", lambda args, sock: cluster_slots_reply(self.owners or [(0, 16383, self.port)]))
        self.on("SUBSCRIBE", subscribe_confirmations)
        self.on("CLIENT", self._client)

    def _client(self, args, sock):
        sub = args[1].upper()
        if sub == b"ID":
            return b":7\r\n"
        if sub == b"TRACKING" and self.stuck:
            return self.stall(args, sock)
        return b"+OK\r\n"

    def tracking_asked(self):
        with self._lock:
            return any(c[:2] == [b"CLIENT", b"TRACKING"] for c in self.commands)


class UnansweredCommandsTest(ProxyTestCase):
    START_REDIS = False

    def node(self, stuck=True):
        n = FakeClusterNode(stuck).start()
        self.addCleanup(n.stop)
        return n

    def start_on(self, nodes, **sections):
        settings = {"redis": {"cluster": "127.0.0.1:%d" % nodes[0].port, "cluster_refresh": "100ms"},
                    "cache": {"invalidation": "tracking"}}
        for section, values in sections.items():
            settings.setdefault(section, {}).update(values)
        p = Proxy(self.workdir, settings)
        self.addCleanup(self._stop_proxy, p)
        p.start()
        wait_until(nodes[0].tracking_asked, what="CLIENT TRACKING sent to the node")
        return p

    def assertCleanExit(self, proxy):
        log = proxy.log()
        for bad in ("AddressSanitizer", "runtime error:", "killed by signal", "core dumped"):
            self.assertNotIn(bad, log)

    def test_stop_while_client_tracking_is_unanswered(self):
        node = self.node()
        proxy = self.start_on([node], proxy={"workers": "2"})
        self.assertEqual(proxy.stop(), 0)
        self.assertCleanExit(proxy)

    def test_reload_while_client_tracking_is_unanswered(self):
        node = self.node()
        proxy = self.start_on([node], log={"level": "debug"})
        old = proxy.worker_pids()[0]
        proxy.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "previous-generation worker (pid %d) has exited" % old in proxy.log(),
                   what="the old worker gone")
        self.assertCleanExit(proxy)
        self.assertEqual(proxy.stop(), 0)
        self.assertCleanExit(proxy)

    def test_node_leaves_the_map_while_client_tracking_is_unanswered(self):
        first, second = self.node(), self.node(stuck=False)
        second.data[b"k"] = b"from second"
        proxy = self.start_on([first], log={"level": "debug"})
        # The map moves every slot to the second node: the first one's connections are closed
        # with its CLIENT TRACKING still unanswered.
        first.owners = second.owners = [(0, 16383, second.port)]
        wait_until(lambda: "closing the connections to 127.0.0.1:%d" % first.port in proxy.log(),
                   what="the first node's connections closed")
        wait_until(second.tracking_asked, what="tracking asked of the second node")
        wait_until(lambda: proxy.get("k").body == b"from second", what="reads served by the second node")
        self.assertCleanExit(proxy)
        self.assertEqual(proxy.stop(), 0)
        self.assertCleanExit(proxy)


class NamedNodesTest(ProxyTestCase):
    """Nodes that announce a host name (cluster-preferred-endpoint-type hostname): used by the IP
    Redis 7 gives beside the name, and never connected to at an address made up from the name."""
    START_REDIS = False

    def start_on(self, node):
        p = Proxy(self.workdir, {"redis": {"cluster": "127.0.0.1:%d" % node.port}, "cache": {"invalidation": "off"}})
        self.addCleanup(self._stop_proxy, p)
        return p.start()

    def test_a_name_with_an_ip_beside_it_is_served_by_that_ip(self):
        node = FakeClusterNode(stuck=False).start()
        self.addCleanup(node.stop)
        node.owners = [(0, 16383, node.port, "redis-0.invalid", "127.0.0.1")]
        node.data[b"k"] = b"v"
        proxy = self.start_on(node)
        wait_until(lambda: proxy.get("k").status == 200, what="the key served through the named node")
        self.assertEqual(proxy.get("k").body, b"v")

    def test_a_seed_given_by_name_stands_for_the_node_it_resolved_to(self):
        # A node listed with an empty endpoint is the one that answered: a seed given by name
        # (resolved by the master at start) is that node at the address it resolved to.
        node = FakeClusterNode(stuck=False).start()
        self.addCleanup(node.stop)
        node.owners = [(0, 16383, node.port, "", None)]
        node.data[b"k"] = b"v"
        p = Proxy(self.workdir, {"redis": {"cluster": "localhost:%d" % node.port}, "cache": {"invalidation": "off"}})
        self.addCleanup(self._stop_proxy, p)
        proxy = p.start()
        wait_until(lambda: proxy.get("k").status == 200, what="the key served through the seed's node")
        self.assertEqual(proxy.get("k").body, b"v")

    def test_a_name_without_an_ip_is_refused_not_guessed(self):
        node = FakeClusterNode(stuck=False).start()
        self.addCleanup(node.stop)
        node.owners = [(0, 16383, node.port, "redis-0.invalid", None)]
        node.data[b"k"] = b"v"
        proxy = self.start_on(node)
        wait_until(lambda: "announced by name only (redis-0.invalid)" in proxy.log(), what="the warning")
        r = proxy.get("k")
        self.assertEqual(r.status, 503)
        self.assertGreaterEqual(metric(proxy.admin("/metrics")[1], "redis_proxy_cluster_unaddressable_nodes_total"), 1)
        self.assertEqual(node.calls("GET"), 0)
