#!/usr/bin/env bash
# Smoke test of the box Keystone with an unmodified trove-api (trove 26.0.0
# of the repository's .venv) authenticating through Trove's own paste
# pipeline (api-paste.ini: ... authtoken authorization contextwrapper ...,
# authtoken = keystonemiddleware.auth_token):
#
#   1. the OpenStack stand-in (tests/standins/openstack) on a free port, as
#      the compute endpoint; ks_start in a temporary WORK; one ks_services:
#      trove database http://127.0.0.1:API/v1.0/%(tenant_id)s, nova compute
#      (the stand-in), service user trove
#   2. a minimal trove.conf (sqlite database, local RabbitMQ) plus
#      ks_trove_conf_auth; trove-manage db_sync; trove-api --config-file
#   3. checks: no token -> 401; a garbage token -> 401; openstack token
#      issue (demo) works; a real token -> 200; openstack datastore list and
#      openstack database instance list (demo) exit 0
#   4. stops what it started (by pid) and removes WORK.
#
# Exits non-zero if a check fails, with the ends of the logs. Runs from any
# directory; needs the repository's .venv (tests/setup.sh, sourced when
# trove or RabbitMQ is missing). KS_SMOKE_KEEP=1 keeps WORK.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.." || exit 1
root=$PWD

if ! timeout 60 .venv/bin/python -c 'import trove, troveclient' >/dev/null 2>&1 ||
   ! timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672' 2>/dev/null; then
    echo "==> the trove venv or RabbitMQ is missing: sourcing tests/setup.sh"
    # shellcheck source=/dev/null
    source tests/setup.sh || exit 1
fi
# shellcheck source=keystone.sh
source tests/box/keystone/keystone.sh

work=$(mktemp -d /tmp/ks-smoke.XXXXXX) || exit 1
chmod 0700 "$work"
trove_pid=""; standin_pid=""
passed=0; failed=0

free_port() {  # the first port from $1 upward (bounded) that nothing listens on
    local p
    for p in $(seq "$1" $(( $1 + 200 ))); do
        ks_port_open "$p" || { echo "$p"; return 0; }
    done
    return 1
}

stop_trove() {
    [ -n "$trove_pid" ] || return 0
    local kids i
    kids=$(pgrep -P "$trove_pid" || true)
    kill -TERM "$trove_pid" $kids 2>/dev/null || true
    for i in $(seq 1 40); do kill -0 "$trove_pid" 2>/dev/null || break; sleep 0.25; done
    for i in $trove_pid $kids; do kill -KILL "$i" 2>/dev/null || true; done
    wait "$trove_pid" 2>/dev/null || true
    trove_pid=""
}

stop_pid() {  # PID: SIGTERM, bounded, then KILL
    [ -n "$1" ] || return 0
    local i
    kill -TERM "$1" 2>/dev/null || true
    for i in $(seq 1 40); do kill -0 "$1" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

cleanup() {
    stop_trove
    stop_pid "$standin_pid"
    ks_stop "$work" || true
    if [ "${KS_SMOKE_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

tails() {
    local f
    for f in "$work/keystone.log" "$work/trove-api.log" "$work/trove-manage.log" "$work/standin.log"; do
        [ -f "$f" ] || continue
        echo "    --- last lines of $f:"
        # Not trove's option dump: it is long and says nothing here.
        grep -v 'log_opt_values' "$f" | tail -n 40 | sed 's/^/    /'
    done
}

die() { echo "FAIL: $*"; tails; echo "smoke: $passed passed, $((failed + 1)) failed"; exit 1; }

check() {  # NAME COMMAND...: runs it, counts and reports
    local name=$1; shift
    if "$@"; then
        echo "ok   $name"; passed=$((passed + 1))
    else
        echo "FAIL $name"; failed=$((failed + 1))
    fi
}

as_demo() {  # the openstack CLI as the demo user, output to WORK/cli.out
    (
        for v in $(compgen -e); do case $v in OS_*) unset "$v" ;; esac; done
        . "$work/demo-openrc" || exit 1
        exec timeout 120 "$root/.venv/bin/openstack" "$@"
    ) >"$work/cli.out" 2>&1
    local rc=$?
    [ $rc -eq 0 ] || { echo "    openstack $* exited $rc:"; sed 's/^/    /' "$work/cli.out"; }
    return $rc
}

# Ports away from the box's (5000, 8774, 8779): the smoke runs beside a box.
ks_port=$(free_port 5100) && api_port=$(free_port 8879) || die "no free port"

# Trove 26 lists instances with Nova's server list (trove/instance/models.py
# Instances.load calls servers.list even when it has no instance): a compute
# endpoint must answer. Here the box's stand-in (tests/standins/openstack),
# Nova only, on a free port it picks; no server is made, so its hypervisor
# command is never run. It starts first, so that its URL goes into the one
# ks_services call.
standin=$root/tests/standins/openstack/openstack_standin.py
[ -f "$standin" ] || die "no $standin (the compute endpoint of the instance list)"
echo "==> the OpenStack stand-in (compute endpoint only)"
python3 "$standin" --host 127.0.0.1 --port 0 --state "$work/standin" --hypervisor /bin/false \
    </dev/null >"$work/standin.out" 2>"$work/standin.log" &
standin_pid=$!
deadline=$((SECONDS + 30))
until [ -s "$work/standin.out" ]; do
    kill -0 "$standin_pid" 2>/dev/null || die "the OpenStack stand-in exited"
    [ $SECONDS -lt $deadline ] || die "the OpenStack stand-in did not start within 30 s"
    sleep 0.1
done
compute_url=$(head -n 1 "$work/standin.out" | python3 -c '
import json, sys
print([e["url"] for e in json.loads(sys.stdin.read())["catalog"] if e["type"] == "compute"][0])') ||
    die "no compute URL from the OpenStack stand-in"

echo "==> keystone on 127.0.0.1:$ks_port (WORK $work)"
t0=$(date +%s.%N)
ks_start "$work" "$ks_port" || die "ks_start"
t1=$(date +%s.%N)
cat >"$work/services.json" <<JSON
{"services": [
  {"name": "trove", "type": "database", "url": "http://127.0.0.1:$api_port/v1.0/%(tenant_id)s"},
  {"name": "nova", "type": "compute", "url": "$compute_url"}],
 "service_users": ["trove"]}
JSON
ks_services "$work/services.json" || die "ks_services (trove database, nova compute, user trove)"
t2=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "    ks_start %.1f s, ks_services %.1f s\n", b - a, c - b }'

echo "==> trove-api on 127.0.0.1:$api_port"
(umask 077; {
    cat <<CONF
# Smoke-test trove.conf (tests/box/keystone/smoke.sh): sqlite, local RabbitMQ.
[DEFAULT]
transport_url = rabbit://guest:guest@127.0.0.1:5672/
control_exchange = trove
trove_api_workers = 1
debug = true
log_file = $work/trove-api.log

[database]
connection = sqlite:///$work/trove.sqlite
CONF
    ks_trove_conf_auth "$work" "$api_port"
} >"$work/trove.conf") || die "writing trove.conf"
timeout 120 "$root/.venv/bin/trove-manage" --config-file "$work/trove.conf" db_sync \
    >"$work/trove-manage.log" 2>&1 || die "trove-manage db_sync"

"$root/.venv/bin/trove-api" --config-file "$work/trove.conf" </dev/null >>"$work/trove-api.log" 2>&1 &
trove_pid=$!
deadline=$((SECONDS + 90))
until timeout 5 curl -sf -o /dev/null --max-time 4 "http://127.0.0.1:$api_port/"; do
    kill -0 "$trove_pid" 2>/dev/null || die "trove-api exited"
    [ $SECONDS -lt $deadline ] || die "trove-api did not answer GET / within 90 s"
    sleep 0.3
done

demo=$KS_DEMO_PROJECT_ID
url=http://127.0.0.1:$api_port/v1.0/$demo/instances

code_is() {  # EXPECTED CURL-ARGS...
    local want=$1 got; shift
    got=$(timeout 30 curl -s -o "$work/curl.out" -w '%{http_code}' "$@") || got="curl failed"
    [ "$got" = "$want" ] || { echo "    HTTP $got, not $want:"; head -c 400 "$work/curl.out" | sed 's/^/    /'; echo; }
    [ "$got" = "$want" ]
}

echo "==> checks"
check "GET /v1.0/<demo>/instances without a token -> 401" code_is 401 "$url"
check "401 names this Keystone (WWW-Authenticate: Keystone uri=...)" \
    bash -c 'timeout 30 curl -s -o /dev/null -D - "$1" | grep -qiF "WWW-Authenticate: Keystone uri=\"$2\""' _ "$url" "$KS_URL"
check "GET /v1.0/<demo>/instances with a garbage token -> 401" \
    code_is 401 -H @- "$url" <<<"X-Auth-Token: gAAAAAgarbage$(ks_random 40)"
check "openstack token issue (demo)" as_demo token issue -f value -c id
# The token issued by the CLI, on trove-api's API (header from stdin, not argv).
token=$(head -n 1 "$work/cli.out" 2>/dev/null)
check "GET /v1.0/<demo>/instances with a demo token -> 200" \
    code_is 200 -H @- "$url" <<<"X-Auth-Token: $token"
# Trove's authorization filter (after authtoken): the token's project only.
check "GET /v1.0/<admin project>/instances with a demo token -> 403" \
    code_is 403 -H @- "http://127.0.0.1:$api_port/v1.0/$KS_ADMIN_PROJECT_ID/instances" <<<"X-Auth-Token: $token"
token=""
: >"$work/cli.out"
check "openstack datastore list (demo)" as_demo datastore list
check "openstack database instance list (demo)" as_demo database instance list
# The 401 and 200 came from keystonemiddleware asking this Keystone.
check "keystonemiddleware refused the garbage token (trove-api log)" \
    grep -q 'keystonemiddleware.auth_token .*Authorization failed for token' "$work/trove-api.log"
check "Keystone validated trove-api's tokens (GET /v3/auth/tokens 200, python-keystoneclient)" \
    grep -q '"GET /v3/auth/tokens HTTP/1.1" 200 .*python-keystoneclient' "$work/keystone.log"

if [ $failed -ne 0 ]; then
    tails
fi
echo "smoke: $passed passed, $failed failed"
[ $failed -eq 0 ]
