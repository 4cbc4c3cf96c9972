#!/usr/bin/env python3
"""make bench: the proxy against its peers, back to back on this machine, in one run.

Loads a throwaway redis-server with 100,000 keys (key:000000000000.., 32-byte values), then runs:
  sweep        each peer's knobs, a short run per setting, to run it at its fastest below:
               webdis threads x pool_size x output, nutcracker server_connections, redis io-threads
  HTTP hits    wrk against the proxy with 1 and 2 workers (every key cached), a bare evhttp server
               with 1 and 2 processes, nginx, webdis
  HTTP misses  wrk against the proxy with a one-key cache, and webdis (a Redis round trip each)
  RESP hits    redis-benchmark -t get -r 100000 -c 50 at -P 1 and -P 16: proxy (1 and 2 workers),
               redis, nutcracker
  latency      an open-loop paced client at half the proxy's peak HTTP hit rate: the proxy, bare
               evhttp, nginx and webdis, each at that rate (the whole distribution, for the plot)
  memory       bytes per cached entry vs Redis, for three sizes (MEMORY_SIZES: 1,000,000 entries of
               16-byte keys and 32-byte values; 32 and 200; 64 and 1,000, past the slab's classes)
  staleness    time from a SET in Redis until every worker answers the new value (tracking)
  cluster      a 3-primary Redis Cluster behind the proxy: HTTP misses and hits through it (2 workers),
               against redis-benchmark --cluster -t get straight to the cluster
  callgrind    instructions per hit in one worker (noise-free, for tracking between commits)
Prints what it measures as it goes, and writes it all to bench/results.json; bench/report.py renders
bench/results.md, the tables of docs/performance.md and the plots (bench/*.svg) from that file alone.
Every process it starts is stopped on every exit.
"""
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import report

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "system"))
from cluster import RedisCluster, key_slot  # noqa: E402
from harness import (Proxy, RedisClient, RedisServer, _die_with_parent, free_port,  # noqa: E402
                     one_connection_per_worker, resp_encode, resp_read, wait_until)
from tls_certs import make_ca, make_cert  # noqa: E402

BUILD = os.environ.get("BUILD_DIR", os.path.join(ROOT, "build"))
KEYS = 100000
VALUE = b"v" * 32
BARE_BODY = b"0123456789abcdef0123456789abcdef"  # what bench/evhttp_bare.cc answers
DURATION = int(os.environ.get("BENCH_SECONDS", "4"))
PACED_SECONDS = 2
ROUNDS = 3
RESP_ROUNDS = 3
SWEEP_SECONDS = 2
SWEEP_PASSES = 2
CONNECTIONS = 50
MEMORY_ENTRIES = int(os.environ.get("BENCH_MEMORY_ENTRIES", "1000000"))
# (key bytes, value bytes, entries): the first is the bench's own keys; the last is above the
# slab's largest class (SLAB_MAX), where an entry is malloc's block.
MEMORY_SIZES = [(16, 32, MEMORY_ENTRIES), (32, 200, MEMORY_ENTRIES // 2), (64, 1000, MEMORY_ENTRIES // 5)]
STALENESS_WRITES = 300
EXPIRY_KEYS = 200

processes = []


def start(args, name, workdir, **kwargs):
    log = open(os.path.join(workdir, name + ".log"), "ab")
    p = subprocess.Popen(args, stdout=log, stderr=log, preexec_fn=_die_with_parent, **kwargs)
    log.close()
    processes.append(p)
    return p


def stop_all():
    for p in processes:
        if p.poll() is None:
            p.terminate()
    for p in processes:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def port_answers(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def load_redis(port, n, key_format, value, batch=5000):
    c = RedisClient(port, timeout=60)
    for start_index in range(0, n, batch):
        count = min(batch, n - start_index)
        c.send_raw(b"".join(resp_encode("SET", key_format % i, value)
                            for i in range(start_index, start_index + count)))
        for _ in range(count):
            c.read_reply()
    c.close()


def warm_all_workers(proxy, workers, n, key_format):
    """Reads every key through RESP connections until each worker has all of them cached.
    The kernel picks the worker for each connection, so keep opening connections until every
    worker id has been seen."""
    done = set()
    for attempt in range(64):
        c = proxy.resp(timeout=60)
        info = c("INFO").decode()
        worker = int(re.search(r"worker_id:(\d+)", info).group(1))
        if worker not in done:
            for start_index in range(0, n, 1000):
                c("MGET", *[key_format % i for i in range(start_index, min(n, start_index + 1000))])
            keys = int(re.search(r"cache_keys:(\d+)", c("INFO").decode()).group(1))
            assert keys >= n, "worker %d holds %d keys" % (worker, keys)
            done.add(worker)
        c.close()
        if len(done) == workers:
            return
    raise RuntimeError("could not reach every worker")


def run_wrk(port, *script_args, duration=None, scheme="http"):
    duration = duration or DURATION
    out = subprocess.run(["wrk", "-t1", "-c%d" % CONNECTIONS, "-d%ds" % duration, "--latency",
                          "-s", os.path.join(HERE, "random_key.lua"), "%s://127.0.0.1:%d" % (scheme, port), "--"]
                         + list(script_args), capture_output=True, text=True, timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def latency(p):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % p, out, re.M)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    return {"rps": rps, "p50": latency(50), "p99": latency(99), "errors": int(errors.group(1)) if errors else 0}


def run_redis_benchmark(port, pipeline, sweep=False, tls_ca=None):
    n = (150000 if pipeline == 1 else 2000000) // (3 if sweep else 1)
    tls = ["--tls", "--cacert", tls_ca] if tls_ca else []
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "get", "-r", str(KEYS), "-c", str(CONNECTIONS),
                          "-n", str(n), "-P", str(pipeline), "--csv"] + tls,
                         capture_output=True, text=True, timeout=300).stdout
    row = [line for line in out.splitlines() if line.startswith('"GET"')][0]
    fields = [f.strip('"') for f in row.split(",")]
    return {"rps": float(fields[1]), "p50": float(fields[4]), "p99": float(fields[6]), "errors": 0}


def worker_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def redis_used_memory(port):
    info = RedisClient(port)("INFO", "memory").decode()
    return int(re.search(r"used_memory:(\d+)", info).group(1))


def callgrind_worker_total(workdir, redis, run, sections=None):
    """Starts a one-worker proxy under callgrind, calls run(proxy), stops it, and returns the
    instructions the worker executed in its whole life (the dump it writes at exit). `sections`:
    settings beside the defaults, by section."""
    dump_dir = tempfile.mkdtemp(dir=workdir)
    # TTL-only (the harness's default): a hit runs the same code either way, and the counts stay
    # comparable with those of earlier commits.
    settings = {"redis": {"address": "127.0.0.1:%d" % redis.port}}
    settings.update(sections or {})
    proxy = Proxy(workdir, settings, resp=True)
    proxy.write_config()
    log = open(proxy.log_path, "ab")
    proxy.proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + os.path.join(dump_dir, "cg.%p"),
                                   os.path.join(BUILD, "redis-proxy"), "-c", proxy.config_path],
                                  stdout=log, stderr=log, preexec_fn=_die_with_parent)
    log.close()
    processes.append(proxy.proc)
    wait_until(lambda: proxy.worker_pids(), timeout=60, what="worker under valgrind")
    wait_until(lambda: port_answers(proxy.port), timeout=60, what="proxy under valgrind")
    pid = proxy.worker_pids()[0]
    run(proxy)
    proxy.stop()
    with open(os.path.join(dump_dir, "cg.%d" % pid)) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError("no totals in the callgrind dump")


def callgrind_per_request(workdir, redis):
    """Instructions one worker executes per cache hit, counted by callgrind (user space only:
    the proxy, libevent, hiredis, libc; not the kernel). Each kind of request runs twice, 1,000
    and 5,000 times, and the difference is divided by 4,000: start-up, warm-up and shutdown
    cancel out. (A forked worker cannot be driven with callgrind_control: vgdb sees only the
    master.)"""
    key = "key:%012d" % 42
    request = ("GET /%s HTTP/1.1\r\nHost: bench\r\n\r\n" % key).encode()
    # A user with three patterns, the key matching the last: what a pattern check costs at most.
    users = {"users": {"bench": "on >bench-pw ~user:* ~session:* ~key:*"}}
    authorization = "Authorization: Basic %s\r\n" % base64.b64encode(b"bench:bench-pw").decode()
    authenticated = request.replace(b"\r\n\r\n", ("\r\n" + authorization + "\r\n").encode())

    def http_hits(n, request=request):
        def run(proxy):
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=60)
            for i in range(n + 10):  # the first 10 warm the cache and the buffers
                s.sendall(request)
                data = b""
                while not data.endswith(b"\r\n\r\n" + VALUE) and not data.endswith(BARE_BODY):
                    data += s.recv(4096)
            s.close()
        return run

    # Two keys read in turn through a cache of one: every request a miss (a Redis round trip).
    miss_requests = [("GET /key:%012d HTTP/1.1\r\nHost: bench\r\n\r\n" % i).encode() for i in (1, 2)]

    def http_misses(n):
        def run(proxy):
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=60)
            for _ in range(100):  # until the worker has reached Redis (a cluster: read its map)
                s.sendall(miss_requests[0])
                data = b""
                while b"\r\n\r\n" not in data or not (data.endswith(VALUE) or data.endswith(b"unavailable\n")):
                    data += s.recv(4096)
                if data.endswith(VALUE):
                    break
                time.sleep(0.2)
            for i in range(n + 10):
                s.sendall(miss_requests[i % 2])
                data = b""
                while not data.endswith(b"\r\n\r\n" + VALUE):
                    data += s.recv(4096)
            s.close()
        return run

    def resp_hits(n, depth, login=False):
        def run(proxy):
            c = proxy.resp(timeout=60)
            if login:
                c("AUTH", "bench", "bench-pw")
            c("GET", key)
            for _ in range(n // depth):
                c.send_raw(resp_encode("GET", key) * depth)
                for _ in range(depth):
                    c.read_reply()
            c.close()
        return run

    def bare_total(n):
        """The same count for the bare evhttp server (one process): the library's own cost."""
        dump_dir = tempfile.mkdtemp(dir=workdir)
        port = free_port()
        p = start(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + os.path.join(dump_dir, "cg.%p"),
                   os.path.join(BUILD, "bench", "evhttp_bare"), str(port), "1"], "evhttp-bare-callgrind", workdir)
        wait_until(lambda: port_answers(port), timeout=60, what="evhttp-bare under valgrind")

        class Target:
            pass
        target = Target()
        target.port = port
        http_hits(n)(target)
        p.terminate()
        p.wait(30)

        def totals():  # the master's and the worker's, once both are written out
            found = []
            for name in os.listdir(dump_dir):
                with open(os.path.join(dump_dir, name)) as f:
                    found += [int(line.split()[1]) for line in f if line.startswith("totals:")]
            return found if len(found) == 2 else None
        return max(wait_until(totals, timeout=60, what="callgrind dumps"))  # the worker did the work

    access = {"log": {"access": os.path.join(workdir, "access-callgrind.log")}}
    kinds = [("HTTP GET hit, one keep-alive connection", lambda n: http_hits(n), None),
             ("HTTP GET hit, etag = on", lambda n: http_hits(n), {"http": {"etag": "on"}}),
             ("HTTP GET hit, cache_control = max-age=60 (and Age)", lambda n: http_hits(n),
              {"http": {"cache_control": "max-age=60"}}),
             ("HTTP GET hit, access log on (a file)", lambda n: http_hits(n), access),
             ("HTTP GET hit, authenticated (Basic; a user with three key patterns)",
              lambda n: http_hits(n, authenticated), users),
             ("RESP GET hit, one request at a time", lambda n: resp_hits(n, 1), None),
             ("RESP GET hit, access log on (a file)", lambda n: resp_hits(n, 1), access),
             ("RESP GET hit, authenticated (a user with three key patterns)", lambda n: resp_hits(n, 1, True),
              users),
             ("RESP GET hit, pipelined 16 deep", lambda n: resp_hits(n, 16), None),
             ("HTTP GET miss (capacity 1, two keys in turn; PTTL and GET)", lambda n: http_misses(n),
              {"cache": {"capacity": "1"}}),
             ("HTTP GET miss, follow_key_expiry = off (GET only)", lambda n: http_misses(n),
              {"cache": {"capacity": "1", "follow_key_expiry": "off"}})]
    results = {}
    for name, make_run, sections in kinds:
        low = callgrind_worker_total(workdir, redis, make_run(1008), sections)
        high = callgrind_worker_total(workdir, redis, make_run(5008), sections)
        results[name] = (high - low) / 4000.0
    # The same misses through a 3-primary cluster: what routing by slot adds to a miss.
    cluster = RedisCluster(workdir, primaries=3, replicas=0)
    try:
        cluster.start()
        processes.extend(s.proc for s in cluster.servers)
        for request in miss_requests:
            key = request.split(b" ")[1][1:]
            owner = next(n["port"] for n in cluster.primaries()
                         if any(a <= key_slot(key) <= b for a, b in n["slots"]))
            RedisClient(owner)("SET", key, VALUE)
        sections = {"redis": {"cluster": " ".join("127.0.0.1:%d" % s.port for s in cluster.servers)},
                    "cache": {"capacity": "1"}}
        low = callgrind_worker_total(workdir, redis, http_misses(1008), sections)
        high = callgrind_worker_total(workdir, redis, http_misses(5008), sections)
        results["HTTP GET miss through a 3-primary cluster (capacity 1; PTTL and GET)"] = (high - low) / 4000.0
    finally:
        cluster.stop()
    results["bare evhttp (bench/evhttp_bare.cc), same requests"] = (bare_total(5008) - bare_total(1008)) / 4000.0
    return results


def measure_memory(workdir, key_len, value_len, entries):
    """Bytes per entry: the growth of one worker's RSS as it caches `entries` keys, against the
    growth of Redis's used_memory as it stores them."""
    key_format = "k:%%0%dd" % (key_len - 2)
    value = b"v" * value_len
    mem_redis = RedisServer(workdir)
    mem_redis.start()
    processes.append(mem_redis.proc)
    before = redis_used_memory(mem_redis.port)
    load_redis(mem_redis.port, entries, key_format, value, batch=10000)
    redis_bytes = (redis_used_memory(mem_redis.port) - before) / entries
    # TTL-only here: an entry costs the proxy the same either way, and a million tracked keys
    # would fill Redis's tracking table (tracking-table-max-keys), whose early invalidations
    # would empty the very cache being measured.
    mem_proxy = start_proxy(workdir, mem_redis, 1, entries, resp=True, invalidation="off")
    worker = mem_proxy.worker_pids()[0]
    rss_before = worker_rss_kb(worker)
    warm_all_workers(mem_proxy, 1, entries, key_format)
    proxy_bytes = (worker_rss_kb(worker) - rss_before) * 1024 / entries
    mem_proxy.stop()
    mem_redis.stop()
    print("memory       %d entries, %d-byte keys, %d-byte values: redis-proxy %.1f bytes/entry (worker RSS), "
          "redis %.1f bytes/entry (used_memory): %.2fx" % (entries, key_len, value_len, proxy_bytes, redis_bytes,
                                                           proxy_bytes / redis_bytes), flush=True)
    return {"key_bytes": key_len, "value_bytes": value_len, "entries": entries, "proxy_bytes": proxy_bytes,
            "redis_bytes": redis_bytes}


BOUNDED_MAX_MB = 16


def measure_bounded_rss(workdir, redis):
    """How much a worker grows under max_memory when the cache is filled with one size of value
    after another (12 slab size classes): the bound holds for the process, not only the cache."""
    proxy = start_proxy(workdir, redis, 1, 10000000, resp=True, invalidation="off",
                        cache={"max_memory": "%dm" % BOUNDED_MAX_MB})
    worker = proxy.worker_pids()[0]
    before = worker_rss_kb(worker)
    c = proxy.resp(timeout=60)
    for size in range(16, 400, 32):
        n = BOUNDED_MAX_MB * 1024 * 1024 // (size + 80) + 1000
        key_format = "b%d:%%010d" % size
        load_redis(redis.port, n, key_format, b"v" * size, batch=10000)
        for start_index in range(0, n, 1000):
            c("MGET", *[key_format % i for i in range(start_index, min(n, start_index + 1000))])
    grown = (worker_rss_kb(worker) - before) / 1024
    c.close()
    proxy.stop()
    return grown


def start_proxy(workdir, redis, workers, capacity, resp=False, invalidation="tracking", cache=None, tls=False,
                client_tls=None):
    """A proxy in front of `redis`, started and registered for cleanup; with tracking (the
    default configuration), once Redis tracks every worker (they cache only from then on).
    tls: to Redis's TLS port (redis.tls_port, its CA redis.tls_ca). client_tls: (cert, key): an
    HTTPS and a TLS RESP address besides the plain ones (proxy.https_port, proxy.tls_resp_port)."""
    cache_settings = {"capacity": str(capacity), "ttl": "1h", "invalidation": invalidation}
    cache_settings.update(cache or {})
    redis_settings = {"address": "127.0.0.1:%d" % redis.port}
    if tls:
        redis_settings = {"address": "127.0.0.1:%d" % redis.tls_port, "tls": "on", "tls_ca_file": redis.tls_ca}
    proxy = Proxy(workdir, {"proxy": {"workers": str(workers)}, "redis": redis_settings,
                            "cache": cache_settings, "log": {"level": "info"}}, resp=resp)
    if client_tls:
        proxy.https_port, proxy.tls_resp_port = free_port(), free_port()
        proxy.settings["proxy"]["listen"] += ", 127.0.0.1:%d tls" % proxy.https_port
        proxy.settings["proxy"]["resp_listen"] += ", 127.0.0.1:%d tls" % proxy.tls_resp_port
        proxy.settings["tls"] = {"cert_file": client_tls[0], "key_file": client_tls[1]}
    proxy.start()
    processes.append(proxy.proc)
    if invalidation == "tracking":
        wait_until(lambda: re.search(r"^redis_proxy_tracking_workers %d$" % workers,
                                     proxy.admin("/metrics")[1], re.M), what="tracking in every worker")
    return proxy


def measure_staleness(proxy, redis, workers, writes):
    """For each write: SET in Redis, then read through one RESP connection per worker until every
    worker answers the new value. Milliseconds from the SET's reply, polling included (each poll
    is a round trip to the proxy, so this is an upper bound)."""
    conns = one_connection_per_worker(proxy, workers)
    writer = RedisClient(redis.port)
    samples = []
    for i in range(writes):
        value = b"v%d" % i
        writer("SET", "staleness:probe", value)
        start = time.monotonic()
        waiting = list(conns)
        while waiting:
            waiting = [c for c in waiting if c("GET", "staleness:probe") != value]
        samples.append((time.monotonic() - start) * 1000)
        for c in conns:  # cached again everywhere before the next write
            c("GET", "staleness:probe")
    writer.close()
    for c in conns:
        c.close()
    samples.sort()
    return {"p50": samples[len(samples) // 2], "p99": samples[int(len(samples) * 0.99)], "max": samples[-1],
            "writes": writes}


def measure_expiry_overstay(proxy, redis, workers, keys):
    """Keys set with PX 300 are cached by every worker; then each is read through every worker
    until all answer nil. Milliseconds from the key's expiry in Redis to that answer, per key
    (negative: the entry ended before the key did; polling makes this an upper bound)."""
    conns = one_connection_per_worker(proxy, workers)
    writer = RedisClient(redis.port)
    names = ["expiry:%d" % i for i in range(keys)]
    expires = {}
    for name in names:
        writer("SET", name, "v", "PX", "300")
        expires[name] = time.monotonic() + 0.3
    for c in conns:
        for name in names:
            c("GET", name)
    samples, waiting = [], set(names)
    while waiting:
        for name in list(waiting):
            if all(c("GET", name) is None for c in conns):
                samples.append((time.monotonic() - expires[name]) * 1000)
                waiting.discard(name)
    writer.close()
    for c in conns:
        c.close()
    samples.sort()
    return {"p50": samples[len(samples) // 2], "p99": samples[int(len(samples) * 0.99)], "max": samples[-1],
            "keys": keys}


def summary(runs):
    """The best run of a contestant, with the spread of all its runs (min-max req/s), and where
    its runs measured CPU time, the mean of each process's per request."""
    b = dict(max(runs, key=lambda r: r["rps"]))
    b["min"], b["max"], b["runs"] = min(r["rps"] for r in runs), b["rps"], len(runs)
    if all("cpu_us" in r for r in runs):
        b["cpu_us"] = {k: sum(r["cpu_us"][k] for r in runs) / len(runs) for k in runs[0]["cpu_us"]}
    return b


TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pids):
    """User and system time of the processes (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / TICK


def redis_cpu_s(port):
    info = RedisClient(port)("INFO", "cpu").decode()
    return sum(float(re.search(r"^%s:([\d.]+)" % k, info, re.M).group(1)) for k in ("used_cpu_user", "used_cpu_sys"))


def with_cpu(run, redis_port, server_pids):
    """run() (a wrk run), with the CPU time each side spent per request: Redis's (its INFO), the
    server's (the proxy's workers or the peer) and the load generator's (wrk, a child of this
    process), in microseconds."""
    r0, s0, c0, t0 = redis_cpu_s(redis_port), process_cpu_s(server_pids), os.times(), time.monotonic()
    result = run()
    r1, s1, c1, t1 = redis_cpu_s(redis_port), process_cpu_s(server_pids), os.times(), time.monotonic()
    n = result["rps"] * (t1 - t0)
    client = c1.children_user + c1.children_system - c0.children_user - c0.children_system
    result["cpu_us"] = {"redis": (r1 - r0) / n * 1e6, "server": (s1 - s0) / n * 1e6, "client": client / n * 1e6}
    return result


def start_webdis(workdir, redis_port, threads, pool_size):
    port = free_port()
    config = os.path.join(workdir, "webdis-%d-%d.json" % (threads, pool_size))
    with open(config, "w") as f:
        f.write('{"redis_host": "127.0.0.1", "redis_port": %d, "http_host": "127.0.0.1", "http_port": %d,'
                ' "threads": %d, "pool_size": %d, "daemonize": false, "database": 0, "verbosity": 0,'
                ' "logfile": "%s/webdis.log"}' % (redis_port, port, threads, pool_size, workdir))
    p = start(["webdis", config], "webdis", workdir)
    wait_until(lambda: port_answers(port), what="webdis")
    webdis_pids[port] = p.pid
    return port, p


webdis_pids = {}  # by port


WEBDIS_OUTPUT = {"txt": ("/GET/", ".txt"), "json": ("/GET/", "")}  # wrk script's prefix and suffix


def start_nutcracker(workdir, redis_port, server_connections):
    port = free_port()
    name = "nutcracker-%d" % server_connections
    with open(os.path.join(workdir, name + ".yml"), "w") as f:
        f.write("bench:\n  listen: 127.0.0.1:%d\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n"
                "  server_connections: %d\n  servers:\n   - 127.0.0.1:%d:1\n" % (port, server_connections, redis_port))
    start(["nutcracker", "-c", os.path.join(workdir, name + ".yml"), "-s", str(free_port()),
           "-o", os.path.join(workdir, name + ".out"), "-p", os.path.join(workdir, name + ".pid")], name, workdir)
    wait_until(lambda: port_answers(port), what=name)
    return port


def sweep(workdir, redis):
    """Each peer's knobs: every setting up at once, SWEEP_PASSES alternating short runs each, the
    best kept. Returns the fastest setting of each peer (per table row) and every measurement,
    for the sweep table. The proxy gets no such help: it is measured as configured by default,
    with workers = 1 and 2 both shown."""
    # (peer, setting, row, run): run() measures it once.
    candidates = []
    for threads in (1, 2):
        for pool_size in (1, 2, 4, 8, 20):
            port, _ = start_webdis(workdir, redis.port, threads, pool_size)
            for output, args in WEBDIS_OUTPUT.items():
                candidates.append(("webdis", {"threads": threads, "pool_size": pool_size, "output": output, "port": port},
                                   "webdis",
                                   lambda port=port, args=args: run_wrk(port, *args, duration=SWEEP_SECONDS)))
    for connections in (1, 2, 4):
        port = start_nutcracker(workdir, redis.port, connections)
        for pipeline in (1, 16):
            candidates.append(("nutcracker", {"server_connections": connections, "port": port},
                               "nutcracker -P %d" % pipeline,
                               lambda port=port, pipeline=pipeline: run_redis_benchmark(port, pipeline, sweep=True)))
    # redis-server with I/O threads: a second server, loaded alike (the first one stays the
    # proxies' backend).
    threaded = RedisServer(workdir, extra_args=["--io-threads", "2", "--io-threads-do-reads", "yes"])
    threaded.start()
    processes.append(threaded.proc)
    load_redis(threaded.port, KEYS, "key:%012d", VALUE)
    for io_threads, server in ((1, redis), (2, threaded)):
        for pipeline in (1, 16):
            candidates.append(("redis-server", {"io-threads": io_threads, "port": server.port}, "redis -P %d" % pipeline,
                               lambda port=server.port, pipeline=pipeline: run_redis_benchmark(port, pipeline, sweep=True)))
    measured = [0.0] * len(candidates)
    for _ in range(SWEEP_PASSES):
        for i, (_, _, _, run) in enumerate(candidates):
            measured[i] = max(measured[i], run()["rps"])
    rows, chosen = [], {}
    for (peer, setting, row, _), rps in zip(candidates, measured):
        rows.append((peer, setting, row, rps))
        if row not in chosen or rps > chosen[row]["rps"]:
            chosen[row] = {"rps": rps, "setting": setting}
    return chosen, rows


def start_nginx(workdir, name, listen, http_settings=""):
    """nginx answering `return 200` with the bench's value, in a folder of its own (`name`):
    `listen`, its server's listen directives; `http_settings`, more of its http block."""
    nginx_dir = os.path.join(workdir, name)
    os.makedirs(os.path.join(nginx_dir, "logs"))
    with open(os.path.join(nginx_dir, "nginx.conf"), "w") as f:
        f.write("worker_processes auto;\nerror_log %s/logs/error.log;\npid %s/nginx.pid;\n"
                "events { worker_connections 4096; }\n"
                "http { access_log off; keepalive_requests 100000000; %sserver { %s "
                "location / { default_type application/octet-stream; return 200 '%s'; } } }\n"
                % (nginx_dir, nginx_dir, http_settings, listen, VALUE.decode()))
    start(["nginx", "-p", nginx_dir, "-c", os.path.join(nginx_dir, "nginx.conf"), "-g", "daemon off;"], name, workdir)


def run_handshakes(port, ca, resumed):
    """New TLS connections a second from one client (openssl s_time: connect, handshake, close),
    without or with resumption (TLS 1.2's session tickets: s_time cannot resume TLS 1.3's)."""
    args = ["openssl", "s_time", "-connect", "127.0.0.1:%d" % port, "-time", str(DURATION), "-CAfile", ca]
    args += ["-reuse", "-tls1_2"] if resumed else ["-new"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=DURATION + 60).stdout
    m = re.findall(r"(\d+) connections in (\d+) real seconds", out)
    return int(m[-1][0]) / int(m[-1][1])


def measure_tls(workdir, redis, ca, cert):
    """TLS for clients beside its plaintext twin, in the same rounds: the proxy's HTTPS and TLS RESP
    hits against its plain ones (the same workers serve both), nginx's HTTPS `return 200` with the
    same certificate, redis-server's own TLS port, and handshakes per second."""
    proxy = start_proxy(workdir, redis, 2, KEYS * 2, resp=True, client_tls=cert)
    warm_all_workers(proxy, 2, KEYS, "key:%012d")
    nginx_port, nginx_tls_port = free_port(), free_port()
    start_nginx(workdir, "nginx-tls",
                "listen 127.0.0.1:%d reuseport; listen 127.0.0.1:%d ssl reuseport;" % (nginx_port, nginx_tls_port),
                "ssl_session_cache shared:tls:10m; ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate %s; "
                "ssl_certificate_key %s; " % cert)
    for port in (nginx_port, nginx_tls_port):
        wait_until(lambda: port_answers(port), what="nginx")
    http_targets = {"proxy 2": (proxy.port, "http"), "proxy 2 https": (proxy.https_port, "https"),
                    "nginx": (nginx_port, "http"), "nginx https": (nginx_tls_port, "https")}
    http = {name: [] for name in http_targets}
    for _ in range(ROUNDS):
        for name, (port, scheme) in http_targets.items():
            http[name].append(run_wrk(port, scheme=scheme))
    resp = {}
    for p in (1, 16):
        targets = {"proxy 2": (proxy.resp_port, None), "proxy 2 tls": (proxy.tls_resp_port, ca[0]),
                   "redis": (redis.port, None), "redis tls": (redis.tls_port, ca[0])}
        runs = {name: [] for name in targets}
        for _ in range(RESP_ROUNDS):
            for name, (port, tls_ca) in targets.items():
                runs[name].append(run_redis_benchmark(port, p, tls_ca=tls_ca))
        resp[str(p)] = {name: summary(r) for name, r in runs.items()}
    handshakes = {}
    for name, port in (("proxy", proxy.tls_resp_port), ("nginx", nginx_tls_port), ("redis", redis.tls_port)):
        for resumed in (False, True):
            handshakes["%s %s" % (name, "resumed" if resumed else "new")] = run_handshakes(port, ca[0], resumed)
    proxy.stop()
    return {"http": {name: summary(r) for name, r in http.items()}, "resp": resp, "handshakes": handshakes}


def run_redis_benchmark_cluster(port):
    """redis-benchmark --cluster -t get: a GET per request, straight to the node of its slot."""
    out = subprocess.run(["redis-benchmark", "--cluster", "-p", str(port), "-t", "get", "-r", str(KEYS),
                          "-c", str(CONNECTIONS), "-n", "150000", "--csv"],
                         capture_output=True, text=True, timeout=300).stdout
    row = [line for line in out.splitlines() if line.startswith('"GET"')][0]
    fields = [f.strip('"') for f in row.split(",")]
    return {"rps": float(fields[1]), "p50": float(fields[4]), "p99": float(fields[6]), "errors": 0}


def measure_cluster(workdir, redis):
    """HTTP hits and misses through the proxy to a 3-primary cluster (2 workers, tracking), and
    redis-benchmark --cluster straight to it, alternating with hits and misses through a proxy in
    front of one Redis (the same moment for both: their ratios are what a cluster costs a hit and
    a miss); then the cluster is stopped."""
    cluster = RedisCluster(workdir, primaries=3, replicas=0)
    try:
        cluster.start()
        processes.extend(s.proc for s in cluster.servers)
        owner = {}
        for n in cluster.primaries():
            for a, b in n["slots"]:
                for slot in range(a, b + 1):
                    owner[slot] = n["port"]
        by_node = {}
        for i in range(KEYS):
            key = b"key:%012d" % i
            by_node.setdefault(owner[key_slot(key)], []).append(key)
        for port, keys in by_node.items():
            c = RedisClient(port)
            for start_index in range(0, len(keys), 5000):
                chunk = keys[start_index:start_index + 5000]
                c.send_raw(b"".join(resp_encode(b"SET", k, VALUE) for k in chunk))
                for _ in chunk:
                    c.read_reply()
            c.close()
        seeds = " ".join("127.0.0.1:%d" % s.port for s in cluster.servers)

        def cluster_proxy(capacity):
            proxy = Proxy(workdir, {"proxy": {"workers": "2"}, "redis": {"cluster": seeds},
                                    "cache": {"capacity": str(capacity), "ttl": "1h", "invalidation": "tracking"},
                                    "log": {"level": "info"}}, resp=True)
            proxy.start()
            processes.append(proxy.proc)
            wait_until(lambda: re.search(r"^redis_proxy_tracking_workers 2$", proxy.admin("/metrics")[1], re.M),
                       what="tracking on every primary in every worker")
            return proxy
        hits, misses = cluster_proxy(KEYS * 2), cluster_proxy(1)
        single = start_proxy(workdir, redis, 2, KEYS * 2, resp=True)
        single_misses = start_proxy(workdir, redis, 2, 1)
        warm_all_workers(hits, 2, KEYS, "key:%012d")
        warm_all_workers(single, 2, KEYS, "key:%012d")
        runs = {"hit": [], "hit one redis": [], "miss": [], "miss one redis": [], "direct": []}
        for _ in range(ROUNDS):
            runs["hit"].append(run_wrk(hits.port))
            runs["hit one redis"].append(run_wrk(single.port))
            runs["miss"].append(run_wrk(misses.port))
            runs["miss one redis"].append(run_wrk(single_misses.port))
            runs["direct"].append(run_redis_benchmark_cluster(cluster.servers[0].port))
        for p in (hits, misses, single, single_misses):
            p.stop()
        return {name: summary(r) for name, r in runs.items()}
    finally:
        cluster.stop()


def main():
    workdir = tempfile.mkdtemp(prefix="redis-proxy-bench-")

    def show(group, name, r):
        print("%-12s %-44s %10.0f req/s  (%d runs: %.0f-%.0f)  p50 %7.3f ms  p99 %7.3f ms"
              % (group, name, r["rps"], r.get("runs", 1), r.get("min", r["rps"]), r.get("max", r["rps"]),
                 r["p50"], r["p99"]), flush=True)

    loadavg_start = list(os.getloadavg())  # other work on the machine, said beside the figures
    try:
        # With a TLS port beside its plain one: the misses over TLS are measured on the same Redis.
        ca = make_ca(workdir)
        cert = make_cert(workdir, "redis", ca)
        tls_port = free_port()
        redis = RedisServer(workdir, extra_args=["--tls-port", str(tls_port), "--tls-cert-file", cert[0],
                                                 "--tls-key-file", cert[1], "--tls-ca-cert-file", ca[0],
                                                 "--tls-auth-clients", "no"])
        redis.tls_port, redis.tls_ca = tls_port, ca[0]
        redis.start()
        processes.append(redis.proc)
        load_redis(redis.port, KEYS, "key:%012d", VALUE)
        print("loaded %d keys into redis-server on port %d" % (KEYS, redis.port), flush=True)

        chosen, sweep_rows = sweep(workdir, redis)
        for peer, setting, row, rps in sweep_rows:
            print("sweep        %-16s %-60s %10.0f req/s" % (row, ", ".join("%s=%s" % kv for kv in setting.items()
                                                                           if kv[0] != "port"), rps), flush=True)

        # Every contestant up at once, each idle while another is measured: the proxy with 1 and
        # with 2 workers, the bare evhttp server with as many processes, each peer at its best.
        proxies = {}
        for workers in (2, 1):
            proxies[workers] = start_proxy(workdir, redis, workers, KEYS * 2, resp=True)
            warm_all_workers(proxies[workers], workers, KEYS, "key:%012d")
        bare_ports = {}
        for processes_count in (2, 1):
            bare_ports[processes_count] = free_port()
            start([os.path.join(BUILD, "bench", "evhttp_bare"), str(bare_ports[processes_count]), str(processes_count)],
                  "evhttp-bare-%d" % processes_count, workdir)
        nginx_port = free_port()
        start_nginx(workdir, "nginx", "listen 127.0.0.1:%d reuseport;" % nginx_port)
        webdis = chosen["webdis"]["setting"]
        webdis_port, webdis_args = webdis["port"], WEBDIS_OUTPUT[webdis["output"]]  # still up from the sweep
        for port, name in list((p, "evhttp-bare") for p in bare_ports.values()) + [(nginx_port, "nginx")]:
            wait_until(lambda: port_answers(port), what=name)

        # Rounds with the contestants alternating, the best run of each kept and the spread shown:
        # a noisy moment on a shared 2-core machine then costs one run, not the comparison.
        http_targets = {"proxy 2": (proxies[2].port, ()), "proxy 1": (proxies[1].port, ()),
                        "bare 2": (bare_ports[2], ()), "bare 1": (bare_ports[1], ()),
                        "nginx": (nginx_port, ()), "webdis": (webdis_port, webdis_args)}
        http = {name: [] for name in http_targets}
        for _ in range(ROUNDS):
            for name, (port, args) in http_targets.items():
                http[name].append(run_wrk(port, *args))
        http = {name: summary(runs) for name, runs in http.items()}
        for name in http_targets:
            show("HTTP hit", name, http[name])

        # RESP: each peer at its best per pipeline depth. With two workers, three busy processes
        # share two cores with redis-benchmark: the one-worker row shows what that costs.
        resp = {}
        for p in (1, 16):
            targets = {"proxy 1": proxies[1].resp_port, "proxy 2": proxies[2].resp_port,
                       "redis": chosen["redis -P %d" % p]["setting"]["port"],
                       "nutcracker": chosen["nutcracker -P %d" % p]["setting"]["port"]}
            runs = {name: [] for name in targets}
            for _ in range(RESP_ROUNDS):
                for name, port in targets.items():
                    runs[name].append(run_redis_benchmark(port, p))
            resp[p] = {name: summary(r) for name, r in runs.items()}
            for name in targets:
                show("RESP -P %d" % p, name, resp[p][name])

        # Latency at half the peak hit rate of the default configuration (workers = auto: 2
        # here): the median of three paced runs; and the same rate against the bare evhttp
        # server, nginx and webdis, to see what the machine itself adds.
        proxy = proxies[2]
        half = http["proxy 2"]["rps"] / 2

        def paced_run(port, path=("/", "")):
            """One open-loop run at the rate `half`; `path`: what goes before and after the key
            (webdis's /GET/ and .txt)."""
            out = subprocess.run([os.path.join(BUILD, "bench", "paced_client"), str(port), str(int(half)),
                                  str(PACED_SECONDS), str(CONNECTIONS), str(KEYS), path[0], path[1]],
                                 capture_output=True, text=True, timeout=PACED_SECONDS + 60).stdout
            fields = dict(kv.split("=", 1) for kv in out.split())
            return {"rps": float(fields["rate"]), "p50": float(fields["p50_ms"]), "p99": float(fields["p99_ms"]),
                    "errors": int(fields["errors"]),
                    "quantiles_ms": [[float(q), float(ms)] for q, ms in
                                     (pair.split(":") for pair in fields["quantiles_ms"].split(","))]}
        runs = {"proxy": [], "bare": [], "nginx": [], "webdis": []}
        for _ in range(3):  # alternating, like the throughput runs: the median p99 of each
            runs["proxy"].append(paced_run(proxy.port))
            runs["bare"].append(paced_run(bare_ports[2]))
            runs["nginx"].append(paced_run(nginx_port))
            runs["webdis"].append(paced_run(webdis_port, webdis_args))
        median = {name: sorted(r, key=lambda run: run["p99"])[1] for name, r in runs.items()}
        paced = {"rate": half, "median": median, "p99_runs": {name: [run["p99"] for run in r] for name, r in runs.items()}}
        for name, label in report.PACED:
            show("paced", label, median[name])
        for name, r in runs.items():
            print("paced        %-6s p99 of the three runs: %s ms" % (name, ", ".join("%.3f" % run["p99"] for run in r)))

        staleness = measure_staleness(proxy, redis, 2, STALENESS_WRITES)
        print("staleness    SET in Redis to every worker answering it: p50 %.3f ms, p99 %.3f ms, max %.3f ms "
              "(%d writes, 2 workers)" % (staleness["p50"], staleness["p99"], staleness["max"], staleness["writes"]),
              flush=True)
        staleness["expiry"] = measure_expiry_overstay(proxy, redis, 2, EXPIRY_KEYS)
        print("staleness    a key's expiry in Redis to every worker answering nil: p50 %.3f ms, p99 %.3f ms, "
              "max %.3f ms (%d keys)" % (staleness["expiry"]["p50"], staleness["expiry"]["p99"],
                                        staleness["expiry"]["max"], staleness["expiry"]["keys"]), flush=True)
        for p in proxies.values():
            p.stop()

        # HTTP misses: a one-key cache, so every request is a Redis round trip.
        # Also with invalidation off: with tracking, Redis records every key each GET reads (its
        # tracking table), which on this machine shares the cores with everything else.
        # And with follow_key_expiry off too: then Redis does for a miss what it does for webdis's
        # request (one GET). The CPU time of Redis, the server and wrk per request shows where a
        # miss's time goes (docs/performance.md).
        miss_proxies = {"proxy 2": start_proxy(workdir, redis, 2, 1), "proxy 1": start_proxy(workdir, redis, 1, 1),
                        "proxy 2 off": start_proxy(workdir, redis, 2, 1, invalidation="off"),
                        "proxy 2 off off": start_proxy(workdir, redis, 2, 1, invalidation="off",
                                                       cache={"follow_key_expiry": "off"}),
                        "proxy 2 tls": start_proxy(workdir, redis, 2, 1, tls=True)}
        misses = {name: [] for name in list(miss_proxies) + ["webdis"]}
        for _ in range(ROUNDS):  # back to back with webdis again: the same moment for all
            for name, p in miss_proxies.items():
                misses[name].append(with_cpu(lambda: run_wrk(p.port), redis.port, list(p.worker_pids().values())))
            misses["webdis"].append(with_cpu(lambda: run_wrk(webdis_port, *webdis_args), redis.port,
                                             [webdis_pids[webdis_port]]))
        misses = {name: summary(r) for name, r in misses.items()}
        for p in miss_proxies.values():
            p.stop()
        for name, r in misses.items():
            show("HTTP miss", name, r)

        # TLS for clients, beside its plaintext twins.
        tls = measure_tls(workdir, redis, ca, make_cert(workdir, "proxy", ca))
        for name, r in tls["http"].items():
            show("TLS HTTP hit", name, r)
        for p, rows in tls["resp"].items():
            for name, r in rows.items():
                show("TLS RESP -P %s" % p, name, r)
        for name, rate in tls["handshakes"].items():
            print("handshakes   %-44s %10.0f per second" % (name, rate), flush=True)

        # Memory per entry, for each size; then the bound on a worker's RSS.
        memory_sizes = [measure_memory(workdir, *size) for size in MEMORY_SIZES]
        mem_redis = RedisServer(workdir)
        mem_redis.start()
        processes.append(mem_redis.proc)
        bounded = measure_bounded_rss(workdir, mem_redis)
        mem_redis.stop()
        print("memory       max_memory %d MB, 12 value sizes each filling the cache in turn: worker RSS grew "
              "%.1f MB" % (BOUNDED_MAX_MB, bounded), flush=True)

        clustered = measure_cluster(workdir, redis)
        show("cluster", "redis-proxy HTTP hits, 2 workers", clustered["hit"])
        show("cluster", "redis-proxy HTTP hits, one Redis, same rounds", clustered["hit one redis"])
        show("cluster", "redis-proxy HTTP misses, 2 workers, capacity 1", clustered["miss"])
        show("cluster", "redis-benchmark --cluster -t get, direct", clustered["direct"])

        # Instructions per hit.
        instructions = callgrind_per_request(workdir, redis)
        for name, count in instructions.items():
            print("callgrind    %-42s %8.0f instructions per request" % (name, count), flush=True)

        cpu = open("/proc/cpuinfo").read()
        model = re.search(r"model name\s*:\s*(.*)", cpu)
        results = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": {"cpus": os.cpu_count(), "cpu_model": model.group(1) if model else "unknown CPU",
                        "loadavg_start": loadavg_start, "loadavg_end": list(os.getloadavg())},
            "method": {"connections": CONNECTIONS, "duration_s": DURATION, "keys": KEYS, "rounds": ROUNDS,
                       "resp_rounds": RESP_ROUNDS, "sweep_seconds": SWEEP_SECONDS, "sweep_passes": SWEEP_PASSES,
                       "paced_seconds": PACED_SECONDS},
            "http_hits": http, "http_misses": misses, "resp": {str(p): rows for p, rows in resp.items()},
            "chosen": {row: without_port(c["setting"]) for row, c in chosen.items()},
            "sweep": [{"peer": peer, "row": row, "setting": without_port(setting), "rps": rps}
                      for peer, setting, row, rps in sweep_rows],
            "paced": paced,
            "memory": {"entries": memory_sizes[0]["entries"], "proxy_bytes": memory_sizes[0]["proxy_bytes"],
                       "redis_bytes": memory_sizes[0]["redis_bytes"], "sizes": memory_sizes,
                       "bounded_max_mb": BOUNDED_MAX_MB, "bounded_grown_mb": bounded},
            "staleness": staleness, "cluster": clustered, "tls": tls,
            "instructions": [[name, count] for name, count in instructions.items()],
        }
        with open(report.RESULTS_JSON, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
        report.write_all(report.load())
        with open(report.RESULTS_MD) as f:
            print("\n" + f.read())
    finally:
        stop_all()
        shutil.rmtree(workdir, True)


def without_port(setting):
    return {k: v for k, v in setting.items() if k != "port"}


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    main()
