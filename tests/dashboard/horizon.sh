# Horizon with trove-dashboard (27.0.0, the cycle of trove 26.0.0) for the
# Dashboard test, against the box's Keystone and Trove. Sourced (bash).
#
#   hz_install              the venv $HZ_VENV (default .venv-horizon) from
#                           requirements.txt beside this file, plus the
#                           plugin (packaging/dashboard) installed with pip,
#                           as an operator installs it.
#   hz_start WORK KEYSTONE_URL PORT [--without-plugin]
#                           the operator's steps: trove-dashboard's enabled
#                           files and (unless --without-plugin) the plugin's
#                           one into openstack_dashboard/local/enabled
#                           (--without-plugin: the Clusters panel enabled
#                           by an operator's file instead),
#                           local_settings.py (0600: the secret key), static
#                           files collected; then gunicorn on 127.0.0.1:PORT
#                           (pid WORK/horizon.pid, log WORK/horizon.log);
#                           waits until the login page answers.
#   hz_stop WORK            SIGTERM (bounded), then SIGKILL, by pid.

HZ_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HZ_ROOT=$(cd "$HZ_DIR/../.." && pwd)
HZ_VENV=${HZ_VENV:-$HZ_ROOT/.venv-horizon}

hz_err() { printf 'horizon.sh: %s\n' "$*" >&2; }

hz_install() {
    local req=$HZ_DIR/requirements.txt stamp=$HZ_VENV/.hz-requirements.sha256 want log
    want=$( (cat "$req"; find "$HZ_ROOT/packaging/dashboard/src" "$HZ_ROOT/packaging/dashboard/pyproject.toml" \
        -type f -not -path '*__pycache__*' | sort | xargs cat) | sha256sum | cut -d' ' -f1)
    [ -x "$HZ_VENV/bin/gunicorn" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
    printf '==> installing horizon, trove-dashboard and the plugin into %s\n' "$HZ_VENV"
    [ -x "$HZ_VENV/bin/python" ] || timeout 120 python3 -m venv "$HZ_VENV" || return 1
    log=$(mktemp)
    if ! timeout 1200 "$HZ_VENV/bin/pip" install -q --disable-pip-version-check -r "$req" >"$log" 2>&1 ||
       ! timeout 300 "$HZ_VENV/bin/pip" install -q --disable-pip-version-check --no-deps \
           --force-reinstall "$HZ_ROOT/packaging/dashboard" >>"$log" 2>&1; then
        hz_err "pip install failed:"; tail -n 30 "$log" >&2; rm -f "$log"; return 1
    fi
    rm -f "$log"
    printf '%s\n' "$want" >"$stamp"
}

hz_site() { "$HZ_VENV/bin/python" -c 'import openstack_dashboard, os; print(os.path.dirname(openstack_dashboard.__file__))'; }

hz_start() {
    local work=${1:-} ks=${2:-} port=${3:-} plugin=1
    [ "${4:-}" = --without-plugin ] && plugin=0
    [ -n "$work" ] && [ -n "$ks" ] && [ -n "$port" ] || { hz_err "usage: hz_start WORK KEYSTONE_URL PORT [--without-plugin]"; return 1; }
    hz_install || return 1
    mkdir -p "$work/sessions" && chmod 0700 "$work" "$work/sessions" || return 1
    local site td enabled
    site=$(hz_site) || return 1
    td=$("$HZ_VENV/bin/python" -c 'import trove_dashboard, os; print(os.path.dirname(trove_dashboard.__file__))') || return 1
    enabled=$site/local/enabled
    # The operator's steps (trove-dashboard's and the plugin's install docs).
    find "$enabled" -maxdepth 1 -name '_17*.py' -delete
    cp "$td"/enabled/_17*.py "$enabled/"
    if [ "$plugin" = 1 ]; then
        local ours
        ours=$("$HZ_VENV/bin/python" -c 'import trove_k2hdkc_dashboard, os; print(os.path.dirname(trove_k2hdkc_dashboard.__file__))') || return 1
        cp "$ours"/enabled/_17*.py "$enabled/"
    else
        # Without the plugin, an operator who enabled the Clusters panel
        # (trove-dashboard ships it disabled): Launch Cluster is there, and
        # the test sees what it offers.
        printf '%s\n' "PANEL = 'database_clusters'" "PANEL_DASHBOARD = 'project'" \
            "PANEL_GROUP = 'database'" "DISABLED = False" \
            "ADD_PANEL = 'trove_dashboard.content.database_clusters.panel.Clusters'" \
            >"$enabled/_1741_project_database_clusters_panel_enabled.py"
    fi
    (umask 077; cat >"$site/local/local_settings.py" <<PY
# Written by tests/dashboard/horizon.sh for the Dashboard test.
DEBUG = False
ALLOWED_HOSTS = ['127.0.0.1', 'localhost']
SECRET_KEY = '$(python3 -c 'import secrets; print(secrets.token_hex(32))')'
OPENSTACK_HOST = '127.0.0.1'
OPENSTACK_KEYSTONE_URL = '$ks'
OPENSTACK_KEYSTONE_DEFAULT_ROLE = 'member'
# One process (gunicorn, one worker): its memory is the cache. Room for
# every entry: at the default 300, culling dropped the clusters' pending
# grow lists (trove-dashboard keeps them in the cache) between two pages.
CACHES = {'default': {'BACKEND': 'django.core.cache.backends.locmem.LocMemCache',
                      'OPTIONS': {'MAX_ENTRIES': 100000}}}
# No memcached here: sessions in files (the cache's sessions were lost
# between a login and the next page under gunicorn).
SESSION_ENGINE = 'django.contrib.sessions.backends.file'
SESSION_FILE_PATH = '$work/sessions'
STATIC_ROOT = '$work/static'
COMPRESS_OFFLINE = False
LOGGING = {'version': 1, 'disable_existing_loggers': False,
           'handlers': {'console': {'class': 'logging.StreamHandler'}},
           'root': {'handlers': ['console'], 'level': 'INFO'}}
PY
    ) || return 1
    if ! (cd "$site/.." && DJANGO_SETTINGS_MODULE=openstack_dashboard.settings \
            timeout 600 "$HZ_VENV/bin/python" -m django collectstatic --noinput >"$work/collectstatic.log" 2>&1); then
        hz_err "collectstatic failed:"; tail -n 20 "$work/collectstatic.log" >&2; return 1
    fi
    if timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$port" 2>/dev/null; then
        hz_err "127.0.0.1:$port is already in use"; return 1
    fi
    rm -f "$work/horizon.pid"
    # gunicorn writes its own pid (the master's): what hz_stop signals.
    (cd "$HZ_DIR" && DJANGO_SETTINGS_MODULE=openstack_dashboard.settings setsid "$HZ_VENV/bin/gunicorn" \
        --bind "127.0.0.1:$port" --workers 1 --threads 4 --timeout 120 --pid "$work/horizon.pid" \
        horizon_wsgi:application </dev/null >>"$work/horizon.log" 2>&1 &)
    local i
    for i in $(seq 1 240); do
        if [ -s "$work/horizon.pid" ] && ! kill -0 "$(cat "$work/horizon.pid")" 2>/dev/null; then
            hz_err "gunicorn exited"; tail -n 30 "$work/horizon.log" >&2; return 1
        fi
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 "http://127.0.0.1:$port/auth/login/")" = 200 ] && return 0
        sleep 0.5
    done
    hz_err "the login page did not answer in 120 s"; tail -n 30 "$work/horizon.log" >&2; hz_stop "$work"; return 1
}

hz_stop() {
    local work=${1:-} pid i
    [ -s "$work/horizon.pid" ] || return 0
    pid=$(cat "$work/horizon.pid")
    case $pid in ''|*[!0-9]*) return 1 ;; esac
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$work/horizon.pid"
}
