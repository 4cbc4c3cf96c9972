#!/usr/bin/env bash
# make check-fresh: the README's Quickstart on a machine unlike ours, as a newcomer meets it. A
# minimal Debian 12 root (debootstrap minbase, cached; Debian's own /etc/hosts, where localhost is
# ::1 too) with only git, make, sudo and ca-certificates; no systemd as PID 1; a user who is not
# root and uses sudo. In it, a fresh clone of this repository, then exactly the Quickstart:
# `make run` in the background, its curl and redis-cli lines, Ctrl-C, then `make check`. Any
# failure fails the check, and so does anything make run leaves behind. The root is used through
# a throw-away overlay (systemd-nspawn --volatile=overlay): nothing of it outlives the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/debian_root.sh

CACHE=${REDIS_PROXY_FRESH_CACHE:-/var/cache/redis-proxy-fresh}
ROOT=$(debian_root "$CACHE" "git,make,sudo,ca-certificates" check-fresh)
LOG=${REDIS_PROXY_FRESH_LOG:-$PWD/build/check-fresh.log}
mkdir -p "$(dirname "$LOG")"

# What the newcomer types, run as that user in the container: one script, its output in the log.
cat >"$CACHE/newcomer.sh" <<'SCRIPT'
set -euo pipefail
step() { echo "=== $*"; }
git config --global --add safe.directory '*'
git clone -q /src "$HOME/redis-proxy"
cd "$HOME/redis-proxy"
step "make run (in the background)"
setsid make run >run.log 2>&1 &
run=$!
for _ in $(seq 1800); do  # apt, the build, then the proxy: minutes on a fresh machine
    curl -s -o /dev/null http://127.0.0.1:8080/ready-yet && break
    kill -0 $run 2>/dev/null || { cat run.log; echo "make run ended"; exit 1; }
    sleep 0.2
done
head -3 run.log
step "the Quickstart's lines"
redis-cli -s build/redis.sock set user:42 alice
curl -s -i http://127.0.0.1:8080/user:42 | tee answer.txt
grep -q '^alice$' <(tail -1 answer.txt) || { echo "expected alice"; exit 1; }
redis-cli -s build/redis.sock set user:42 bob
for _ in $(seq 50); do [ "$(curl -s http://127.0.0.1:8080/user:42)" = bob ] && break; sleep 0.1; done
[ "$(curl -s http://127.0.0.1:8080/user:42)" = bob ] || { echo "expected bob"; exit 1; }
step "Ctrl-C"
kill -INT -- -$run
wait $run || true
tail -2 run.log
step "nothing left behind"
# (no pgrep on a minimal Debian: the process table read from /proc)
left=$(cat /proc/[0-9]*/comm 2>/dev/null | grep -xE 'redis-server|redis-proxy' || true)
[ -z "$left" ] || { echo "make run left processes: $left"; exit 1; }
[ ! -e build/redis.sock ] && [ ! -e build/redis-proxy.pid ] || { ls -la build; echo "make run left files"; exit 1; }
step "make check"
make check
SCRIPT

# The newcomer, and Debian's own /etc/hosts, in the overlay only.
setup='set -e
useradd --create-home --shell /bin/bash newcomer
echo "newcomer ALL=(ALL) NOPASSWD:ALL" >/etc/sudoers.d/newcomer
printf "127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n" "$(cat /etc/hostname 2>/dev/null || hostname)" >/etc/hosts
exec sudo -u newcomer -H env -i HOME=/home/newcomer PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 bash /fresh/newcomer.sh'
echo "check-fresh: the Quickstart as a newcomer on a fresh Debian 12 (log: $LOG)"
if systemd-nspawn -q -D "$ROOT" --register=no --keep-unit --as-pid2 --volatile=overlay \
        --bind-ro="$PWD:/src" --bind-ro="$CACHE:/fresh" bash -c "$setup" >"$LOG" 2>&1; then
    grep -E '^(=== |system: |OK \()' "$LOG" || true
    echo "check-fresh: passed"
else
    tail -40 "$LOG"
    echo "check-fresh: FAILED (the whole run: $LOG)"
    exit 1
fi
