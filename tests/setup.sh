#!/usr/bin/env bash
# Shared set-up for tests/run, tests/quickstart and tests/bench: installs
# and starts what they need on a fresh Debian machine (RabbitMQ, MariaDB for
# the Trove control planes, a Python venv with upstream trove, oslo.messaging
# and PyMySQL, the Trove-side plugin installed into it). Sourced, not run.
# Each step checks before it installs or starts anything, so re-running is
# cheap. Every entry point a user may start with (tests/quickstart,
# tests/box/box.sh up, tests/bench/*) comes through here, so each installs
# what it runs on a fresh clone.
# After it: $root is the repository, $PEER_PYTHON the venv's python,
# $TEST_MARIADB_SOCKET the unix socket on which MariaDB's root (unix_socket
# authentication, as root here) makes the control planes' databases.
root=$PWD

source tests/lib.sh

# --- system packages -------------------------------------------------------
missing=()
command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v losetup >/dev/null 2>&1 || missing+=(mount)
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
command -v file >/dev/null 2>&1 || missing+=(file)   # build.sh checks the stand-in binaries are static
command -v bc >/dev/null 2>&1 || missing+=(bc)       # the stand-in image's smoke test
command -v curl >/dev/null 2>&1 || missing+=(curl)
[ -x /bin/busybox ] || missing+=(busybox-static)     # the box's guest hosts (tests/box/host-image)
command -v mariadbd >/dev/null 2>&1 || missing+=(mariadb-server)   # the control planes' database (adds about 35 s)
command -v gdb >/dev/null 2>&1 || missing+=(gdb)     # tests/packaging/merge-requests holds a merge thread with it
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- TLS material for the broker (a test CA, and a second CA that did not sign it)
# One place per machine, so every checkout agrees with the running broker.
tls=${TEST_TLS_DIR:-/var/tmp/k2hdkc-trove-test-tls}
if [ ! -s "$tls/server.pem" ]; then
    say "making a test CA and broker certificate in $tls"
    mkdir -p "$tls"
    for ca in ca wrong-ca; do
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=test $ca" \
            -keyout "$tls/$ca.key" -out "$tls/$ca.pem" 2>/dev/null
    done
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tls/san.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
        -days 3650 -extfile "$tls/san.ext" -out "$tls/server.pem" 2>/dev/null
    chmod 0644 "$tls"/*.pem "$tls/server.key"   # the broker runs as user rabbitmq
fi
cat >"$tls/rabbitmq.conf" <<CONF
listeners.tcp.default = 5672
listeners.ssl.default = 5671
ssl_options.cacertfile = $tls/ca.pem
ssl_options.certfile = $tls/server.pem
ssl_options.keyfile = $tls/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
CONF

# --- RabbitMQ, with the TLS listener on 5671 ---------------------------------
if timeout 20 rabbitmqctl -q status >/dev/null 2>&1 && ! timeout 10 bash -c '</dev/tcp/127.0.0.1/5671' 2>/dev/null; then
    say "restarting rabbitmq-server with the test TLS listener"
    rabbitmqctl -q stop >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do timeout 5 rabbitmqctl -q status >/dev/null 2>&1 || break; sleep 1; done
fi
if ! timeout 20 rabbitmqctl -q status >/dev/null 2>&1; then
    say "starting rabbitmq-server"
    RABBITMQ_CONFIG_FILE=$tls/rabbitmq.conf rabbitmq-server -detached
fi
for _ in $(seq 1 60); do timeout 30 rabbitmqctl -q await_startup >/dev/null 2>&1 && break; sleep 1; done
timeout 30 rabbitmqctl -q await_startup
export TEST_TLS_DIR=$tls

# --- Docker engine (the k2hdkc containers; the test image is built locally) --
if ! timeout 10 docker version >/dev/null 2>&1; then
    say "starting dockerd"
    (dockerd >/var/log/k2hdkc-trove-tests-dockerd.log 2>&1 &)
    for _ in $(seq 1 60); do timeout 5 docker version >/dev/null 2>&1 && break; sleep 1; done
    timeout 10 docker version >/dev/null || { echo "dockerd did not start; see /var/log/k2hdkc-trove-tests-dockerd.log" >&2; exit 1; }
fi

# --- this machine's own addresses resolve locally ---------------------------
# chmpx looks up the addresses of its peers and slaves (on the host network
# that is this machine) on its event and socket threads, several times per
# connection. A guest's own address resolves at once (cloud-init's hosts
# entry, the cloud's DNS); a resolver that drops some reverse queries, as
# this kind of CI machine's does, holds chmpx 5 s a lookup. Measured with
# the real chmpx: a slave took 10.3 s to join instead of 0.6 s, and a server
# stopped answering its control port for 30 s and more.
for addr in $(hostname -I 2>/dev/null); do
    if ! awk -v a="$addr" '$1 == a { found = 1 } END { exit !found }' /etc/hosts; then
        say "adding '$addr $(hostname)' to /etc/hosts (chmpx must resolve this machine's addresses at once)"
        printf '%s %s # added by k2hdkc-trove tests/setup.sh\n' "$addr" "$(hostname)" >>/etc/hosts ||
            echo "WARNING: cannot write /etc/hosts; chmpx may stall on DNS lookups of $addr" >&2
    fi
done

# --- MariaDB: the database of the Trove control planes (tests/controlplane) --
# Trove runs on MySQL/MariaDB in clouds; several trove processes (two
# trove-conductor workers, trove-manage, trovedb.py) on one sqlite file lock
# each other. No systemd here: mariadbd runs in the background on Debian's
# datadir (the package's postinst initialises it; mariadb-install-db if not),
# the unix socket and TCP on 127.0.0.1 only. Tuned for tests, not for
# durability (no flush per commit). Each control plane makes its own
# database and user (controlplane.sh cp_setup) and drops them at the end.
mariadb_sock=${TEST_MARIADB_SOCKET:-/run/mysqld/mysqld.sock}
mariadb_log=/var/log/k2hdkc-trove-tests-mariadb.log
mariadb_up() { timeout 10 mariadb-admin --socket="$mariadb_sock" --user=root --connect-timeout=5 ping >/dev/null 2>&1; }
if ! mariadb_up; then
    mariadb_data=${TEST_MARIADB_DATADIR:-/var/lib/mysql}
    if [ ! -d "$mariadb_data/mysql" ]; then
        say "initialising the MariaDB datadir $mariadb_data"
        mkdir -p "$mariadb_data"
        chown mysql:mysql "$mariadb_data"
        timeout 120 mariadb-install-db --user=mysql --datadir="$mariadb_data" \
            --auth-root-authentication-method=socket >>"$mariadb_log" 2>&1 ||
            { echo "mariadb-install-db failed; see $mariadb_log" >&2; exit 1; }
    fi
    say "starting mariadbd (log: $mariadb_log)"
    mkdir -p "$(dirname "$mariadb_sock")"
    chown mysql:mysql "$(dirname "$mariadb_sock")"
    (setsid mariadbd --user=mysql --datadir="$mariadb_data" --socket="$mariadb_sock" \
        --pid-file="$(dirname "$mariadb_sock")/k2hdkc-trove-tests-mariadb.pid" \
        --bind-address=127.0.0.1 --port=3306 --skip-name-resolve \
        --max-connections=2000 --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 \
        --log-error="$mariadb_log" </dev/null >>"$mariadb_log" 2>&1 &)
    for _ in $(seq 1 60); do mariadb_up && break; sleep 0.5; done
    mariadb_up || { echo "mariadbd did not start; see $mariadb_log" >&2; exit 1; }
fi
export TEST_MARIADB_SOCKET=$mariadb_sock

# --- upstream Trove in a venv (the peer the tests talk to) ------------------
if ! .venv/bin/python -c 'import trove, oslo_messaging, pymysql' >/dev/null 2>&1; then
    say "creating .venv with $(grep -v '^#' tests/peer/requirements.txt | tr '\n' ' ')"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r tests/peer/requirements.txt
fi
export PEER_PYTHON="$root/.venv/bin/python"

# --- the Trove-side plugin in .venv, as an operator installs it --------------
# The box's trove-manage, trove-api and taskmanager run from .venv and know
# k2hdkc only through the plugin. Reinstalled whenever packaging/trove's
# sources change (a stamp of their hash), so a pull never runs a stale one.
plugin_want=$(cd packaging/trove && find pyproject.toml README.md trove_k2hdkc.pth src -type f \
    -not -path '*__pycache__*' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.trove-k2hdkc.sha256 2>/dev/null)" != "$plugin_want" ] ||
   ! .venv/bin/python -c 'import trove_k2hdkc' >/dev/null 2>&1; then
    say "installing the Trove plugin (packaging/trove) into .venv"
    timeout 300 .venv/bin/pip install -q --disable-pip-version-check --force-reinstall --no-deps ./packaging/trove ||
        { echo "pip install ./packaging/trove into .venv failed" >&2; exit 1; }
    printf '%s\n' "$plugin_want" >.venv/.trove-k2hdkc.sha256
fi
