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
#   ks_services FILE|-       in one process (ks_services.py, Keystone's v3
#                            REST API with one admin token), from the JSON
#                            FILE (or stdin)
#                              {"services": [{"name": N, "type": T,
#                                             "url": U}, ...],
#                               "service_users": [NAME, ...]}
#                            (both keys optional): each service and its
#                            public, internal and admin endpoints in
#                            RegionOne (each made only if missing; an
#                            endpoint with another URL is set to URL); each
#                            user NAME in project "service" (made if
#                            missing), roles admin and service there, its
#                            random password in KS_WORK/NAME-password (0600,
#                            reused if the file exists; an existing user
#                            whose password opens no token gets it). Checks
#                            the endpoints, the role assignments and that
#                            each user's password opens a token. Prints
#                            nothing. Uses KS_WORK (ks_start's WORK).
#   ks_service NAME TYPE URL ks_services of one service.
#   ks_service_user NAME     ks_services of one service user.
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
# setup reads them from its environment, ks_services.py from WORK's 0600
# files, the openstack CLI of ks_openstack from OS_PASSWORD). Every step is
# bounded with timeout; a failing step says what failed and returns 1.
# Processes are stopped by PID.

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
# ks_setup.py, which runs to its end before the worker serves), but its 4
# threads write it at once (a token's issue records the user's activity):
# under load a writer waited past sqlite's default 5 s and Keystone
# answered 500 "database is locked" (seen in CI, 3 backup tests asking
# for tokens together). sqlite waits up to 30 s for the lock instead; a
# transaction that read and then writes is still refused at once when
# another writes (sqlite's deadlock rule): the backup tests' token
# requests are asked again on a 5xx (tests/src/swift.rs).
connection = sqlite:///$kdir/keystone.db?timeout=30

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

[cache]
# Keystone's own caching (oslo.cache; production deployments put it on
# memcached), here in the memory of the one gunicorn worker, the only
# server. Without it every request re-reads its token's user, project and
# role assignments (about 40 queries, 150 ms on 2 cores); with it about
# 15 ms. Keystone invalidates the cache on its own writes, and nothing else
# writes to the database while the worker serves (ks_setup.py is done
# before). dogpile.cache.memory is dogpile's own backend (oslo_cache.dict is
# looked up through stevedore, which logs an ERROR for oslo.cache's
# memcache_pool plugin, its module not being installed); it does not free
# expired values, which a box's lifetime does not feel.
enabled = true
backend = dogpile.cache.memory
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


# The worker starts beside ks_setup.py, which makes the key repositories
# first (WORK/keystone/keys-done), then the database (setup-done). The
# worker imports keystone's application modules meanwhile (~4 s), builds
# the application once the keys exist (keystone checks its key repositories
# then; the database is not read), and serves once the database is done.
# (Built without the keys, the worker exits and gunicorn boots another that
# imports everything again.) Bounded; notify() keeps gunicorn's worker
# timeout from firing while it waits, and a SIGTERM (worker.alive false
# once the worker's handlers are set) ends the wait.
def _wait_for(worker, path, deadline):
    import os
    import sys
    import time
    while not os.path.exists(path):
        if not worker.alive:
            sys.exit(0)
        if time.monotonic() > deadline:
            raise RuntimeError(path + " did not appear within 170 s")
        worker.notify()
        time.sleep(0.05)


def post_fork(server, worker):
    import signal
    import time
    # Until the worker sets its own handlers (after the application is
    # built), the master's, inherited, would swallow ks_stop's SIGTERM.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    worker.ks_deadline = time.monotonic() + 170
    import keystone.server.wsgi  # noqa: F401
    _wait_for(worker, "$kdir/keys-done", worker.ks_deadline)


def post_worker_init(worker):
    _wait_for(worker, "$kdir/setup-done", worker.ks_deadline)
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

    # The server starts while ks_setup.py initialises the keys and the
    # database: its worker imports keystone (~4 s) beside ks_setup.py's
    # import, builds the application once ks_setup.py has made the keys
    # (WORK/keystone/keys-done) and serves once it has made the database
    # (setup-done); see gunicorn.conf.py.
    rm -f "$kdir/keys-done" "$kdir/setup-done"
    ( cd "$kdir" && exec env -u GUNICORN_CMD_ARGS OS_KEYSTONE_CONFIG_DIR="$kdir" \
        "$KS_VENV/bin/gunicorn" ) </dev/null >>"$work/keystone.log" 2>&1 &
    KS_PID=$!
    echo "$KS_PID" >"$work/keystone.pid"

    local ids
    if ! ids=$(cd "$kdir" && umask 077 &&
               KS_ADMIN_PASSWORD=$(cat "$work/admin-password") KS_DEMO_PASSWORD=$(cat "$work/demo-password") \
               KS_KEYS_DONE=$kdir/keys-done KS_SETUP_DONE=$kdir/setup-done \
               timeout 180 "$KS_VENV/bin/python" -W ignore "$KS_DIR/ks_setup.py" \
                   "$kdir/keystone.conf" "$KS_URL" "$KS_REGION" 2>>"$work/keystone.log" </dev/null); then
        ks_err "initialising Keystone (keystone-manage db_sync, fernet_setup, credential_setup, bootstrap; demo tenant: tests/box/keystone/ks_setup.py) failed"
        ks_log_tail "$work"; ks_stop "$work"; return 1
    fi
    ids=$(printf '%s\n' "$ids" | tail -n 1)
    printf '%s\n' "$ids" >"$kdir/ids.json"
    # {"admin_project_id": "<hex>", "demo_project_id": "<hex>", ...}
    KS_ADMIN_PROJECT_ID=$(sed -n 's/.*"admin_project_id": "\([0-9a-f]*\)".*/\1/p' <<<"$ids")
    KS_DEMO_PROJECT_ID=$(sed -n 's/.*"demo_project_id": "\([0-9a-f]*\)".*/\1/p' <<<"$ids")
    if [ -z "$KS_ADMIN_PROJECT_ID" ] || [ -z "$KS_DEMO_PROJECT_ID" ]; then
        ks_err "ks_setup.py printed no project ids"; ks_stop "$work"; return 1
    fi

    local deadline=$((SECONDS + ${KS_START_TIMEOUT:-90}))
    until timeout 5 curl -sf -o /dev/null --noproxy '*' --max-time 4 "$KS_URL"; do
        if ! kill -0 "$KS_PID" 2>/dev/null; then
            ks_err "gunicorn (keystone) exited before GET $KS_URL answered"
            ks_log_tail "$work"; ks_stop "$work"; return 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            ks_err "GET $KS_URL did not answer within ${KS_START_TIMEOUT:-90} s"
            ks_log_tail "$work"; ks_stop "$work"; return 1
        fi
        sleep 0.1
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

ks_services() {  # FILE|-: services, endpoints and service users (ks_services.py), one process
    local file=${1:-}
    [ -n "$file" ] || { ks_err "usage: ks_services FILE|- (JSON: {\"services\": [{\"name\", \"type\", \"url\"}...], \"service_users\": [NAME...]})"; return 1; }
    ks_need_work ks_services || return 1
    [ "$file" = - ] || [ -r "$file" ] || { ks_err "ks_services: cannot read $file"; return 1; }
    # Only the box's Keystone and WORK; the passwords are read from WORK's
    # 0600 files, never passed.
    KS_URL=$(sed -n 's/^export OS_AUTH_URL=//p' "$KS_WORK/admin-openrc") KS_WORK=$KS_WORK KS_REGION=$KS_REGION \
        timeout "${KS_CLI_TIMEOUT:-120}" "$KS_VENV/bin/python" -I "$KS_DIR/ks_services.py" "$file" ||
        { ks_err "ks_services $file failed"; return 1; }
}

ks_services_json() {  # [--user NAME] [NAME TYPE URL]: the ks_services document of one item
    python3 -c '
import json, sys
a = sys.argv[1:]
if a[0] == "--user":
    print(json.dumps({"service_users": [a[1]]}))
else:
    print(json.dumps({"services": [{"name": a[0], "type": a[1], "url": a[2]}]}))
' "$@"
}

ks_service() {
    local name=${1:-} type=${2:-} url=${3:-}
    case $name/$type in
        /*|*/|*[!A-Za-z0-9_./-]*|*/*/*) ks_err "usage: ks_service NAME TYPE URL (NAME, TYPE: [A-Za-z0-9_.-])"; return 1 ;;
    esac
    [ -n "$url" ] || { ks_err "usage: ks_service NAME TYPE URL"; return 1; }
    ks_need_work ks_service || return 1
    ks_services_json "$name" "$type" "$url" | ks_services - ||
        { ks_err "ks_service $name $type: the service or its endpoints were not made"; return 1; }
}

ks_service_user() {
    local name=${1:-}
    case $name in ''|*[!A-Za-z0-9_.-]*) ks_err "usage: ks_service_user NAME ([A-Za-z0-9_.-])"; return 1 ;; esac
    ks_need_work ks_service_user || return 1
    ks_services_json --user "$name" | ks_services - ||
        { ks_err "ks_service_user $name: user, project service, roles admin/service or its token failed"; return 1; }
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
