# A local Trove control plane: upstream trove-conductor on MariaDB, as
# clouds run Trove (on MySQL/MariaDB; not on sqlite, where several trove
# processes on one file lock each other). Sourced (bash) after
# tests/setup.sh, which provides the venv with trove==26.0.0 and PyMySQL, a
# running RabbitMQ, and a running MariaDB whose root the unix socket
# $TEST_MARIADB_SOCKET admits. Functions:
#
#   cp_setup WORK URL QUEUE   creates a fresh MariaDB database and user for
#                             this control plane (random name suffix and
#                             password; sets CP_DB), writes WORK/trove.conf
#                             (fresh random inst_rpc_key_encr_key; [database]
#                             connection = mysql+pymysql://...@127.0.0.1/
#                             CP_DB), creates the schema with `trove-manage
#                             db_sync`, registers datastore k2hdkc /
#                             CP_VERSION with trove-manage. Sets CP_CONF.
#                             On failure it drops what it created.
#   cp_write_conf WORK URL QUEUE   only the database, user and trove.conf.
#   cp_create_instance NAME   the instance rows trove-api stores, and the
#                             two files trove injects into the guest, written
#                             to WORK/conf.d (guest_config: WORK/trove-
#                             guestagent.conf must exist). Sets CP_INSTANCE.
#   cp_start_conductor        starts `trove-conductor --config-file
#                             WORK/trove.conf` (log: WORK/conductor.log),
#                             with trove's default worker count (one per
#                             CPU), and waits until its queue exists. Sets
#                             CP_CONDUCTOR_PID.
#   cp_status / cp_wait ...   tests/controlplane/trovedb.py status / wait on
#                             CP_INSTANCE.
#   cp_stop                   SIGTERM the conductor (bounded, then KILL),
#                             then cp_drop_database.
#   cp_drop_database [NAME]   drops the database and user NAME (default
#                             CP_DB).
#   cp_delete_queues TEXT...  delete the broker queues whose name contains
#                             one of TEXT (oslo leaves topic and server
#                             queues behind; only fanout queues expire).
#
# tests/controlplane/plane.py runs the same control plane for the Rust
# tests (tests/src/controlplane.rs), with these functions.
#
# Every step is bounded; a failing step prints what it ran and returns 1.

CP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CP_VENV=$(dirname "$(dirname "$PEER_PYTHON")")
CP_DATASTORE=k2hdkc
CP_VERSION=${CP_VERSION:-1.0.17}
CP_CONF=""; CP_WORK=""; CP_QUEUE=""; CP_INSTANCE=""; CP_CONDUCTOR_PID=""; CP_DB=""
CP_MARIADB_SOCKET=${TEST_MARIADB_SOCKET:-/run/mysqld/mysqld.sock}

cp_mariadb() {  # SQL on stdin, as MariaDB's root over the unix socket
    timeout 30 mariadb --socket="$CP_MARIADB_SOCKET" --user=root --batch --skip-column-names "$@"
}

cp_random() {   # $1 characters from [A-Za-z0-9] (or from the set $2)
    local set=${2:-A-Za-z0-9}
    head -c 512 /dev/urandom | tr -dc "$set" | head -c "$1"
}

cp_create_database() {  # sets CP_DB and CP_DB_PASSWORD (never printed)
    CP_DB=trove_cp_$(cp_random 12 'a-z0-9')
    CP_DB_PASSWORD=$(cp_random 32)
    # The password goes on stdin, not on a command line.
    printf '%s\n' \
        "CREATE DATABASE \`$CP_DB\` CHARACTER SET utf8mb4;" \
        "CREATE USER '$CP_DB'@'127.0.0.1' IDENTIFIED BY '$CP_DB_PASSWORD';" \
        "GRANT ALL PRIVILEGES ON \`$CP_DB\`.* TO '$CP_DB'@'127.0.0.1';" |
        cp_mariadb || { echo "creating MariaDB database $CP_DB failed (socket $CP_MARIADB_SOCKET)" >&2; CP_DB=""; return 1; }
}

cp_drop_database() {
    local db=${1:-$CP_DB}
    [ -n "$db" ] || return 0
    case $db in trove_cp_*) ;; *) echo "not a control plane database: $db" >&2; return 1 ;; esac
    printf '%s\n' "SET SESSION lock_wait_timeout = 20;" \
        "DROP DATABASE IF EXISTS \`$db\`;" "DROP USER IF EXISTS '$db'@'127.0.0.1';" |
        cp_mariadb || { echo "dropping MariaDB database $db failed" >&2; return 1; }
    [ "$db" != "$CP_DB" ] || CP_DB=""
}

cp_manage() {   # trove-manage: its result lines shown, its log in WORK/trove-manage.log
    local out
    if ! out=$(timeout 60 "$CP_VENV/bin/trove-manage" --config-file "$CP_CONF" "$@" \
               2>>"$CP_WORK/trove-manage.log"); then
        echo "trove-manage $* failed:" >&2
        printf '%s\n' "$out" >&2
        sed 's/^/    /' "$CP_WORK/trove-manage.log" >&2
        return 1
    fi
    # Its log lines (on stdout too, with debug = true) go to the log file.
    local stamp='^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:.]+ [0-9]+ [A-Z]+ '
    printf '%s\n' "$out" | grep -E "$stamp" >>"$CP_WORK/trove-manage.log" || true
    printf '%s\n' "$out" | grep -vE -e "$stamp" -e '^$' | sed 's/^/    /' || true
}

cp_write_conf() {   # the first half of cp_setup: database, user, trove.conf
    CP_WORK=$1; local url=$2; CP_QUEUE=$3
    CP_CONF=$CP_WORK/trove.conf
    local encr_key
    encr_key=$(cp_random 32)
    cp_create_database || return 1
    (umask 077; cat >"$CP_CONF" <<CONF
# trove.conf of the local control plane (trove-conductor, trove-manage,
# tests/controlplane/trovedb.py and plane.py all read it).
[DEFAULT]
transport_url = $url
control_exchange = trove
conductor_queue = $CP_QUEUE
# No trove_conductor_workers: trove-conductor runs its default, one worker
# per CPU (trove/cmd/conductor.py), as in a cloud; several workers handle
# one guest's messages at once.
debug = true
# The key that encrypts each instance's RPC key in the instances table.
inst_rpc_key_encr_key = $encr_key
enable_secure_rpc_messaging = true
# Where get_injected_files puts the guest's files (on a real guest:
# /etc/trove/conf.d), and the operator's guest config it copies there.
injected_config_location = $CP_WORK/conf.d
guest_config = $CP_WORK/trove-guestagent.conf

[database]
# This control plane's own database and user (cp_create_database).
connection = mysql+pymysql://$CP_DB:$CP_DB_PASSWORD@127.0.0.1/$CP_DB?charset=utf8mb4

[network]
# No Neutron here: no user port for the guest.
network_isolation = false
CONF
    ) || { CP_DB_PASSWORD=""; cp_drop_database; return 1; }
    CP_DB_PASSWORD=""
}

cp_setup() {
    cp_write_conf "$@" || return 1
    say "trove-manage db_sync (schema in MariaDB database $CP_DB)"
    cp_manage db_sync || { cp_drop_database; return 1; }
    # The datastore and its version, as an operator registers them. An
    # unpatched trove 26 has no [k2hdkc] option group; given --registry-ext
    # and --repl-strategy, datastore_version_update does not look one up
    # (trove/datastore/models.py update_datastore_version), so this works
    # with or without the Trove-side plugin (packaging/trove). Both values
    # only reach the guest as guest_info.conf's datastore_registry_ext and
    # replication_strategy, which the Rust agent does not use: the plugin's
    # class name, and "None" (K2HDKC replicates inside its ring).
    say "trove-manage datastore_update / datastore_version_update $CP_DATASTORE $CP_VERSION"
    { cp_manage datastore_update "$CP_DATASTORE" "" &&
      cp_manage datastore_version_update "$CP_DATASTORE" "$CP_VERSION" "$CP_DATASTORE" "" "" 1 \
          --registry-ext trove_k2hdkc.guest.Manager --repl-strategy None &&
      cp_manage datastore_update "$CP_DATASTORE" "$CP_VERSION"; } || { cp_drop_database; return 1; }
}

cp_trovedb() {
    timeout "${CP_TROVEDB_TIMEOUT:-60}" "$PEER_PYTHON" "$CP_DIR/trovedb.py" --config-file "$CP_CONF" "$@"
}

cp_create_instance() {
    local name=$1 out
    out=$(cp_trovedb create-instance --datastore "$CP_DATASTORE" --version "$CP_VERSION" \
        --name "$name" --tenant "$name") || { echo "create-instance failed" >&2; return 1; }
    CP_INSTANCE=$("$PEER_PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$out")
}

cp_status() { cp_trovedb status --instance "$CP_INSTANCE"; }
cp_wait() { CP_TROVEDB_TIMEOUT=$(( ${CP_WAIT_TIMEOUT:-180} + 30 )) cp_trovedb wait --instance "$CP_INSTANCE" --timeout "${CP_WAIT_TIMEOUT:-180}" "$@"; }

cp_list_queues() {
    timeout 20 rabbitmqctl -q list_queues --no-table-headers name 2>/dev/null
}

# The list is read whole before grep: `grep -q` stops at the first match,
# and under `set -o pipefail` the SIGPIPE rabbitmqctl then gets (with a few
# hundred queues) made the pipeline fail, so the queue seemed absent.
cp_queue_exists() {
    local queues
    queues=$(cp_list_queues) || return 1
    grep -qxF -- "$1" <<<"$queues"
}

cp_delete_queues() {
    local pats=() q
    for q in "$@"; do [ -n "$q" ] && pats+=(-e "$q"); done
    [ ${#pats[@]} -gt 0 ] || return 0
    cp_list_queues | grep -F "${pats[@]}" | while read -r q; do
        timeout 20 rabbitmqctl -q delete_queue "$q" </dev/null >/dev/null 2>&1 || true
    done
}

cp_start_conductor() {
    "$CP_VENV/bin/trove-conductor" --config-file "$CP_CONF" >"$CP_WORK/conductor.log" 2>&1 &
    CP_CONDUCTOR_PID=$!
    # The conductor's queue must exist before the guest casts to it, as in a
    # running Trove cloud (a cast to a topic nobody declared is dropped).
    local i
    for i in $(seq 1 60); do
        kill -0 "$CP_CONDUCTOR_PID" 2>/dev/null || break
        cp_queue_exists "$CP_QUEUE" && return 0
        sleep 0.5
    done
    echo "trove-conductor did not declare queue $CP_QUEUE; its log:" >&2
    # Without the debug option dump: trove does not mask inst_rpc_key_encr_key.
    grep -v 'log_opt_values' "$CP_WORK/conductor.log" | sed 's/^/    /' >&2 || true
    return 1
}

cp_stop() {
    if [ -n "$CP_CONDUCTOR_PID" ] && kill -TERM "$CP_CONDUCTOR_PID" 2>/dev/null; then
        local i
        for i in $(seq 1 40); do kill -0 "$CP_CONDUCTOR_PID" 2>/dev/null || break; sleep 0.25; done
        kill -KILL "$CP_CONDUCTOR_PID" 2>/dev/null || true
        wait "$CP_CONDUCTOR_PID" 2>/dev/null || true
    fi
    CP_CONDUCTOR_PID=""
    cp_drop_database || true   # said why; cleanup goes on
}
