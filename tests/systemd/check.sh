#!/usr/bin/env bash
# make check-systemd: the Debian package in a real systemd, used as a user would. systemd is
# not PID 1 on the build machine, but it boots in a container: a minimal Debian 12 root made
# by debootstrap (cached outside the repository, keyed by its package list), booted with
# systemd-nspawn on a throw-away overlay, driven with nsenter. The container is stopped on
# every exit path. Where systemd-nspawn itself cannot start, this says so in one line and
# passes.
set -euo pipefail
cd "$(dirname "$0")/../.."

PACKAGES="systemd,systemd-sysv,dbus,procps,redis-server,curl,adduser"
CACHE=${REDIS_PROXY_SYSTEMD_CACHE:-/var/cache/redis-proxy-systemd}
KEY=$(printf '%s bookworm' "$PACKAGES" | sha1sum | cut -c1-12)
ROOT=$CACHE/root-$KEY
DEB=$(ls build-deb/redis-proxy_*_"$(dpkg --print-architecture)".deb)
# The mirror the machine's apt sources already name.
MIRROR=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
MIRROR=${MIRROR:-$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

passed=0
failed=0
NSPAWN_PID=
CONTAINER=

stop_container() {
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        kill -TERM "$NSPAWN_PID"  # nspawn asks the container's systemd to power off
        for _ in $(seq 100); do kill -0 "$NSPAWN_PID" 2>/dev/null || return 0; sleep 0.1; done
        kill -KILL "$NSPAWN_PID" 2>/dev/null || true
    fi
}
trap stop_container EXIT

in_container() { nsenter -t "$CONTAINER" -a "$@"; }

check() {  # check "what it proves" command...
    local what=$1
    shift
    if "$@"; then
        echo "ok   $what"
        passed=$((passed + 1))
    else
        echo "FAIL $what"
        failed=$((failed + 1))
        in_container journalctl -u redis-proxy --no-pager -n 30 || true
    fi
}

if [ ! -d "$ROOT" ]; then
    echo "check-systemd: making the container root $ROOT (debootstrap, about a minute)"
    mkdir -p "$CACHE"
    rm -rf "$ROOT.tmp"
    # A download of a few hundred packages: tried twice before giving up.
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOT.tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
        { rm -rf "$ROOT.tmp"; debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOT.tmp" "$MIRROR" \
              >"$CACHE/debootstrap.log" 2>&1; } ||
        { tail -20 "$CACHE/debootstrap.log"; exit 1; }
    mv "$ROOT.tmp" "$ROOT"
fi

systemd-nspawn -b -D "$ROOT" --register=no --keep-unit --console=passive --volatile=overlay \
    --bind-ro="$PWD/build-deb:/debs" >"$CACHE/nspawn.log" 2>&1 &
NSPAWN_PID=$!
# The container's PID 1 is the child of nspawn that runs systemd (nspawn forks helpers first).
for _ in $(seq 100); do
    CONTAINER=$(pgrep -P "$NSPAWN_PID" -x systemd | head -1 || true)
    [ -n "$CONTAINER" ] && break
    kill -0 "$NSPAWN_PID" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$CONTAINER" ]; then
    echo "check-systemd: skipped: systemd-nspawn cannot start here: $(tail -1 "$CACHE/nspawn.log")"
    exit 0
fi
state=
for _ in $(seq 120); do
    state=$(in_container systemctl is-system-running 2>/dev/null || true)
    case "$state" in running | degraded) break ;; esac
    sleep 0.25
done
check "the container's systemd is up ($state)" test "$state" = running -o "$state" = degraded

# Install as a user does; apt pulls the runtime libraries.
for attempt in 1 2 3; do  # the network may hiccup; apt itself is not under test here
    in_container apt-get update -q >"$CACHE/apt-update.log" 2>&1 && break
    sleep "$attempt"
done
check "apt install ./redis-proxy_*.deb" \
    in_container env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "/debs/$(basename "$DEB")"
in_container systemctl start redis-proxy
check "systemctl start redis-proxy: active" test "$(in_container systemctl is-active redis-proxy)" = active
check "the STATUS= line shows in systemctl status" \
    bash -c "nsenter -t $CONTAINER -a systemctl status redis-proxy --no-pager | grep -q 'Status: \"2 worker(s), 2 connected to Redis'"
in_container redis-cli set user:42 alice >/dev/null
check "curl GET /user:42 answers the value" test "$(in_container curl -s http://127.0.0.1:8080/user:42)" = alice
# Two workers, a cache each: the kernel spreads connections over them, so ask a few times.
check "then a GET is a cache hit" \
    bash -c "for i in \$(seq 20); do nsenter -t $CONTAINER -a curl -si http://127.0.0.1:8080/user:42; done | grep -q 'X-Cache: HIT'"
check "/readyz" test "$(in_container curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9121/readyz)" = 200

# Reload: edit the file as a user does; the change takes effect and the main PID stays.
main_pid=$(in_container systemctl show -p MainPID --value redis-proxy)
in_container sed -i 's/^capacity = 10000 /capacity = 500 /' /etc/redis-proxy/proxy.ini
in_container systemctl reload redis-proxy
# metric NAME: its value on /metrics; wait_for_metric NAME VALUE: until it has it, for 10 s at most.
metric() { in_container curl -s http://127.0.0.1:9121/metrics | sed -n "s/^redis_proxy_$1 //p"; }
wait_for_metric() { for _ in $(seq 100); do [ "$(metric "$1")" = "$2" ] && break; sleep 0.1; done; }
wait_for_metric cache_capacity_entries 1000
check "systemctl reload: the edited capacity is in effect (2 workers x 500)" test "$(metric cache_capacity_entries)" = 1000
check "systemctl reload keeps the main PID and the service active" \
    test "$(in_container systemctl show -p MainPID --value redis-proxy)" = "$main_pid" -a \
    "$(in_container systemctl is-active redis-proxy)" = active
check "systemctl status shows the STATUS= line after the reload" \
    bash -c "nsenter -t $CONTAINER -a systemctl status redis-proxy --no-pager | grep -q 'Status: \"'"
# Fewer workers: the surplus socket stays open and new connections are steered away from it,
# which the unit's sandbox must allow (a classic BPF program on the socket).
in_container sed -i 's/^workers = auto /workers = 1 /' /etc/redis-proxy/proxy.ini
in_container systemctl reload redis-proxy
wait_for_metric workers 1
check "systemctl reload from 2 workers to 1: one worker left" test "$(metric workers)" = 1
check "and new connections are steered without a warning" \
    bash -c "! nsenter -t $CONTAINER -a journalctl -u redis-proxy -p warning --no-pager -o cat | grep -q 'cannot steer'"
check "curl still answers after it" \
    bash -c "for i in \$(seq 20); do nsenter -t $CONTAINER -a curl -sf http://127.0.0.1:8080/user:42 >/dev/null || exit 1; done"

check "journalctl -p info shows our lines" \
    bash -c "nsenter -t $CONTAINER -a journalctl -u redis-proxy -p info --no-pager -o cat | grep -q 'ready: 2 worker(s)'"
in_container systemctl stop redis-server
for _ in $(seq 50); do
    in_container journalctl -u redis-proxy -p warning --no-pager -o cat | grep -q 'connection lost' && break
    sleep 0.1
done
check "a warning has priority 4, and -p warning shows it" \
    bash -c "nsenter -t $CONTAINER -a journalctl -u redis-proxy -p warning -o json --no-pager | grep 'connection lost' | grep -q '\"PRIORITY\":\"4\"'"
check "-p warning leaves info lines out" \
    bash -c "! nsenter -t $CONTAINER -a journalctl -u redis-proxy -p warning --no-pager -o cat | grep -q 'worker 0 ready'"
in_container systemctl start redis-server

in_container systemctl stop redis-proxy
show() { in_container systemctl show -p "$1" --value redis-proxy; }
check "systemctl stop: inactive, exit status 0" \
    test "$(show ActiveState) $(show ExecMainStatus) $(show Result)" = "inactive 0 success"

check "apt purge" in_container env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q redis-proxy
check "purge leaves no file behind" \
    bash -c "! nsenter -t $CONTAINER -a ls -d /etc/redis-proxy /usr/sbin/redis-proxy /lib/systemd/system/redis-proxy.service 2>/dev/null | grep -q ."

echo "check-systemd: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
