"""A name server the tests control (UDP, on a free port): A records from a dict that a test can
change while the proxy runs; AAAA questions get no answer records, unknown names NXDOMAIN.
The proxy's workers use it through REDIS_PROXY_RESOLV_CONF (a resolv.conf naming it)."""
import os
import socket
import struct
import threading


class FakeDns:
    def __init__(self, workdir):
        self.records = {}  # name (lower case, no trailing dot) -> IPv4 address, or None: NXDOMAIN
        self.asked = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.resolv_conf = os.path.join(workdir, "resolv-%d.conf" % self.port)
        with open(self.resolv_conf, "w") as f:
            f.write("nameserver 127.0.0.1:%d\n" % self.port)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                query, peer = self.sock.recvfrom(512)
            except OSError:
                return  # closed
            try:
                self.sock.sendto(self._answer(query), peer)
            except (OSError, ValueError, struct.error):
                pass

    def _answer(self, query):
        qid, flags, qdcount = struct.unpack("!HHH", query[:6])
        labels, i = [], 12
        while query[i]:
            labels.append(query[i + 1:i + 1 + query[i]].decode().lower())
            i += 1 + query[i]
        question = query[12:i + 5]
        qtype = struct.unpack("!H", query[i + 1:i + 3])[0]
        name = ".".join(labels)
        self.asked += 1
        ip = self.records.get(name)
        if ip is None:
            return struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question  # NXDOMAIN
        answers = b""
        if qtype == 1:  # A
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0, 4) + socket.inet_aton(ip)
        return struct.pack("!HHHHHH", qid, 0x8180, 1, 1 if answers else 0, 0, 0) + question + answers

    def close(self):
        self.sock.close()
