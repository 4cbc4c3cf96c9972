"""Certificates for the TLS tests, made with the openssl command: a CA, and certificates it signs
for a server (names and IP addresses in subjectAltName) or a client. Files in the given folder."""
import os
import subprocess


def _run(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)


def make_ca(folder, name="test-ca"):
    """(cert, key) of a new self-signed CA."""
    cert, key = os.path.join(folder, name + ".crt"), os.path.join(folder, name + ".key")
    _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
         "-subj", "/CN=" + name)
    return cert, key


def make_cert(folder, name, ca, dns=("localhost",), ips=("127.0.0.1",), client=False, server=True):
    """(cert, key) signed by ca (its (cert, key)), for the names and addresses given: a server's,
    a client's, or both (a cluster node is each to the others)."""
    cert, key, csr = (os.path.join(folder, name + ext) for ext in (".crt", ".key", ".csr"))
    _run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
    ext = os.path.join(folder, name + ".ext")
    with open(ext, "w") as f:
        alt = ["DNS:" + d for d in dns] + ["IP:" + i for i in ips]
        if alt:
            f.write("subjectAltName=" + ",".join(alt) + "\n")
        uses = (["serverAuth"] if server and not (client and not dns and not ips) else []) + (["clientAuth"] if client else [])
        f.write("extendedKeyUsage=%s\n" % ",".join(uses))
    _run("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-out", cert, "-days", "2",
         "-extfile", ext)
    os.chmod(key, 0o600)
    return cert, key
