#!/usr/bin/env bash
# make check-image: the container image built for real and run as a user runs it. Nothing can
# be pulled here, so the base image is made the way check-systemd makes its root: debootstrap
# (minbase, cached outside the repository, keyed by its package list), imported as
# debian:bookworm-slim. buildah builds the Dockerfile from it (--pull=never, the docker format,
# which keeps HEALTHCHECK); podman runs the image on the host's network against a test Redis on
# free ports. Every container and process started is stopped on every exit path. Where podman
# cannot run a container here, this says so in one line and passes, except in CI (CI=true),
# where that fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

CACHE=${REDIS_PROXY_IMAGE_CACHE:-/var/cache/redis-proxy-image}
. tests/lib/debian_root.sh
BASE=docker.io/library/debian:bookworm-slim
IMAGE=localhost/redis-proxy:check
# This machine's podman needs runc and cgroupfs (no systemd as PID 1).
PODMAN=(podman --runtime runc --cgroup-manager=cgroupfs)

passed=0
failed=0
NAME=redis-proxy-check-$$
REDIS_PID=
WORK=$(mktemp -d)

cleanup() {
    "${PODMAN[@]}" rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

LOGS_OF=$NAME  # the container whose log a failure shows
check() {  # check "what it proves" command...
    local what=$1
    shift
    if "$@"; then
        echo "ok   $what"
        passed=$((passed + 1))
    else
        echo "FAIL $what"
        failed=$((failed + 1))
        for c in $LOGS_OF; do "${PODMAN[@]}" logs --tail 30 "$c" 2>&1 || true; done
    fi
}

cannot() {  # cannot "why": skip outside CI, fail in it
    if [ "${CI:-}" = true ]; then
        echo "check-image: FAILED: $1"
        exit 1
    fi
    echo "check-image: skipped: $1"
    exit 0
}

# Every port the check uses, drawn at once by the system tests' harness (below the ephemeral range,
# none twice).
read -r REDIS_PORT HTTP RESP ADMIN HTTPS TLS_RESP C_HTTP C_RESP C_ADMIN < <(/usr/bin/python3 -c \
    'import sys; sys.path.insert(0, "tests/system"); from harness import free_ports; print(*free_ports(9))')

ROOT=$(debian_root "$CACHE" "" check-image)
KEY=$(basename "$ROOT")
if ! "${PODMAN[@]}" image exists "$BASE" || [ "$("${PODMAN[@]}" image inspect -f '{{index .Labels "root"}}' "$BASE" 2>/dev/null)" != "$KEY" ]; then
    tar -C "$ROOT" -c . | "${PODMAN[@]}" import --change "LABEL root=$KEY" --change 'CMD ["bash"]' - "$BASE" >/dev/null ||
        cannot "podman cannot import an image here"
fi

echo "check-image: buildah bud (the build stage builds and runs the unit tests)"
if ! buildah bud --isolation chroot --pull=never --format docker -t "$IMAGE" . >"$WORK/build.log" 2>&1; then
    tail -30 "$WORK/build.log"
    check "buildah bud builds the image" false
    echo "check-image: $passed passed, $failed failed"
    exit 1
fi
check "buildah bud builds the image" true
check "the image keeps its HEALTHCHECK (docker format)" \
    bash -c "buildah inspect --type image -f '{{.Docker.Config.Healthcheck.Test}}' $IMAGE | grep -q -- '--health'"
# Only what building needs, without recommends (make deps with recommends was 204 packages).
installed=$(sed -n 's/.* \([0-9]\+\) newly installed.*/\1/p' "$WORK/build.log" | awk '{ n += $1 } END { print n + 0 }')
check "the build stage installs only what building needs ($installed packages)" test "$installed" -gt 0 -a "$installed" -lt 100

# A test Redis on the host, and a configuration on free ports, mounted as a user would mount it
# (readable by the image's user).
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no --logfile "$WORK/redis.log" &
REDIS_PID=$!
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
# With a certificate mounted read-only beside it: an HTTPS and a TLS RESP address besides the plain
# ones (docs/tls.md). The key is readable by the image's user (a test's; keep a real one 0640 to a
# group the image's user is in).
mkdir -p "$WORK/tls"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/ca.key" -out "$WORK/tls/ca.crt" -days 2 -subj /CN=check-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$WORK/tls/proxy.key" -out "$WORK/proxy.csr" -subj /CN=proxy 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$WORK/proxy.ext"
openssl x509 -req -in "$WORK/proxy.csr" -CA "$WORK/tls/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial \
    -out "$WORK/tls/proxy.crt" -days 2 -extfile "$WORK/proxy.ext" 2>/dev/null
chmod 0755 "$WORK/tls"
chmod 0644 "$WORK/tls/"*
sed -e "s/^listen = \*:8080/listen = 127.0.0.1:$HTTP, 127.0.0.1:$HTTPS tls/" \
    -e "s/^resp_listen = \*:6380/resp_listen = 127.0.0.1:$RESP, 127.0.0.1:$TLS_RESP tls/" \
    -e "s/^listen = \*:9121/listen = 127.0.0.1:$ADMIN/" -e "s/^address = redis:6379/address = 127.0.0.1:$REDIS_PORT/" \
    conf/docker.ini >"$WORK/proxy.ini"
printf '\n[tls]\ncert_file = /etc/redis-proxy/tls/proxy.crt\nkey_file = /etc/redis-proxy/tls/proxy.key\n' >>"$WORK/proxy.ini"
chmod 0644 "$WORK/proxy.ini"
"${PODMAN[@]}" run -d --name "$NAME" --network host --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096 \
    -v "$WORK/proxy.ini:/etc/redis-proxy/proxy.ini:ro" -v "$WORK/tls:/etc/redis-proxy/tls:ro" "$IMAGE" \
    >/dev/null 2>"$WORK/run.log" ||
    cannot "podman cannot run a container here: $(tail -1 "$WORK/run.log")"
for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/readyz")" = 200 ] && break
    sleep 0.1
done
check "the container is ready (/readyz)" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/readyz")" = 200

redis-cli -p "$REDIS_PORT" set user:42 alice >/dev/null
first=$(curl -s -D - -o "$WORK/body" "http://127.0.0.1:$HTTP/user:42" | tr -d '\r' | sed -n 's/^X-Cache: //p')
check "curl GET /user:42: the value, a MISS first" test "$(cat "$WORK/body") $first" = "alice MISS"
hit=no
for _ in $(seq 20); do  # a cache per worker: ask until the worker asked first answers again
    curl -s -D - -o /dev/null "http://127.0.0.1:$HTTP/user:42" | grep -q 'X-Cache: HIT' && { hit=yes; break; }
done
check "then a HIT" test "$hit" = yes
check "redis-cli through the RESP port" test "$(redis-cli -p "$RESP" get user:42)" = alice
check "HTTPS with the certificate mounted read-only" \
    test "$(curl -s --cacert "$WORK/tls/ca.crt" "https://127.0.0.1:$HTTPS/user:42")" = alice
check "redis-cli --tls through the TLS RESP port" \
    test "$(redis-cli -p "$TLS_RESP" --tls --cacert "$WORK/tls/ca.crt" get user:42)" = alice
check "the HEALTHCHECK command passes (podman healthcheck run)" "${PODMAN[@]}" healthcheck run "$NAME"
pid=$("${PODMAN[@]}" inspect -f '{{.State.Pid}}' "$NAME")
check "the proxy runs as the image's user, not root" \
    bash -c "[ \$(stat -c %u /proc/$pid) != 0 ] && [ \"\$(stat -c %U /proc/$pid)\" != root ]"
# Redis gone: the probe fails (three in a row, 30 s, make the container unhealthy).
kill "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null || true
REDIS_PID=
gone=no
for _ in $(seq 100); do
    "${PODMAN[@]}" healthcheck run "$NAME" >/dev/null 2>&1 || { gone=yes; break; }
    sleep 0.1
done
check "with Redis gone the HEALTHCHECK command fails" test "$gone" = yes
start=$(date +%s%N)
"${PODMAN[@]}" stop -t 10 "$NAME" >/dev/null 2>>"$WORK/run.log"  # (podman: no systemd timer to remove here)
took_ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "podman stop: exit status 0 within a second (took ${took_ms} ms)" \
    test "$("${PODMAN[@]}" inspect -f '{{.State.ExitCode}}' "$NAME")" = 0 -a "$took_ms" -lt 1000

# compose.yaml as a user runs it, under podman-compose, with its published ports moved to free
# ones, the image just built, a stand-in for redis:7 (nothing can be pulled), and the rlimits
# this machine's runc can set. Its own network: the proxy finds Redis by its service name. The
# services of a profile (monitoring: images that cannot be pulled here) are left out, as compose
# leaves them out unless asked: podman-compose 1.0.3 (Debian 12's) knows no profiles.
echo "check-image: podman-compose up (compose.yaml)"
buildah bud --isolation chroot --pull=never --format docker -t docker.io/library/redis:7 -f tests/image/redis.Dockerfile \
    tests/image >"$WORK/redis-build.log" 2>&1 || { tail -20 "$WORK/redis-build.log"; exit 1; }
COMPOSE=$PWD/.compose-check-$$.yaml  # beside compose.yaml: its build context is "."
PROJECT=rpcheck$$
/usr/bin/python3 - "$COMPOSE" "$IMAGE" "$C_HTTP" "$C_RESP" "$C_ADMIN" "$(ulimit -Hn)" <<'PY'
import sys, yaml
out, image, http, resp, admin, nofile = sys.argv[1:]
with open("compose.yaml") as f:
    compose = yaml.safe_load(f)
compose["services"] = {name: service for name, service in compose["services"].items() if "profiles" not in service}
proxy = compose["services"]["redis-proxy"]
proxy["image"] = image
proxy["ports"] = [p.replace(":8080:", ":%s:" % http).replace(":6380:", ":%s:" % resp).replace(":9121:", ":%s:" % admin)
                  for p in proxy["ports"]]
for service in compose["services"].values():
    service["ulimits"] = {"nofile": {"soft": int(nofile), "hard": int(nofile)}, "nproc": 4096}
with open(out, "w") as f:
    yaml.safe_dump(compose, f)
PY
compose_cleanup() {
    podman-compose -f "$COMPOSE" -p "$PROJECT" --podman-args "--runtime runc --cgroup-manager=cgroupfs" down -t 1 \
        >/dev/null 2>&1 || true
    podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true  # (podman-compose 1.0 leaves it)
    rm -f "$COMPOSE"
    cleanup
}
trap compose_cleanup EXIT
LOGS_OF="${PROJECT}_redis_1 ${PROJECT}_redis-proxy_1"
podman-compose -f "$COMPOSE" -p "$PROJECT" --podman-args "--runtime runc --cgroup-manager=cgroupfs" up -d \
    >"$WORK/compose.log" 2>&1 || { tail -20 "$WORK/compose.log"; cannot "podman-compose cannot start compose.yaml here"; }
# (up to 30 s: the first compose run on a machine also starts the network's name server)
for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$C_ADMIN/readyz")" = 200 ] && break
    sleep 0.1
done
check "compose: the proxy reaches Redis by its service name (/readyz)" \
    test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$C_ADMIN/readyz")" = 200
podman exec "${PROJECT}_redis_1" redis-cli set user:7 bob >/dev/null
check "compose: curl GET /user:7 on the published port" test "$(curl -s "http://127.0.0.1:$C_HTTP/user:7")" = bob
check "compose: redis-cli on the published RESP port" test "$(redis-cli -p "$C_RESP" get user:7)" = bob
podman-compose -f "$COMPOSE" -p "$PROJECT" --podman-args "--runtime runc --cgroup-manager=cgroupfs" down -t 5 \
    >>"$WORK/compose.log" 2>&1
check "compose: down stops and removes both containers" \
    bash -c "! podman ps -a --format '{{.Names}}' | grep -q '^${PROJECT}_'"

echo "check-image: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
