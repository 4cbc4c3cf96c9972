"""A TCP relay in front of a real Redis that a test can hold: while held, what clients send is
kept back (their commands wait, as behind a slow network), and released at once on release().
It lets a test make requests pile up in the proxy while Redis itself stays real (its INFO
commandstats then count exactly what the proxy sent).

    relay = Relay(redis.port).start()   # on a free port of 127.0.0.1
    relay.hold(); ...; relay.release()
"""
import socket
import threading


class Relay:
    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._open = threading.Event()  # set: bytes flow to Redis
        self._open.set()
        self._stopping = False
        self._sockets = []
        self._threads = []

    def start(self):
        self.listener.listen(64)
        self._spawn(self._accept_loop)
        return self

    def hold(self):
        self._open.clear()

    def release(self):
        self._open.set()

    def stop(self):
        self._stopping = True
        self._open.set()
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
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream, True)
            self._spawn(self._pump, upstream, client, False)

    def _pump(self, src, dst, to_redis):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if to_redis:
                self._open.wait()
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return
