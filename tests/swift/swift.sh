# A real OpenStack Swift for tests: swift 2.38.3 (2026.2, the cycle of
# trove 26.0.0) from PyPI, proxy + account + container + object servers,
# one replica, storage in a plain directory, authenticating with the box's
# Keystone (keystonemiddleware auth_token + swift's keystoneauth), listed
# in Keystone's catalog as object-store. Sourced (bash), after
# tests/box/keystone/keystone.sh has started a Keystone (ks_start). Functions:
#
#   sw_install              the venv $SW_VENV (default .venv-swift) from
#                           requirements.txt beside this file (a hash
#                           compare when it is installed already).
#   sw_start WORK ADDR [PORT [BACKEND_PORT]]
#                           configuration, rings and storage in WORK/swift;
#                           the service user `swift` and the object-store
#                           endpoint http://ADDR:PORT/v1/AUTH_%(project_id)s
#                           in Keystone; the four servers (one process each),
#                           the proxy on ADDR:PORT (default 8080), object,
#                           container and account servers on 127.0.0.1 from
#                           BACKEND_PORT (default 6200) up; waits until each answers
#                           /healthcheck. Pids in WORK/swift/run, logs in
#                           WORK/swift/log. Sets SW_URL (the proxy).
#   sw_stop WORK            SIGTERM the servers it started (bounded), then
#                           SIGKILL what is left; by pid.
#   sw_object_count CONTAINER TOKEN ACCOUNT_URL
#                           objects in CONTAINER (0 when it does not exist).
#
# Tokens are validated on every request (no cache): a revoked token is
# refused at once, as the tests of expired tokens need. Passwords stay in
# 0600 files; processes are stopped by pid.

SW_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SW_ROOT=$(cd "$SW_DIR/../.." && pwd)
SW_VENV=${SW_VENV:-$SW_ROOT/.venv-swift}
SW_URL=${SW_URL:-}

sw_say() { printf '==> %s\n' "$*"; }
sw_err() { printf 'swift.sh: %s\n' "$*" >&2; }

sw_install() {
    local req=$SW_DIR/requirements.txt stamp=$SW_VENV/.sw-requirements.sha256 want log
    want=$(sha256sum <"$req" | cut -d' ' -f1) || return 1
    if [ -x "$SW_VENV/bin/swift-proxy-server" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    sw_say "installing swift and keystonemiddleware (tests/swift/requirements.txt) into $SW_VENV"
    [ -x "$SW_VENV/bin/python" ] || timeout 120 python3 -m venv "$SW_VENV" ||
        { sw_err "python3 -m venv $SW_VENV failed"; return 1; }
    log=$(mktemp) || return 1
    if ! timeout 900 "$SW_VENV/bin/pip" install -q --disable-pip-version-check -r "$req" >"$log" 2>&1; then
        sw_err "pip install -r $req failed:"; tail -n 30 "$log" | sed 's/^/    /' >&2; rm -f "$log"; return 1
    fi
    rm -f "$log"
    printf '%s\n' "$want" >"$stamp"
}

sw_port_open() { timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }

sw_write_conf() {  # DIR ADDR PORT KEYSTONE_URL PASSWORD_FILE BACKEND_PORT
    local d=$1 addr=$2 port=$3 ks=$4 pwfile=$5 b=$6 user rand
    user=$(id -un)
    rand() { "$SW_VENV/bin/python" -c 'import secrets; print(secrets.token_hex(16))'; }
    cat >"$d/etc/swift.conf" <<EOF
[swift-hash]
swift_hash_path_suffix = $(rand)
swift_hash_path_prefix = $(rand)

[storage-policy:0]
name = Policy-0
default = yes
EOF
    local kind p
    for kind in account:$((b + 2)) container:$((b + 1)) object:$b; do
        p=${kind#*:}; kind=${kind%:*}
        cat >"$d/etc/$kind-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $p
workers = 0
user = $user
swift_dir = $d/etc
devices = $d/srv
mount_check = false
log_name = $kind-server

[pipeline:main]
pipeline = healthcheck $kind-server

[app:$kind-server]
use = egg:swift#$kind

[filter:healthcheck]
use = egg:swift#healthcheck
EOF
    done
    (umask 077; cat >"$d/etc/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = $addr
bind_port = $port
workers = 0
user = $user
swift_dir = $d/etc
log_name = proxy-server

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging listing_formats authtoken keystoneauth copy slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
www_authenticate_uri = $ks
auth_url = $ks
auth_type = password
username = swift
password = $(cat "$pwfile")
project_name = service
user_domain_name = Default
project_domain_name = Default
interface = public
region_name = RegionOne
delay_auth_decision = True
service_token_roles_required = True
# Every request's token is checked with Keystone: a revoked one is refused
# at once (the tests of expired tokens).
token_cache_time = -1

[filter:keystoneauth]
use = egg:swift#keystoneauth
reseller_prefix = AUTH_
# Keystone 30's roles: a project member owns its account.
operator_roles = admin, member
reseller_admin_role = ResellerAdmin

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
[filter:symlink]
use = egg:swift#symlink
EOF
    )
}

sw_start() {
    local work=${1:-} addr=${2:-} port=${3:-8080} b=${4:-6200}
    [ -n "$work" ] && [ -n "$addr" ] || { sw_err "usage: sw_start WORK ADDR [PORT [BACKEND_PORT]]"; return 1; }
    [ -n "${KS_WORK:-}" ] || { sw_err "sw_start: no Keystone (ks_start first)"; return 1; }
    sw_install || return 1
    local d=$work/swift p
    for p in "$addr:$port" "127.0.0.1:$b" "127.0.0.1:$((b + 1))" "127.0.0.1:$((b + 2))"; do
        sw_port_open "${p%:*}" "${p##*:}" && { sw_err "$p is already in use"; return 1; }
    done
    rm -rf "$d" && mkdir -p "$d"/{etc,srv/d1,run,log} && chmod 0700 "$d" || return 1
    # Swift keeps an object's metadata in user xattrs of its file.
    "$SW_VENV/bin/python" -c '
import os, sys, tempfile
fd, p = tempfile.mkstemp(dir=sys.argv[1])
try:
    os.setxattr(p, "user.swift.metadata", b"x" * 254)
finally:
    os.close(fd); os.unlink(p)' "$d/srv/d1" 2>/dev/null ||
        { sw_err "$d/srv has no user xattrs (Swift needs them; ext4 or XFS)"; return 1; }
    ks_service_user swift || return 1
    ks_service swift object-store "http://$addr:$port/v1/AUTH_%(project_id)s" || return 1
    local ks; ks=$(sed -n 's/^export OS_AUTH_URL=//p' "$KS_WORK/admin-openrc")
    sw_write_conf "$d" "$addr" "$port" "$ks" "$KS_WORK/swift-password" "$b" || return 1
    local ring
    for ring in account:$((b + 2)) container:$((b + 1)) object:$b; do
        p=${ring#*:}; ring=${ring%:*}
        "$SW_VENV/bin/swift-ring-builder" "$d/etc/$ring.builder" create 10 1 1 >/dev/null &&
        "$SW_VENV/bin/swift-ring-builder" "$d/etc/$ring.builder" add --region 1 --zone 1 \
            --ip 127.0.0.1 --port "$p" --device d1 --weight 100 >/dev/null &&
        "$SW_VENV/bin/swift-ring-builder" "$d/etc/$ring.builder" rebalance >"$d/log/rebalance-$ring.log" 2>&1 ||
            { sw_err "building the $ring ring failed"; cat "$d/log/rebalance-$ring.log" >&2; return 1; }
    done
    local s
    for s in account container object proxy; do
        # -v: log to stderr (no /dev/log here).
        setsid "$SW_VENV/bin/swift-$s-server" "$d/etc/$s-server.conf" -v </dev/null >>"$d/log/$s.log" 2>&1 &
        echo $! >"$d/run/$s.pid"
    done
    local i url
    for s in "account:127.0.0.1:$((b + 2))" "container:127.0.0.1:$((b + 1))" "object:127.0.0.1:$b" "proxy:$addr:$port"; do
        url=http://${s#*:}/healthcheck; s=${s%%:*}
        for i in $(seq 1 300); do
            kill -0 "$(cat "$d/run/$s.pid")" 2>/dev/null ||
                { sw_err "swift-$s-server exited"; tail -n 20 "$d/log/$s.log" >&2; sw_stop "$work"; return 1; }
            [ "$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 2 "$url")" = 200 ] && break
            sleep 0.1
        done
        [ "$i" -lt 300 ] || { sw_err "swift-$s-server did not answer $url in 30 s"; sw_stop "$work"; return 1; }
    done
    SW_URL=http://$addr:$port
}

sw_stop() {
    local work=${1:-} d f pid pids=() i alive
    [ -n "$work" ] || { sw_err "usage: sw_stop WORK"; return 1; }
    d=$work/swift
    for f in "$d"/run/*.pid; do
        [ -s "$f" ] || continue
        pid=$(cat "$f"); case $pid in ''|*[!0-9]*) continue ;; esac
        kill -0 "$pid" 2>/dev/null && { pids+=("$pid"); kill -TERM "$pid" 2>/dev/null || true; }
        rm -f "$f"
    done
    [ ${#pids[@]} -gt 0 ] || return 0
    for i in $(seq 1 60); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && return 0
        sleep 0.25
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

sw_object_count() {  # CONTAINER TOKEN ACCOUNT_URL
    local container=$1 token=$2 url=$3 code
    code=$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 20 -I \
        -K - "$url/$container" <<<"header = \"X-Auth-Token: $token\"")
    case $code in
        404) echo 0 ;;
        200|204) curl -s --noproxy '*' --max-time 20 -K - "$url/$container" <<<"header = \"X-Auth-Token: $token\"" | grep -c . || true ;;
        *) sw_err "listing $container: HTTP $code"; return 1 ;;
    esac
}
