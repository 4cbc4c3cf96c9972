"""A TCP relay in front of a real Redis that a test can hold: while held, what clients send is
kept back (their commands wait, as behind a slow network), and released at once on release().
It lets a test make requests pile up in the proxy while Redis itself stays real (its INFO
commandstats then count exactly what the proxy sent).

    relay = Relay(redis.port).start()   # on a free port of 127.0.0.1
    relay.hold(); ...; relay.release()  # every connection's commands
    relay.hold(1, to_redis=False, from_redis=True)  # what Redis sends on the second connection
"""
import socket
import struct
import threading

from harness import wait_until


class Relay:
    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._open = threading.Event()  # set: bytes flow to Redis
        self._open.set()
        self._gates = []
        self._upstream_ports = []  # per connection, in accept order: [to Redis, from Redis], set = open
        self._stopping = False
        self._sockets = []
        self._threads = []

    def start(self):
        self.listener.listen(64)
        self._spawn(self._accept_loop)
        return self

    def hold(self, index=None, to_redis=True, from_redis=False):
        """Hold every connection's commands, or one connection's (by accept order) either way."""
        if index is None:
            self._open.clear()
            return
        wait_until(lambda: len(self._gates) > index, what="relay connection %d" % index)
        if to_redis:
            self._gates[index][0].clear()
        if from_redis:
            self._gates[index][1].clear()

    def release(self):
        self._open.set()
        for gates in self._gates:
            for g in gates:
                g.set()

    def connections(self):
        return len(self._gates)

    def index_of(self, redis_addr):
        """The connection whose Redis side is redis_addr ("127.0.0.1:PORT", as CLIENT LIST shows):
        the newest with that port (a closed connection's port may be taken again)."""
        for i in reversed(range(len(self._upstream_ports))):
            if redis_addr == "127.0.0.1:%d" % self._upstream_ports[i]:
                return i
        raise KeyError(redis_addr)

    def stop(self):
        self._stopping = True
        self.release()
        for s in [self.listener] + self._sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(5)

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept_loop(self):
        while not self._stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                # Redis is down: the client is reset, as a connect to Redis itself would be
                # refused (the relay goes on accepting; Redis may come back on its port).
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            self._sockets += [client, upstream]
            gates = [threading.Event(), threading.Event()]
            for g in gates:
                g.set()
            self._upstream_ports.append(upstream.getsockname()[1])
            self._gates.append(gates)
            self._spawn(self._pump, client, upstream, gates[0], True)
            self._spawn(self._pump, upstream, client, gates[1], False)

    def _pump(self, src, dst, gate, to_redis):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if to_redis:
                self._open.wait()
            gate.wait()
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return
