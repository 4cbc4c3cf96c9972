#!/usr/bin/env bash
# make check-systemd: the Debian package in a real systemd, used as a user would. systemd is
# not PID 1 on the build machine, but it boots in a container: a minimal Debian 12 root made
# by debootstrap (cached outside the repository, keyed by its package list), booted with
# systemd-nspawn on a throw-away overlay, in a network namespace of its own (loopback only: it
# never touches a Redis or a port of the host), driven with nsenter. The container is stopped on
# every exit path. Where systemd-nspawn itself cannot start, this says so in one line and
# passes, except in CI (CI=true), where that fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The package's dependencies are in the root already: the container has no network to fetch them.
PACKAGES="systemd,systemd-sysv,dbus,procps,redis-server,curl,adduser,logrotate,libevent-2.1-7,libevent-openssl-2.1-7,libhiredis0.14,libinih1,libsystemd0,libssl3"
CACHE=${REDIS_PROXY_SYSTEMD_CACHE:-/var/cache/redis-proxy-systemd}
DEB=$(ls build-deb/redis-proxy_*_"$(dpkg --print-architecture)".deb)
. tests/lib/debian_root.sh

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

ROOT=$(debian_root "$CACHE" "$PACKAGES" check-systemd)

systemd-nspawn -b -D "$ROOT" --register=no --keep-unit --console=passive --volatile=overlay --private-network \
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
    if [ "${CI:-}" = true ]; then
        echo "check-systemd: FAILED: systemd-nspawn cannot start here: $(tail -1 "$CACHE/nspawn.log")"
        exit 1
    fi
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

check "the container has loopback only (its own network namespace)" \
    test "$(in_container ls /sys/class/net)" = lo
# Install as a user does (its dependencies are in the root: no network here).
check "apt install ./redis-proxy_*.deb" \
    in_container env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "/debs/$(basename "$DEB")"
check "the README and the example config are in /usr/share/doc/redis-proxy" \
    in_container bash -c "ls /usr/share/doc/redis-proxy/README.md* /usr/share/doc/redis-proxy/examples/proxy.ini >/dev/null"
check "the config is the service user's to read only (0640 root:redis-proxy)" \
    test "$(in_container stat -c '%a %U:%G' /etc/redis-proxy/proxy.ini)" = "640 root:redis-proxy"
# An upgrade (the same package again) keeps the owner and mode the admin gave the file since.
in_container chmod 0600 /etc/redis-proxy/proxy.ini
in_container env DEBIAN_FRONTEND=noninteractive dpkg -i "/debs/$(basename "$DEB")" >/dev/null 2>&1
check "an upgrade leaves the config's mode as the admin set it" \
    test "$(in_container stat -c '%a' /etc/redis-proxy/proxy.ini)" = 600
in_container chmod 0640 /etc/redis-proxy/proxy.ini
in_container systemctl start redis-proxy
# The unit as installed, by the systemd that runs it (make check has no systemd to ask).
check "systemd-analyze verify: no warning" \
    test -z "$(in_container systemd-analyze verify --man=no redis-proxy.service 2>&1)"
exposure=$(in_container systemd-analyze security --no-pager redis-proxy.service 2>/dev/null |
           sed -n 's/.*Overall exposure level for redis-proxy.service: \([0-9.]*\).*/\1/p')
check "systemd-analyze security: exposure ${exposure:-unknown}, at most 2.0" \
    awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 2.0) }'
check "systemctl start redis-proxy: active" test "$(in_container systemctl is-active redis-proxy)" = active
# workers = auto: as many as the CPUs the container may use, whatever that is on this runner.
check "the STATUS= line shows in systemctl status" \
    bash -c "nsenter -t $CONTAINER -a systemctl status redis-proxy --no-pager | grep -Eq 'Status: \"([0-9]+) worker\(s\), \1 connected to Redis'"
in_container redis-cli set user:42 alice >/dev/null
check "curl GET /user:42 answers the value" test "$(in_container curl -s http://127.0.0.1:8080/user:42)" = alice
# Two workers, a cache each: the kernel spreads connections over them, so ask a few times.
check "then a GET is a cache hit" \
    bash -c "for i in \$(seq 20); do nsenter -t $CONTAINER -a curl -si http://127.0.0.1:8080/user:42; done | grep -q 'X-Cache: HIT'"
check "/readyz" test "$(in_container curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9121/readyz)" = 200

# Reload: edit the file as a user does; the change takes effect and the main PID stays.
# metric NAME: its value on /metrics; wait_for_metric NAME VALUE: until it has it, for 10 s at most.
metric() { in_container curl -s http://127.0.0.1:9121/metrics | sed -n "s/^redis_proxy_$1 //p"; }
wait_for_metric() { for _ in $(seq 100); do [ "$(metric "$1")" = "$2" ] && break; sleep 0.1; done; }
main_pid=$(in_container systemctl show -p MainPID --value redis-proxy)
workers=$(metric workers)  # one generation's (read during the reload, the retiring one counts too)
in_container sed -i 's/^capacity = 10000 /capacity = 500 /' /etc/redis-proxy/proxy.ini
in_container systemctl reload redis-proxy
wait_for_metric workers "$workers"  # the old generation gone
wait_for_metric cache_capacity_entries $((workers * 500))
check "systemctl reload: the edited capacity is in effect ($workers workers x 500)" \
    test "$(metric cache_capacity_entries)" = $((workers * 500))
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
check "systemctl reload from $workers workers to 1: one worker left" test "$(metric workers)" = 1
check "and new connections are steered without a warning" \
    bash -c "! nsenter -t $CONTAINER -a journalctl -u redis-proxy -p warning --no-pager -o cat | grep -q 'cannot steer'"
check "curl still answers after it" \
    bash -c "for i in \$(seq 20); do nsenter -t $CONTAINER -a curl -sf http://127.0.0.1:8080/user:42 >/dev/null || exit 1; done"

# The access log: turned on by a reload, in the unit's LogsDirectory; logrotate's file moves it
# aside and has the workers open a new one.
in_container sed -i 's|^access = off |access = /var/log/redis-proxy/access.log |' /etc/redis-proxy/proxy.ini
in_container systemctl reload redis-proxy
lines() { in_container cat "$1" 2>/dev/null | grep -c "http GET user:42 200 5 " || true; }
for _ in $(seq 50); do
    in_container curl -s -o /dev/null http://127.0.0.1:8080/user:42
    [ "$(lines /var/log/redis-proxy/access.log)" -ge 1 ] && break
    sleep 0.2
done
check "[log] access: a line per request in /var/log/redis-proxy/access.log" \
    test "$(lines /var/log/redis-proxy/access.log)" -ge 1
check "logrotate -f with the package's file" in_container logrotate -f /etc/logrotate.d/redis-proxy
for _ in $(seq 50); do
    in_container curl -s -o /dev/null http://127.0.0.1:8080/user:42
    [ "$(lines /var/log/redis-proxy/access.log)" -ge 1 ] && break
    sleep 0.2
done
check "after the rotation, new lines go to a new access.log and the old ones stay in access.log.1" \
    test "$(lines /var/log/redis-proxy/access.log)" -ge 1 -a "$(lines /var/log/redis-proxy/access.log.1)" -ge 1

check "journalctl -p info shows our lines" \
    bash -c "nsenter -t $CONTAINER -a journalctl -u redis-proxy -p info --no-pager -o cat | grep -Eq 'ready: [0-9]+ worker\(s\)'"

# A broken file: systemctl reload fails and says why; the running configuration stays.
generation=$(metric config_generation)
in_container cp /etc/redis-proxy/proxy.ini /root/proxy.ini.good
in_container sed -i 's/^ttl = [^ ]*/ttl = banana/' /etc/redis-proxy/proxy.ini
check "systemctl reload with a broken file fails" bash -c "! nsenter -t $CONTAINER -a systemctl reload redis-proxy"
check "and systemctl status says why" \
    bash -c "nsenter -t $CONTAINER -a systemctl status redis-proxy --no-pager -n 20 | grep -q \"invalid value 'banana' for ttl\""
check "and the service keeps serving on the configuration it had" \
    test "$(in_container systemctl is-active redis-proxy) $(metric config_generation)" = "active $generation"

# A start that cannot work (the same broken file) fails once, with the reason, and is not
# restarted in a loop until the start limit hides it.
in_container systemctl stop redis-proxy
in_container systemctl reset-failed redis-proxy 2>/dev/null || true
in_container systemctl start redis-proxy 2>/dev/null || true
show() { in_container systemctl show -p "$1" --value redis-proxy; }
# Restarted, it would wait in "activating" (auto-restart) and reach "failed" only at the start
# limit, with restarts counted.
for _ in $(seq 100); do [ "$(show ActiveState)" = failed ] && break; sleep 0.1; done
check "a start with a broken file: failed, exit status 78, no restart" \
    test "$(show ActiveState) $(show ExecMainStatus) $(show NRestarts)" = "failed 78 0"
check "and systemctl status shows the error line" \
    bash -c "nsenter -t $CONTAINER -a systemctl status redis-proxy --no-pager -n 20 | grep -q \"invalid value 'banana' for ttl\""
in_container cp /root/proxy.ini.good /etc/redis-proxy/proxy.ini
in_container systemctl reset-failed redis-proxy
in_container systemctl start redis-proxy
check "with the file mended it starts" test "$(in_container systemctl is-active redis-proxy)" = active
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

# A user's password as a systemd credential, as the unit's comment says: a root-only file the
# service user cannot read, handed to the service by LoadCredential= (a drop-in).
in_container bash -c 'umask 077; printf "cred-pw-4e2a\n" >/etc/redis-proxy/app.password'
in_container mkdir -p /etc/systemd/system/redis-proxy.service.d
in_container bash -c 'printf "[Service]\nLoadCredential=app-password:/etc/redis-proxy/app.password\n" \
    >/etc/systemd/system/redis-proxy.service.d/credential.conf'
in_container bash -c 'printf "\n[users]\napp = on ~user:*\napp.password_file = /run/credentials/redis-proxy.service/app-password\n" \
    >>/etc/redis-proxy/proxy.ini'
in_container systemctl daemon-reload
in_container systemctl restart redis-proxy
for _ in $(seq 50); do
    [ "$(in_container curl -s -u app:cred-pw-4e2a http://127.0.0.1:8080/user:42)" = alice ] && break
    sleep 0.2
done
check "LoadCredential=: a root-only password file logs the user in" \
    test "$(in_container curl -s -u app:cred-pw-4e2a http://127.0.0.1:8080/user:42)" = alice
check "and without it: 401" \
    test "$(in_container curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/user:42)" = 401
check "and the password is in no log line" \
    bash -c "! nsenter -t $CONTAINER -a journalctl -u redis-proxy --no-pager -o cat | grep -q cred-pw-4e2a"
in_container rm /etc/systemd/system/redis-proxy.service.d/credential.conf /etc/redis-proxy/app.password
in_container cp /root/proxy.ini.good /etc/redis-proxy/proxy.ini
in_container systemctl daemon-reload

# TLS for clients: a certificate in /etc/redis-proxy served on an address marked tls, renewed in
# place and served from the next systemctl reload on; a key that does not match refuses the
# reload, and the certificate in force keeps serving. The certificates are made here (no openssl
# in the container) with two names, to tell which one is served.
TLS_DIR=$(mktemp -d)
trap 'stop_container; rm -rf "$TLS_DIR"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.crt" -days 2 \
    -subj /CN=check-ca 2>/dev/null
for name in proxy-first proxy-renewed; do
    openssl req -newkey rsa:2048 -nodes -keyout "$TLS_DIR/$name.key" -out "$TLS_DIR/$name.csr" -subj "/CN=$name" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\n' >"$TLS_DIR/$name.ext"
    openssl x509 -req -in "$TLS_DIR/$name.csr" -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" -CAcreateserial \
        -out "$TLS_DIR/$name.crt" -days 2 -extfile "$TLS_DIR/$name.ext" 2>/dev/null
done
put() {  # put HOST_FILE PATH MODE: a file of the host into the container, root:redis-proxy
    in_container bash -c "cat >$2 && chown root:redis-proxy $2 && chmod $3 $2" <"$1"
}
put "$TLS_DIR/ca.crt" /root/ca.crt 0644
put "$TLS_DIR/proxy-first.crt" /etc/redis-proxy/proxy.crt 0644
put "$TLS_DIR/proxy-first.key" /etc/redis-proxy/proxy.key 0640
in_container systemctl start redis-server
in_container sed -i 's/^listen = 127.0.0.1:8080 /listen = 127.0.0.1:8080, 127.0.0.1:8443 tls /' /etc/redis-proxy/proxy.ini
in_container sed -i 's|^cert_file = .*|cert_file = /etc/redis-proxy/proxy.crt|; s|^key_file = .*|key_file = /etc/redis-proxy/proxy.key|' \
    /etc/redis-proxy/proxy.ini
in_container systemctl reload redis-proxy
served() {  # the CN of the certificate the HTTPS address serves, and the answer to GET /user:42
    in_container curl -sv --cacert /root/ca.crt https://127.0.0.1:8443/user:42 2>&1 |
        sed -n 's/^\*  subject: CN=\(.*\)$/\1 /p; /^alice$/p' | tr -d '\n'
}
for _ in $(seq 50); do [ "$(served)" = "proxy-first alice" ] && break; sleep 0.2; done
check "a listen address marked tls serves HTTPS with the certificate in /etc/redis-proxy" \
    test "$(served)" = "proxy-first alice"
put "$TLS_DIR/proxy-renewed.crt" /etc/redis-proxy/proxy.crt 0644
put "$TLS_DIR/proxy-renewed.key" /etc/redis-proxy/proxy.key 0640
in_container systemctl reload redis-proxy
for _ in $(seq 50); do [ "$(served)" = "proxy-renewed alice" ] && break; sleep 0.2; done
check "the certificate renewed in place is served after systemctl reload" test "$(served)" = "proxy-renewed alice"
put "$TLS_DIR/proxy-first.key" /etc/redis-proxy/proxy.key 0640
check "a key that does not match its certificate: systemctl reload fails" \
    bash -c "! nsenter -t $CONTAINER -a systemctl reload redis-proxy"
check "and systemctl status says why" \
    bash -c "nsenter -t $CONTAINER -a systemctl status redis-proxy --no-pager -n 20 | grep -q 'key_file in \[tls\]'"
check "and the certificate in force keeps serving" test "$(served)" = "proxy-renewed alice"
in_container cp /root/proxy.ini.good /etc/redis-proxy/proxy.ini
in_container rm -f /etc/redis-proxy/proxy.crt /etc/redis-proxy/proxy.key
in_container systemctl reload redis-proxy

in_container systemctl stop redis-proxy
check "systemctl stop: inactive, exit status 0" \
    test "$(show ActiveState) $(show ExecMainStatus) $(show Result)" = "inactive 0 success"

check "apt purge" in_container env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q redis-proxy
check "purge leaves no file behind" \
    bash -c "! nsenter -t $CONTAINER -a ls -d /etc/redis-proxy /usr/sbin/redis-proxy /lib/systemd/system/redis-proxy.service /var/log/redis-proxy /etc/logrotate.d/redis-proxy 2>/dev/null | grep -q ."

echo "check-systemd: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
