# A real Keystone for the local "Trove in a box": keystone 30.0.0 (OpenStack
# 2026.2, the cycle of trove 26.0.0) under gunicorn, on a sqlite file, with
# fernet tokens. Sourced (bash). Functions:
#
#   ks_install               creates or updates the Keystone venv $KS_VENV
#                            (default: the repository's .venv-keystone) from
#                            requirements.txt beside this file; does nothing
#                            (a hash compare) when it is already installed.
#   ks_start WORK [PORT]     keystone.conf, database, keys and gunicorn
#                            config in WORK/keystone; starts gunicorn on
#                            127.0.0.1:PORT (default 5000; pid WORK/keystone.
#                            pid, log WORK/keystone.log); initialises the
#                            database (db_sync, fernet_setup, credential_
#                            setup, bootstrap: admin/admin/admin, region
#                            RegionOne, the identity endpoint), makes project
#                            and user "demo" (roles member, reader); waits
#                            until GET /v3 answers. Writes WORK/admin-openrc,
#                            WORK/demo-openrc and WORK/{admin,demo}-password
#                            (all 0600). Sets KS_WORK, KS_PORT, KS_URL,
#                            KS_PID, KS_ADMIN_PROJECT_ID, KS_DEMO_PROJECT_ID
#                            (also in WORK/keystone/ids.json). On failure it
#                            stops what it started.
#   ks_service NAME TYPE URL a service and its public, internal and admin
#                            endpoints in RegionOne (each made only if
#                            missing; an endpoint with another URL is set to
#                            URL). Uses KS_WORK (ks_start's WORK).
#   ks_service_user NAME     user NAME in project "service" (made if
#                            missing), roles admin and service there; its
#                            random password in KS_WORK/NAME-password (0600,
#                            reused if the file exists). Prints nothing.
#   ks_trove_conf_auth WORK [API_PORT]
#                            prints the trove.conf sections (ini) with which
#                            an unmodified trove-api authenticates requests
#                            against this Keystone through Trove's own
#                            api-paste.ini (authtoken = keystonemiddleware);
#                            needs ks_service_user trove first. The text holds
#                            the trove user's password: send it only into a
#                            0600 trove.conf.
#   ks_stop WORK             SIGTERM the gunicorn of WORK (bounded), then KILL
#                            it and its workers (by PID).
#   ks_openstack ARGS...     the openstack CLI ($KS_OPENSTACK) as admin.
#
# Passwords are random, never printed, never on a command line (keystone's
# setup reads them from its environment, the openstack CLI from OS_PASSWORD
# or, for `user create/set --password`, from its standard input in batch
# mode). Every step is bounded with timeout; a failing step says what failed
# and returns 1. Processes are stopped by PID.

KS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KS_ROOT=$(cd "$KS_DIR/../../.." && pwd)
KS_VENV=${KS_VENV:-$KS_ROOT/.venv-keystone}
KS_BASE_PYTHON=${KS_BASE_PYTHON:-python3}         # makes the venv; keystone 30 needs >= 3.11
KS_TROVE_VENV=${KS_TROVE_VENV:-$KS_ROOT/.venv}    # trove 26 and the openstack CLI
KS_OPENSTACK=${KS_OPENSTACK:-$KS_TROVE_VENV/bin/openstack}
KS_REGION=${KS_REGION:-RegionOne}
KS_WORK=${KS_WORK:-}; KS_PORT=${KS_PORT:-}; KS_URL=${KS_URL:-}; KS_PID=${KS_PID:-}
KS_ADMIN_PROJECT_ID=${KS_ADMIN_PROJECT_ID:-}; KS_DEMO_PROJECT_ID=${KS_DEMO_PROJECT_ID:-}

ks_say() { printf '==> %s\n' "$*"; }
ks_err() { printf 'keystone.sh: %s\n' "$*" >&2; }

ks_random() {   # $1 characters from [A-Za-z0-9]
    local s=""
    while [ ${#s} -lt "$1" ]; do
        s+=$(head -c 256 /dev/urandom | tr -dc 'A-Za-z0-9')
    done
    printf '%s' "${s:0:$1}"
}

ks_secret_file() {  # FILE: makes it (0600, a random 32-character password) if missing
    [ -s "$1" ] && return 0
    (umask 077; ks_random 32 >"$1.tmp" && mv -f "$1.tmp" "$1") ||
        { ks_err "cannot write $1"; return 1; }
}

ks_install() {
    local req=$KS_DIR/requirements.txt stamp=$KS_VENV/.ks-requirements.sha256 want log
    want=$(sha256sum <"$req" | cut -d' ' -f1) || { ks_err "cannot read $req"; return 1; }
    if [ -x "$KS_VENV/bin/gunicorn" ] && [ -x "$KS_VENV/bin/keystone-manage" ] &&
       [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    ks_say "installing keystone and gunicorn (tests/box/keystone/requirements.txt) into $KS_VENV"
    if [ ! -x "$KS_VENV/bin/python" ]; then
        timeout 120 "$KS_BASE_PYTHON" -m venv "$KS_VENV" ||
            { ks_err "'$KS_BASE_PYTHON -m venv $KS_VENV' failed"; return 1; }
    fi
    log=$(mktemp) || return 1
    if ! timeout 1200 "$KS_VENV/bin/pip" install -q --disable-pip-version-check -r "$req" >"$log" 2>&1; then
        ks_err "pip install -r $req into $KS_VENV failed:"
        tail -n 30 "$log" | sed 's/^/    /' >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
    printf '%s\n' "$want" >"$stamp"
}

ks_port_open() { timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }

ks_log_tail() {  # the last lines of WORK/keystone.log, indented, to stderr
    [ -f "$1/keystone.log" ] || return 0
    echo "    --- last lines of $1/keystone.log:" >&2
    tail -n "${2:-40}" "$1/keystone.log" | sed 's/^/    /' >&2
}

ks_write_conf() {  # WORK PORT: WORK/keystone/{keystone.conf,gunicorn.conf.py}
    local work=$1 port=$2 kdir=$1/keystone
    (umask 077
     cat >"$kdir/keystone.conf" <<CONF
# Keystone of the local Trove box (tests/box/keystone/keystone.sh).
[DEFAULT]
log_file = $work/keystone.log

[database]
# One gunicorn worker process is the only server using the file (and
# ks_setup.py, which runs to its end while the server only starts), so
# sqlite's file lock is not contended.
connection = sqlite:///$kdir/keystone.db

[identity]
# bcrypt reads 72 bytes; a larger limit makes keystone warn on every hash.
max_password_length = 72

[token]
provider = fernet

[fernet_tokens]
key_repository = $kdir/fernet-keys

[fernet_receipts]
key_repository = $kdir/fernet-receipt-keys

[credential]
key_repository = $kdir/credential-keys
CONF
     cat >"$kdir/gunicorn.conf.py" <<CONF
# gunicorn for Keystone (tests/box/keystone/keystone.sh). It is started with
# no command-line arguments, from this directory: keystone's oslo.config
# parses sys.argv, and rejects gunicorn's. OS_KEYSTONE_CONFIG_DIR names
# keystone.conf's directory.
wsgi_app = "keystone.wsgi.api:application"
bind = "127.0.0.1:$port"
workers = 1
threads = 4
timeout = 120
graceful_timeout = 5
accesslog = "-"
errorlog = "-"
proc_name = "keystone-box"
control_socket_disable = True
CONF
    ) || { ks_err "cannot write the Keystone configuration in $kdir"; return 1; }
}

ks_write_openrc() {  # FILE USER PASSWORD_FILE PROJECT
    local pw
    pw=$(cat "$3") || return 1
    (umask 077; cat >"$1" <<RC
# $2 on the box Keystone $KS_URL (tests/box/keystone/keystone.sh)
export OS_AUTH_URL=$KS_URL
export OS_USERNAME=$2
export OS_PASSWORD=$pw
export OS_PROJECT_NAME=$4
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_IDENTITY_API_VERSION=3
export OS_REGION_NAME=$KS_REGION
export OS_INTERFACE=public
RC
    ) || { ks_err "cannot write $1"; return 1; }
}

ks_json_get() {  # KEY < JSON: prints the top-level string KEY
    python3 -c 'import json, sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"
}

ks_start() {
    local work=${1:-} port=${2:-5000}
    [ -n "$work" ] || { ks_err "usage: ks_start WORK [PORT]"; return 1; }
    ks_install || return 1
    mkdir -p "$work" && work=$(cd "$work" && pwd) || { ks_err "cannot make $work"; return 1; }
    local kdir=$work/keystone
    if [ -s "$work/keystone.pid" ] && kill -0 "$(cat "$work/keystone.pid")" 2>/dev/null; then
        ks_err "a keystone (pid $(cat "$work/keystone.pid")) already runs for $work"; return 1
    fi
    if ks_port_open "$port"; then
        ks_err "127.0.0.1:$port is already in use"; return 1
    fi
    KS_WORK=$work KS_PORT=$port KS_URL=http://127.0.0.1:$port/v3
    (umask 077; mkdir -p "$kdir") && chmod 0700 "$kdir" || { ks_err "cannot make $kdir"; return 1; }
    ks_secret_file "$work/admin-password" && ks_secret_file "$work/demo-password" || return 1
    ks_write_conf "$work" "$port" || return 1

    # The server starts (imports keystone, ~4 s) while ks_setup.py
    # initialises the database: nothing reaches it before both are done.
    ( cd "$kdir" && exec env -u GUNICORN_CMD_ARGS OS_KEYSTONE_CONFIG_DIR="$kdir" \
        "$KS_VENV/bin/gunicorn" ) </dev/null >>"$work/keystone.log" 2>&1 &
    KS_PID=$!
    echo "$KS_PID" >"$work/keystone.pid"

    local ids
    if ! ids=$(cd "$kdir" && umask 077 &&
               KS_ADMIN_PASSWORD=$(cat "$work/admin-password") KS_DEMO_PASSWORD=$(cat "$work/demo-password") \
               timeout 180 "$KS_VENV/bin/python" -W ignore "$KS_DIR/ks_setup.py" \
                   "$kdir/keystone.conf" "$KS_URL" "$KS_REGION" 2>>"$work/keystone.log" </dev/null); then
        ks_err "initialising Keystone (keystone-manage db_sync, fernet_setup, credential_setup, bootstrap; demo tenant: tests/box/keystone/ks_setup.py) failed"
        ks_log_tail "$work"; ks_stop "$work"; return 1
    fi
    ids=$(printf '%s\n' "$ids" | tail -n 1)
    printf '%s\n' "$ids" >"$kdir/ids.json"
    KS_ADMIN_PROJECT_ID=$(ks_json_get admin_project_id <<<"$ids") &&
    KS_DEMO_PROJECT_ID=$(ks_json_get demo_project_id <<<"$ids") ||
        { ks_err "ks_setup.py printed no project ids"; ks_stop "$work"; return 1; }

    local deadline=$((SECONDS + ${KS_START_TIMEOUT:-90}))
    until timeout 5 curl -sf -o /dev/null --max-time 4 "$KS_URL"; do
        if ! kill -0 "$KS_PID" 2>/dev/null; then
            ks_err "gunicorn (keystone) exited before GET $KS_URL answered"
            ks_log_tail "$work"; ks_stop "$work"; return 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            ks_err "GET $KS_URL did not answer within ${KS_START_TIMEOUT:-90} s"
            ks_log_tail "$work"; ks_stop "$work"; return 1
        fi
        sleep 0.2
    done

    ks_write_openrc "$work/admin-openrc" admin "$work/admin-password" admin &&
    ks_write_openrc "$work/demo-openrc" demo "$work/demo-password" demo || { ks_stop "$work"; return 1; }
}

ks_stop() {
    local work=${1:-$KS_WORK} pid kids i
    [ -n "$work" ] || { ks_err "usage: ks_stop WORK"; return 1; }
    [ -s "$work/keystone.pid" ] || return 0
    pid=$(cat "$work/keystone.pid")
    case $pid in ''|*[!0-9]*) ks_err "bad pid in $work/keystone.pid"; return 1 ;; esac
    if kill -0 "$pid" 2>/dev/null; then
        kids=$(pgrep -P "$pid" || true)      # gunicorn's worker(s), by parent PID
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        for i in $pid $kids; do kill -KILL "$i" 2>/dev/null || true; done
        wait "$pid" 2>/dev/null || true
    fi
    rm -f "$work/keystone.pid"
    [ "$pid" != "$KS_PID" ] || KS_PID=""
}

ks_need_work() {
    if [ -z "$KS_WORK" ] || [ ! -s "$KS_WORK/admin-openrc" ]; then
        ks_err "$1: no running box Keystone (ks_start WORK first, or set KS_WORK)"; return 1
    fi
}

ks_openstack() {  # the openstack CLI as admin; its arguments, or batch lines on stdin
    ks_need_work ks_openstack || return 1
    (
        # Only the box's credentials: none of the caller's OS_* (OS_CLOUD, OS_TOKEN...).
        for v in $(compgen -e); do case $v in OS_*) unset "$v" ;; esac; done
        . "$KS_WORK/admin-openrc" || exit 1
        exec timeout "${KS_CLI_TIMEOUT:-120}" "$KS_OPENSTACK" "$@"
    )
}

# Splits concatenated JSON documents (what batch-mode `openstack ... -f json`
# commands print one after another) into one compact document a line.
ks_json_docs() {
    python3 -c '
import json, sys
text, dec, i = sys.stdin.read(), json.JSONDecoder(), 0
while True:
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        break
    doc, i = dec.raw_decode(text, i)
    print(json.dumps(doc))
'
}

ks_service() {
    local name=${1:-} type=${2:-} url=${3:-}
    case $name/$type in
        /*|*/|*[!A-Za-z0-9_./-]*|*/*/*) ks_err "usage: ks_service NAME TYPE URL (NAME, TYPE: [A-Za-z0-9_.-])"; return 1 ;;
    esac
    [ -n "$url" ] || { ks_err "usage: ks_service NAME TYPE URL"; return 1; }
    ks_need_work ks_service || return 1
    local out err docs plan
    err=$(mktemp) || return 1
    # One CLI process (its start costs ~2 s) reads the service and endpoint
    # lists: the openstack CLI runs the lines of a non-terminal stdin.
    # (In batch mode its exit status is 1 even when every line worked: the
    # output is checked instead, here and below.)
    out=$(printf '%s\n' "service list -f json" "endpoint list --region $KS_REGION -f json" |
          ks_openstack 2>"$err") || true
    if ! docs=$(ks_json_docs <<<"$out") || [ "$(wc -l <<<"$docs")" -ne 2 ]; then
        ks_err "ks_service $name: listing services and endpoints failed:"
        sed 's/^/    /' "$err" >&2; rm -f "$err"; return 1
    fi
    # What to run: a line per missing service or endpoint (shlex-quoted).
    plan=$(KS_DOCS=$docs python3 -c '
import json, os, shlex, sys
name, stype, url, region = sys.argv[1:5]
services, endpoints = (json.loads(l) for l in os.environ["KS_DOCS"].splitlines())
same = [s for s in services if s["Name"] == name and s["Type"] == stype]
if not same:
    print(shlex.join(["service", "create", "--name", name, "-f", "json", stype]))
for iface in ("public", "internal", "admin"):
    eps = [e for e in endpoints if e["Service Name"] == name and e["Service Type"] == stype
           and e["Interface"] == iface]
    if not eps:
        print(shlex.join(["endpoint", "create", "--region", region, "-f", "json",
                          same[0]["ID"] if same else name, iface, url]))
    elif eps[0]["URL"] != url:
        print(shlex.join(["endpoint", "set", "--url", url, eps[0]["ID"]]))
' "$name" "$type" "$url" "$KS_REGION") || { ks_err "ks_service $name: planning failed"; rm -f "$err"; return 1; }
    [ -n "$plan" ] || { rm -f "$err"; return 0; }   # all there already
    out=$( { printf '%s\n' "$plan"; echo "endpoint list --service $name --region $KS_REGION -f json"; } |
          ks_openstack 2>"$err") || true
    if ! docs=$(ks_json_docs <<<"$out") ||
       ! python3 -c '
import json, sys
eps = json.loads(sys.stdin.read().splitlines()[-1])
got = {e["Interface"] for e in eps if e["URL"] == sys.argv[1] and e["Service Type"] == sys.argv[2]}
sys.exit(0 if got >= {"public", "internal", "admin"} else 1)
' "$url" "$type" <<<"$docs"; then
        ks_err "ks_service $name $type: the service or its endpoints were not made:"
        sed 's/^/    /' "$err" >&2; rm -f "$err"; return 1
    fi
    rm -f "$err"
}

ks_service_user() {
    local name=${1:-}
    case $name in ''|*[!A-Za-z0-9_.-]*) ks_err "usage: ks_service_user NAME ([A-Za-z0-9_.-])"; return 1 ;; esac
    ks_need_work ks_service_user || return 1
    local pwfile=$KS_WORK/$name-password out err docs pw
    ks_secret_file "$pwfile" || return 1
    pw=$(cat "$pwfile") || return 1
    err=$(mktemp) || return 1
    # The password goes to the CLI on its standard input (batch mode), not on
    # a command line. `user set` makes a re-run keep user and file in step.
    out=$(printf '%s\n' \
        "project create --domain default --or-show -f json service" \
        "user create --domain default --project service --password $pw --or-show -f json $name" \
        "user set --password $pw $name" \
        "role add --project service --user $name admin" \
        "role add --project service --user $name service" \
        "role assignment list --user $name --project service --names -f json" |
        ks_openstack 2>"$err") || true
    pw=""
    if ! docs=$(ks_json_docs <<<"$out") || [ "$(wc -l <<<"$docs")" -ne 3 ] ||
       ! python3 -c '
import json, sys
rows = json.loads(sys.stdin.read().splitlines()[-1])
roles = {r["Role"] for r in rows}
sys.exit(0 if {"admin", "service"} <= roles else 1)
' <<<"$docs"; then
        ks_err "ks_service_user $name: user, project service or roles admin/service not made:"
        sed 's/^/    /' "$err" >&2; rm -f "$err"; return 1
    fi
    rm -f "$err"
    # The password really opens a token scoped to project service.
    if ! ks_token_ok "$name" "$pwfile" service; then
        ks_err "ks_service_user $name: no token with the password in $pwfile"; return 1
    fi
}

ks_token_ok() {  # USER PASSWORD_FILE PROJECT: POST /v3/auth/tokens (body on stdin) answers 201
    local code
    code=$(python3 -c '
import json, sys
print(json.dumps({"auth": {"identity": {"methods": ["password"], "password": {"user": {
    "name": sys.argv[1], "domain": {"name": "Default"}, "password": open(sys.argv[2]).read().strip()}}},
    "scope": {"project": {"name": sys.argv[3], "domain": {"name": "Default"}}}}}))
' "$1" "$2" "$3" |
        timeout 30 curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
            --data-binary @- "$KS_URL/auth/tokens") || return 1
    [ "$code" = 201 ]
}

ks_trove_conf_auth() {
    local work=${1:-} api_port=${2:-8779} pw paste url
    [ -n "$work" ] || { ks_err "usage: ks_trove_conf_auth WORK [API_PORT]"; return 1; }
    [ -s "$work/trove-password" ] || { ks_err "no $work/trove-password: run ks_service_user trove first"; return 1; }
    [ -s "$work/admin-openrc" ] || { ks_err "no $work/admin-openrc: run ks_start $work first"; return 1; }
    url=$(sed -n 's/^export OS_AUTH_URL=//p' "$work/admin-openrc")
    paste=$KS_TROVE_VENV/etc/trove/api-paste.ini
    [ -f "$paste" ] || { ks_err "trove's $paste is missing"; return 1; }
    pw=$(cat "$work/trove-password") || return 1
    cat <<INI

# --- Keystone authentication of trove-api (tests/box/keystone/keystone.sh) --
[DEFAULT]
# Trove 26's own paste file: the troveapi pipeline is
#   cors request_id http_proxy_to_wsgi faultwrapper osprofiler authtoken
#   authorization contextwrapper ratelimit extensions troveapp
# where authtoken is keystonemiddleware.auth_token. trove-api looks the
# default name (api-paste.ini) up beside the config file and in /etc/trove.
api_paste_config = $paste
bind_host = 127.0.0.1
bind_port = $api_port

[keystone_authtoken]
# keystonemiddleware.auth_token (paste filter authtoken) reads this section
# of trove's own configuration: it validates each X-Auth-Token with
# GET /v3/auth/tokens, authenticated as the trove service user.
www_authenticate_uri = $url
auth_url = $url
auth_type = password
username = trove
password = $pw
project_name = service
user_domain_name = Default
project_domain_name = Default
region_name = $KS_REGION
interface = public
# No memcached here: with memcached_servers unset the middleware caches
# validated tokens in the trove-api process (it logs a deprecation warning
# once); a token stays valid there for token_cache_time after revocation.
token_cache_time = 300

[service_credentials]
# Trove's own clients (trove/common/clients_admin.py: nova, cinder, neutron,
# swift as the service user; clients.py auth_url for user-token clients).
# auth_url here replaces the deprecated [DEFAULT] trove_auth_url, and
# region_name [DEFAULT] os_region_name.
auth_url = $url
username = trove
password = $pw
project_name = service
user_domain_name = Default
project_domain_name = Default
region_name = $KS_REGION
INI
}
