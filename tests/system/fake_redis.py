"""A Redis stand-in that answers whatever a test tells it to: wrong reply types, extra replies,
half replies, endless bulks. It speaks just enough RESP to be connected to; every command it
reads is recorded. One thread accepts, one thread serves each connection; stop() ends them all.

    fake = FakeRedis().start()          # on a free port of 127.0.0.1
    fake.data[b"k"] = b"v"              # what GET and MGET find by default
    fake.on("GET", b":1\\r\\n")          # from now on, answer every GET with this
    fake.on("GET", lambda args, sock: sock.sendall(b"$3\\r\\nab"))  # or do anything to the socket
"""
import socket
import threading


def bulk(value):
    return b"$-1\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value)


def _parse_command(buf):
    """One multibulk command from the start of buf: (args, bytes used), or (None, 0) if incomplete."""
    if not buf:
        return None, 0
    if not buf.startswith(b"*"):
        raise ValueError("fake redis only reads multibulk commands")
    end = buf.find(b"\r\n")
    if end < 0:
        return None, 0
    n, pos, args = int(buf[1:end]), end + 2, []
    for _ in range(n):
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None, 0
        length = int(buf[pos + 1:end])
        if len(buf) < end + 2 + length + 2:
            return None, 0
        args.append(buf[end + 2:end + 2 + length])
        pos = end + 2 + length + 2
    return args, pos


class FakeRedis:
    def __init__(self):
        self.data = {}
        self.commands = []       # every command read, as a list of bytes arguments
        self.connections = 0     # connections accepted so far
        self.handlers = {}
        # Bytes sent to each new connection before closing it, unasked (a Redis at maxclients:
        # -ERR max number of clients reached); None: served.
        self.refusal = None
        self._stopping = threading.Event()
        self._threads = []
        self._sockets = []
        self._lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]

    def on(self, name, answer):
        """Answer command `name` with `answer`: bytes to send, or fn(args, sock) that does the
        sending itself (returning bytes sends them too)."""
        self.handlers[name.upper()] = answer

    def stall(self, args, sock):
        """A handler that never answers: the connection is stuck on this command, as a Redis busy
        with it would be, and answers nothing after it either (replies come in order)."""
        self._stopping.wait()

    def calls(self, name):
        with self._lock:
            return sum(1 for c in self.commands if c[0].upper() == name.upper().encode())

    def start(self):
        self.listener.listen(64)
        self.listener.settimeout(0.05)
        self._spawn(self._accept_loop)
        return self

    def stop(self):
        self._stopping.set()
        for t in self._threads:
            t.join(5)
        with self._lock:
            for s in self._sockets:
                s.close()
        self.listener.close()

    def close_connections(self):
        """Closes every connection the proxy has open to this fake."""
        with self._lock:
            for s in self._sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                refusal = self.refusal
                if refusal is None:
                    self._sockets.append(sock)
            if refusal is not None:
                try:
                    sock.sendall(refusal)
                except OSError:
                    pass
                sock.close()
                continue
            self._spawn(self._serve, sock)

    def _default_answer(self, args):
        name = args[0].upper()
        if name in (b"PING",):
            return b"+PONG\r\n"
        if name in (b"AUTH", b"SELECT"):
            return b"+OK\r\n"
        if name == b"GET":
            return bulk(self.data.get(args[1]))
        if name == b"PTTL":  # no expiry set: -1, or -2 for no such key
            return b":-1\r\n" if args[1] in self.data else b":-2\r\n"
        if name == b"MGET":
            return b"*%d\r\n" % (len(args) - 1) + b"".join(bulk(self.data.get(k)) for k in args[1:])
        return b"-ERR unknown command\r\n"

    def _serve(self, sock):
        sock.settimeout(0.05)
        buf = b""
        while not self._stopping.is_set():
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while True:
                args, used = _parse_command(buf)
                if args is None:
                    break
                buf = buf[used:]
                with self._lock:
                    self.commands.append(args)
                answer = self.handlers.get(args[0].upper().decode(errors="replace"))
                try:
                    if answer is None:
                        sock.sendall(self._default_answer(args))
                    elif callable(answer):
                        out = answer(args, sock)
                        if out:
                            sock.sendall(out)
                    else:
                        sock.sendall(answer)
                except OSError:
                    return


def subscribe_confirmations(args, sock):
    """A SUBSCRIBE's replies: one confirmation per channel, as Redis sends them (RESP2)."""
    return b"".join(b"*3\r\n$9\r\nsubscribe\r\n%s:%d\r\n" % (bulk(ch), i + 1) for i, ch in enumerate(args[1:]))


def cluster_slots_reply(owners):
    """A CLUSTER SLOTS reply: owners is a list of (first slot, last slot, port) on 127.0.0.1, or
    (first, last, port, name, ip) for a node announced by a host name (Redis 7's
    cluster-preferred-endpoint-type hostname), with its IP in the metadata unless ip is None."""
    out = [b"*%d\r\n" % len(owners)]
    for owner in owners:
        first, last, port = owner[:3]
        if len(owner) == 3:
            node = b"*3\r\n%s:%d\r\n%s" % (bulk(b"127.0.0.1"), port, bulk(b"%040d" % port))
        else:
            name, ip = owner[3], owner[4]
            meta = b"*2\r\n%s%s" % (bulk(b"ip"), bulk(ip.encode())) if ip else b"*0\r\n"
            node = b"*4\r\n%s:%d\r\n%s%s" % (bulk(name.encode()), port, bulk(b"%040d" % port), meta)
        out.append(b"*3\r\n:%d\r\n:%d\r\n%s" % (first, last, node))
    return b"".join(out)

