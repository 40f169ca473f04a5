#!/usr/bin/env bash
# Trove in a box: an unmodified Trove 26 control plane with a real Keystone,
# stand-ins only for what cannot run here (Nova, Cinder, Neutron, Glance,
# K2HR3), and every Nova server a guest host of its own (tests/box/guest-host:
# a network namespace with its own address, its own directories, a loop
# device as its Cinder volume, and our agent). The product's local default
# stack; tests/quickstart drives it with the real `openstack` CLI.
#
#   bash tests/box/box.sh up      bring it up (installs what is missing)
#   bash tests/box/box.sh down    stop everything it started, by pid, and
#                                 remove what it made
#   bash tests/box/box.sh env     the line to source for `openstack`
#   bash tests/box/box.sh status  what runs
#   bash tests/box/box.sh restart taskmanager|conductor
#                                 that service crashes (SIGKILL) and starts
#                                 again
#
# State in $BOX_DIR (default /var/tmp/k2hdkc-box): pids/, logs/, the
# openrc files (0600), trove.conf (0600), k2hdkc-image (the k2hdkc image
# the guests run), openstack/ (the stand-ins' state;
# openstack/guests/<server id>/ is a guest host's root).
#
# What runs, and where (loopback unless said):
#   RabbitMQ      vhost k2hdkc-box, user k2hdkc-box (random password);
#                 guests reach it on the box network's gateway
#   MariaDB       Trove's database (a fresh one, dropped by down)
#   Keystone      real (tests/box/keystone), :$BOX_KEYSTONE_PORT
#   Swift         real (tests/swift), the proxy on the box network's
#                 gateway :$BOX_SWIFT_PORT (guests reach it there), in the
#                 catalog as object-store; Trove's backups go there
#   trove-api     real, Trove's paste pipeline with keystonemiddleware,
#                 :$BOX_TROVE_PORT; trove-taskmanager, trove-conductor
#                 (default workers)
#   stand-ins     Nova/Cinder/Neutron/Glance (tests/standins/openstack),
#                 :$BOX_OPENSTACK_PORT; K2HR3 (tests/standins/k2hr3) on the
#                 box network's gateway
#   guests        Docker network $BOX_NETWORK ($BOX_CIDR), one namespace
#                 holder container per server, the agent inside
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

BOX_DIR=${BOX_DIR:-/var/tmp/k2hdkc-box}
BOX_NETWORK=${BOX_NETWORK:-k2hdkc-box}
BOX_CIDR=${BOX_CIDR:-10.213.0.0/24}
BOX_GATEWAY=${BOX_GATEWAY:-10.213.0.1}
BOX_KEYSTONE_PORT=${BOX_KEYSTONE_PORT:-5000}
BOX_TROVE_PORT=${BOX_TROVE_PORT:-8779}
BOX_OPENSTACK_PORT=${BOX_OPENSTACK_PORT:-8774}
BOX_K2HR3_PORT=${BOX_K2HR3_PORT:-18080}
BOX_SWIFT_PORT=${BOX_SWIFT_PORT:-8080}
BOX_PROMETHEUS_PORT=${BOX_PROMETHEUS_PORT:-9090}
# The guests' backup_segment_max_size: small, so a test's backup of a few
# MiB has several segments (upstream's default is 2 GiB).
BOX_BACKUP_SEGMENT=${BOX_BACKUP_SEGMENT:-1048576}
# chmpx's worker threads (SOCKTHREADCNT and MQTHREADCNT) in the ini the
# K2HR3 stand-in renders; packaging/k2hr3's template ships 8.
BOX_CHMPX_THREADS=${BOX_CHMPX_THREADS:-8}
BOX_VHOST=k2hdkc-box
BOX_VERSION=${BOX_VERSION:-1.0.17}
# A second datastore version, registered when its real image was built
# here, for upgrades to BOX_VERSION (tests/upgrade).
BOX_OLD_VERSION=${BOX_OLD_VERSION:-1.0.16}
export BOX_DIR BOX_NETWORK

box_t0=$(date +%s.%N)
prog=box
source tests/lib.sh
step() { printf '==> %s  [+%ss]\n' "$*" "$(python3 -c 'import sys,time; print("%.1f" % (time.time() - float(sys.argv[1])))' "$box_t0")"; }

pid_of() { cat "$BOX_DIR/pids/$1.pid" 2>/dev/null || true; }
running() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

# Starts "$@" in its own session (it outlives this script when the box is
# kept), logging to logs/NAME.log; the pid goes to pids/NAME.pid.
spawn() {
    local name=$1; shift
    setsid "$@" </dev/null >>"$BOX_DIR/logs/$name.log" 2>&1 &
    echo $! >"$BOX_DIR/pids/$name.pid"
}

stop_pid_file() {  # SIGTERM, bounded wait, then SIGKILL; by the pid we recorded
    local name=$1 wait_s=${2:-20} pid i
    pid=$(pid_of "$name")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 $((wait_s * 4))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "box: $name ($pid) did not stop in ${wait_s}s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$BOX_DIR/pids/$name.pid"
}

wait_http() {  # URL SECONDS NAME: until the URL answers at all (any status)
    local url=$1 secs=$2 name=$3 i
    for i in $(seq 1 $((secs * 4))); do
        running "$name" || { tail -n 30 "$BOX_DIR/logs/$name.log" >&2; die "$name exited (log: $BOX_DIR/logs/$name.log)"; }
        curl -s -o /dev/null --max-time 2 "$url" && return 0
        sleep 0.25
    done
    tail -n 30 "$BOX_DIR/logs/$name.log" >&2
    die "$name did not answer on $url within ${secs}s"
}

k2hdkc_image() {  # the real image when it was built here, else the stand-in
    if [ -n "${K2HDKC_TEST_IMAGE:-}" ]; then echo "$K2HDKC_TEST_IMAGE"
    elif docker image inspect "k2hdkc-real:$BOX_VERSION" >/dev/null 2>&1; then echo "k2hdkc-real:$BOX_VERSION"
    else echo "k2hdkc-standin:test"; fi
}

box_versions() {  # the datastore versions to register: BOX_VERSION first
    echo "$BOX_VERSION"
    if [ "$(k2hdkc_image)" = "k2hdkc-real:$BOX_VERSION" ] &&
        docker image inspect "k2hdkc-real:$BOX_OLD_VERSION" >/dev/null 2>&1; then
        echo "$BOX_OLD_VERSION"
    fi
}

guest_docker_image() {  # IMAGE: the guests' docker_image
    # Trove's convention: the datastore version is the tag, so an upgrade
    # can choose another one. An image tagged otherwise stays pinned.
    case $1 in
        *:"$BOX_VERSION") echo "${1%:*}" ;;
        *) echo "$1" ;;
    esac
}

# --- up ------------------------------------------------------------------------
up() {
    [ ! -e "$BOX_DIR/up" ] || die "a box is up in $BOX_DIR (bash tests/box/box.sh down first)"
    local t0; t0=$(date +%s.%N)
    source tests/setup.sh
    source tests/controlplane/controlplane.sh
    source tests/box/keystone/keystone.sh
    source tests/swift/swift.sh
    mkdir -p "$BOX_DIR"/{pids,logs,openstack}
    chmod 0700 "$BOX_DIR"
    touch "$BOX_DIR/up"

    step "building trove-guestagent and k2hdkc-slave (release) and the images"
    cargo build --release --locked -q -p agent --bin trove-guestagent --bin k2hdkc-slave
    local image; image=$(k2hdkc_image)
    echo "$image" >"$BOX_DIR/k2hdkc-image"   # what the guests run (tests/cluster's data checks)
    if [ "$image" = k2hdkc-standin:test ]; then
        bash tests/standins/k2hdkc-image/build.sh >"$BOX_DIR/logs/image-build.log" 2>&1 ||
            { cat "$BOX_DIR/logs/image-build.log" >&2; die "building the k2hdkc stand-in image failed"; }
    fi
    if ! docker image inspect k2hdkc-box-host >/dev/null 2>&1; then
        [ -x /bin/busybox ] || die "no /bin/busybox (apt-get install busybox-static)"
        local ctx; ctx=$(mktemp -d)
        cp tests/box/host-image/Dockerfile /bin/busybox "$ctx/"
        timeout 300 docker build -q -t k2hdkc-box-host "$ctx" >/dev/null || die "building k2hdkc-box-host failed"
        rm -rf "$ctx"
    fi
    echo "    k2hdkc image: $image"

    step "the guests' network $BOX_NETWORK ($BOX_CIDR)"
    if ! docker network inspect "$BOX_NETWORK" >/dev/null 2>&1; then
        timeout 60 docker network create --subnet "$BOX_CIDR" --gateway "$BOX_GATEWAY" \
            --label org.k2hdkc.box=1 "$BOX_NETWORK" >/dev/null || die "docker network create $BOX_NETWORK failed"
    fi

    step "RabbitMQ: vhost $BOX_VHOST, user $BOX_VHOST"
    local mq_password; mq_password=$(cp_random 32)
    timeout 30 rabbitmqctl -q add_vhost "$BOX_VHOST" >/dev/null 2>&1 || true
    timeout 30 rabbitmqctl -q delete_user "$BOX_VHOST" >/dev/null 2>&1 || true
    # The password on stdin, not on a command line.
    printf '%s' "$mq_password" | timeout 30 rabbitmqctl -q add_user "$BOX_VHOST" >/dev/null ||
        die "rabbitmqctl add_user failed"
    timeout 30 rabbitmqctl -q set_permissions -p "$BOX_VHOST" "$BOX_VHOST" '.*' '.*' '.*' >/dev/null ||
        die "rabbitmqctl set_permissions failed"
    local mq_local="rabbit://$BOX_VHOST:$mq_password@127.0.0.1:5672/$BOX_VHOST"
    local mq_guest="rabbit://$BOX_VHOST:$mq_password@$BOX_GATEWAY:5672/$BOX_VHOST"

    step "K2HR3 stand-in on $BOX_GATEWAY:$BOX_K2HR3_PORT"
    # User tokens (the plugin's provisioning) are checked with the box's
    # Keystone, which starts below: the stand-in asks it per request.
    spawn k2hr3 "$PEER_PYTHON" tests/standins/k2hr3/k2hr3_standin.py --role box \
        --listen "$BOX_GATEWAY:$BOX_K2HR3_PORT" --automerge off --threads "$BOX_CHMPX_THREADS" \
        --keystone-url "http://127.0.0.1:$BOX_KEYSTONE_PORT/v3"
    wait_http "http://$BOX_GATEWAY:$BOX_K2HR3_PORT/_standin/calls" 20 k2hr3
    grep -m1 '^{' "$BOX_DIR/logs/k2hr3.log" >"$BOX_DIR/k2hr3.json"

    # trove-manage (five runs of a few seconds of imports each) needs only
    # the database: it runs while Keystone and the stand-ins start.
    step "Trove 26: trove.conf, database, datastore registration (in the background)"
    box_trove_conf "$mq_local" "$mq_guest" "$image"
    box_register_datastore >"$BOX_DIR/logs/register.log" 2>&1 &
    local register_pid=$!

    step "Keystone (real) on 127.0.0.1:$BOX_KEYSTONE_PORT"
    ks_install
    ks_start "$BOX_DIR" "$BOX_KEYSTONE_PORT"

    step "Nova, Cinder, Neutron, Glance stand-ins on 127.0.0.1:$BOX_OPENSTACK_PORT"
    local standin=(python3 tests/standins/openstack/openstack_standin.py --host 127.0.0.1
        --port "$BOX_OPENSTACK_PORT" --state "$BOX_DIR/openstack" --hypervisor "$root/tests/box/guest-host"
        --network-cidr "$BOX_CIDR" --network-name "$BOX_NETWORK" --volume-delay 0)
    BOX_ID=$BOX_DIR BOX_AGENT=$root/target/release/trove-guestagent BOX_HOST_IMAGE=k2hdkc-box-host \
        BOX_PROMETHEUS_TARGETS=$BOX_DIR/prometheus/targets spawn openstack "${standin[@]}"
    wait_http "http://127.0.0.1:$BOX_OPENSTACK_PORT/" 20 openstack
    # The catalog: the stand-ins as they print themselves, and trove-api;
    # the service user trove-api and Trove's admin clients use.
    "${standin[@]}" --print-catalog | python3 -c '
import json, sys
services = json.load(sys.stdin) + [{"name": "trove", "type": "database", "url": sys.argv[1]}]
print(json.dumps({"services": services, "service_users": ["trove"]}))' \
        "http://127.0.0.1:$BOX_TROVE_PORT/v1.0/%(tenant_id)s" >"$BOX_DIR/catalog.json"
    ks_services "$BOX_DIR/catalog.json" || die "registering the catalog in Keystone failed"

    step "Swift (real) on $BOX_GATEWAY:$BOX_SWIFT_PORT, object-store in the catalog"
    sw_start "$BOX_DIR" "$BOX_GATEWAY" "$BOX_SWIFT_PORT" || die "Swift did not start (logs: $BOX_DIR/swift/log)"

    step "Prometheus (Debian's) on 127.0.0.1:$BOX_PROMETHEUS_PORT, scraping every guest and application host"
    prometheus_up

    step "Trove 26: the datastore registration (README steps)"
    wait "$register_pid" || { cat "$BOX_DIR/logs/register.log" >&2; die "registering the datastore failed"; }
    cat "$BOX_DIR/logs/register.log"
    # trove-api's paste pipeline authenticates with keystonemiddleware
    # against the box's Keystone; [service_credentials] for Trove's admin
    # clients (tests/box/keystone).
    ks_trove_conf_auth "$BOX_DIR" "$BOX_TROVE_PORT" >>"$BOX_DIR/trove.conf" || die "the auth sections of trove.conf failed"

    step "trove-conductor, trove-taskmanager, trove-api"
    local venv_bin; venv_bin=$(dirname "$PEER_PYTHON")
    spawn conductor "$venv_bin/trove-conductor" --config-file "$BOX_DIR/trove.conf"
    spawn taskmanager "$venv_bin/trove-taskmanager" --config-file "$BOX_DIR/trove.conf"
    spawn api "$venv_bin/trove-api" --config-file "$BOX_DIR/trove.conf"
    wait_http "http://127.0.0.1:$BOX_TROVE_PORT/" 60 api
    box_wait_queue trove-conductor conductor
    box_wait_queue taskmanager taskmanager

    cat >"$BOX_DIR/env" <<ENV
# source this to use the box's cloud as its tenant (demo): openstack database ...
source $BOX_DIR/demo-openrc
ENV
    printf '%s\n' "$(date +%s.%N)" "$t0" | python3 -c 'import sys; a,b=map(float,sys.stdin.read().split()); print("%.1f" % (a-b))' >"$BOX_DIR/up-seconds"
    step "the box is up in $(cat "$BOX_DIR/up-seconds") s"
    echo "    use it:  source $BOX_DIR/demo-openrc   (admin: $BOX_DIR/admin-openrc)"
    echo "    stop it: bash tests/box/box.sh down"
}

# Debian's prometheus, run by the box (not its service): every guest host
# and application host adds a target file of its own (file_sd) when it
# comes up and removes it when it goes.
prometheus_up() {
    if ! command -v prometheus >/dev/null 2>&1; then
        timeout 300 apt-get update -qq || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends prometheus >/dev/null ||
            die "apt-get install prometheus failed"
        # On a plain machine the package starts its own service on :9090,
        # scraping no guest; the box runs its own, so stop that one.
        prometheus_service_off
    fi
    # Something else answering on our port would pass the readiness check
    # below and then never see a guest: refuse it by name.
    if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$BOX_PROMETHEUS_PORT/"; then
        die "127.0.0.1:$BOX_PROMETHEUS_PORT is already taken (a prometheus service? stop it, or set BOX_PROMETHEUS_PORT)"
    fi
    mkdir -p "$BOX_DIR/prometheus/targets" "$BOX_DIR/prometheus/data"
    cat >"$BOX_DIR/prometheus/prometheus.yml" <<YML
global:
  scrape_interval: 5s
  scrape_timeout: 5s
  evaluation_interval: 5s
scrape_configs:
  - job_name: k2hdkc
    file_sd_configs:
      - files: ['$BOX_DIR/prometheus/targets/*.json']
        refresh_interval: 5s
YML
    spawn prometheus prometheus --config.file="$BOX_DIR/prometheus/prometheus.yml" \
        --storage.tsdb.path="$BOX_DIR/prometheus/data" --web.listen-address="127.0.0.1:$BOX_PROMETHEUS_PORT"
    wait_http "http://127.0.0.1:$BOX_PROMETHEUS_PORT/-/ready" 60 prometheus
    # The server that answered must be ours, reading our config.
    curl -s --max-time 5 "http://127.0.0.1:$BOX_PROMETHEUS_PORT/api/v1/status/flags" |
        grep -qF "$BOX_DIR/prometheus/prometheus.yml" ||
        die "the prometheus on 127.0.0.1:$BOX_PROMETHEUS_PORT is not the box's (its flags do not name $BOX_DIR/prometheus/prometheus.yml)"
}

prometheus_service_off() {  # Debian's service, however this machine runs services
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        timeout 60 systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    if [ -x /etc/init.d/prometheus ]; then
        timeout 60 /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    fi
    local i
    for i in $(seq 1 40); do
        pgrep -u prometheus -x prometheus >/dev/null 2>&1 || return 0
        [ "$i" = 20 ] && pkill -KILL -u prometheus -x prometheus 2>/dev/null
        [ "$i" = 1 ] && pkill -TERM -u prometheus -x prometheus 2>/dev/null
        sleep 0.25
    done
    die "Debian's prometheus service (user prometheus) would not stop"
}

box_wait_queue() {  # a service is ready once its queue exists in the box's vhost
    local queue=$1 name=$2 i
    for i in $(seq 1 120); do
        running "$name" || { tail -n 30 "$BOX_DIR/logs/$name.log" >&2; die "$name exited"; }
        timeout 20 rabbitmqctl -q list_queues -p "$BOX_VHOST" --no-table-headers name 2>/dev/null | grep -qxF "$queue" && return 0
        sleep 0.5
    done
    die "$name did not declare its queue $queue in 60 s"
}

# trove.conf (0600): cp_write_conf's database on MariaDB, then the box.
box_trove_conf() {
    local mq_local=$1 mq_guest=$2 image=$3
    cp_write_conf "$BOX_DIR" "$mq_local" trove-conductor || die "trove.conf / MariaDB database failed"
    echo "$CP_DB" >"$BOX_DIR/database"
    # cp_write_conf is for the conductor alone; the box keeps its database
    # and secure RPC and replaces the rest of [DEFAULT] below.
    python3 - "$BOX_DIR/trove.conf" <<'PY'
import sys, re
p = sys.argv[1]
text = open(p).read()
keep = [l for l in text.splitlines() if re.match(r"(connection|inst_rpc_key_encr_key) = ", l)]
open(p + ".keep", "w").write("\n".join(keep) + "\n")
PY
    local connection encr
    connection=$(grep '^connection = ' "$BOX_DIR/trove.conf.keep")
    encr=$(grep '^inst_rpc_key_encr_key = ' "$BOX_DIR/trove.conf.keep")
    rm -f "$BOX_DIR/trove.conf.keep"
    local net_id image_id
    net_id=$(box_standin_id network); image_id=$(box_standin_id image)
    (umask 077; cat >"$BOX_DIR/trove.conf" <<CONF
# trove.conf of the box: trove-api, trove-taskmanager, trove-conductor and
# trove-manage read it. Made by tests/box/box.sh; holds secrets (0600).
[DEFAULT]
transport_url = $mq_local
control_exchange = trove
# Not debug: trove logs every option value at debug, secrets included.
debug = false
log_dir = $BOX_DIR/logs
$encr
enable_secure_rpc_messaging = true
# The guest's config as the taskmanager injects it (see guest_config below).
guest_config = $BOX_DIR/trove-guestagent.conf
# The cloud: the stand-ins, found in Keystone's catalog of the caller.
os_region_name = RegionOne
nova_compute_service_type = compute
cinder_service_type = volumev3
neutron_service_type = network
glance_service_type = image
trove_volume_support = true
volume_time_out = 60
server_delete_time_out = 120
usage_timeout = 300
# How often the taskmanager looks at a building guest and a changing
# status (defaults 5 s and 3 s): the box measures how fast an instance
# gets ready, not how long Trove sleeps.
usage_sleep_time = 1
state_change_poll_time = 1
state_change_wait_time = 300
agent_call_high_timeout = 120
# A guest whose heartbeats stop shows as such after 30 s (default 90): the
# guests here report every 10 s (report_interval below; default 30).
agent_heartbeat_expiry = 30

[database]
$connection

[k2hdkc]
# The image the guests' agents run (the guest config below says the same).
docker_image = ${image%:*}
# A group with a cluster-name and no extdata-url: trove-api makes the
# cluster's K2HR3 objects with the tenant's token (tests/k2hr3-provisioning).
k2hr3_provision_url = http://$BOX_GATEWAY:$BOX_K2HR3_PORT
$(rearm_conf "$image")
CONF
    ) || die "writing trove.conf failed"
    # The guests' trove-guestagent.conf: what every guest of this cloud
    # gets (transport over the box network's gateway).
    (umask 077; cat >"$BOX_DIR/trove-guestagent.conf" <<CONF
[DEFAULT]
transport_url = $mq_guest
control_exchange = trove
report_interval = 10
backup_segment_max_size = $BOX_BACKUP_SEGMENT
$(if [ -n "${BOX_BACKUP_KEY:-}" ]; then echo "backup_aes_cbc_key = $BOX_BACKUP_KEY"; fi)
[k2hdkc]
docker_image = $(guest_docker_image "$image")
startup_wait = 60
k2hr3_poll_interval_ms = 1000
CONF
    ) || die "writing trove-guestagent.conf failed"
    : "$net_id" "$image_id"
}

rearm_conf() {  # IMAGE: the stand-in's lost-answer poll is 20 s (tests/cluster), the real one's ~70 s
    case $1 in
        k2hdkc-standin:*) printf '%s\n' "# The stand-in's merge thread polls 20 s for a lost answer (tests/cluster)." \
            "cluster_merge_rearm_after = 25" ;;
    esac
}

box_standin_id() {  # the stand-in's seeded network or image id
    python3 tests/standins/openstack/openstack_standin.py --host 127.0.0.1 --port "$BOX_OPENSTACK_PORT" \
        --state "$BOX_DIR/openstack" --hypervisor /bin/false --network-cidr "$BOX_CIDR" \
        --network-name "$BOX_NETWORK" --print-seeds | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]]["id"])' "$1"
}

# The operator's steps, exactly as docs/deploy.md
# step 5 gives them (the box is the proof they work).
box_register_datastore() {
    local image_id; image_id=$(box_standin_id image)
    CP_WORK=$BOX_DIR CP_CONF=$BOX_DIR/trove.conf
    cp_manage db_sync || die "trove-manage db_sync failed"
    cp_manage datastore_update k2hdkc "" || die "datastore_update failed"
    local v rules; rules=$("$PEER_PYTHON" -m trove_k2hdkc --rules)
    for v in $(box_versions); do
        cp_manage datastore_version_update k2hdkc "$v" k2hdkc "$image_id" "" 1 \
            --registry-ext trove_k2hdkc.guest.Manager || die "datastore_version_update $v failed"
        cp_manage db_load_datastore_config_parameters k2hdkc "$v" "$rules" ||
            die "db_load_datastore_config_parameters $v failed"
    done
    cp_manage datastore_update k2hdkc "$BOX_VERSION" || die "datastore_update (default version) failed"
}

# --- down ----------------------------------------------------------------------
down() {
    [ -d "$BOX_DIR" ] || { echo "no box in $BOX_DIR"; return 0; }
    step "stopping the box in $BOX_DIR"
    local d
    # Guests first (their agents talk to the rest), as a server delete would.
    for d in "$BOX_DIR"/openstack/guests/*/; do
        [ -f "$d/meta.json" ] || continue
        BOX_NETWORK=$BOX_NETWORK bash tests/box/guest-host down "$(basename "$d")" "$d" || true
    done
    stop_pid_file api; stop_pid_file taskmanager; stop_pid_file conductor
    stop_pid_file openstack; stop_pid_file k2hr3; stop_pid_file prometheus
    if [ -f tests/swift/swift.sh ]; then
        source tests/swift/swift.sh
        sw_stop "$BOX_DIR" || true
    fi
    if [ -f tests/box/keystone/keystone.sh ]; then
        source tests/box/keystone/keystone.sh
        ks_stop "$BOX_DIR" || true
    fi
    local c
    for c in $(timeout 30 docker ps -aq --filter "label=org.k2hdkc.box=$BOX_DIR"); do
        timeout 60 docker rm -f "$c" >/dev/null 2>&1 || true
    done
    timeout 60 docker network rm "$BOX_NETWORK" >/dev/null 2>&1 || true
    if [ -s "$BOX_DIR/database" ]; then
        source tests/controlplane/controlplane.sh 2>/dev/null || true
        PEER_PYTHON=${PEER_PYTHON:-$root/.venv/bin/python} cp_drop_database "$(cat "$BOX_DIR/database")" || true
    fi
    timeout 30 rabbitmqctl -q delete_vhost "$BOX_VHOST" >/dev/null 2>&1 || true
    timeout 30 rabbitmqctl -q delete_user "$BOX_VHOST" >/dev/null 2>&1 || true
    rm -rf "$BOX_DIR"
    step "the box is down"
}

status() {
    [ -e "$BOX_DIR/up" ] || { echo "no box in $BOX_DIR"; return 1; }
    local f name
    for f in "$BOX_DIR"/pids/*.pid; do
        name=$(basename "$f" .pid)
        if running "$name"; then echo "$name: running (pid $(pid_of "$name"))"; else echo "$name: NOT running"; fi
    done
}

# A Trove service crashes (SIGKILL to its whole process group: its
# workers too) and is started again as `up` started it; back once it
# consumes its queue again.
crash_restart() {
    local name=${1:-} queue pid i
    case $name in
        conductor) queue=trove-conductor ;;
        taskmanager) queue=taskmanager ;;
        *) die "restart: conductor or taskmanager, not '${name}'" ;;
    esac
    [ -e "$BOX_DIR/up" ] || die "no box up in $BOX_DIR"
    PEER_PYTHON=${PEER_PYTHON:-$root/.venv/bin/python}
    pid=$(pid_of "$name")
    if [ -n "$pid" ]; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    fi
    echo "=== $(date -u +%FT%TZ) killed (SIGKILL) and started again by box.sh restart" >>"$BOX_DIR/logs/$name.log"
    spawn "$name" "$(dirname "$PEER_PYTHON")/trove-$name" --config-file "$BOX_DIR/trove.conf"
    for i in $(seq 1 120); do
        running "$name" || { tail -n 30 "$BOX_DIR/logs/$name.log" >&2; die "$name exited"; }
        timeout 20 rabbitmqctl -q list_queues -p "$BOX_VHOST" --no-table-headers name consumers 2>/dev/null |
            awk -v q="$queue" '$1 == q && $2 > 0 { found = 1 } END { exit !found }' && return 0
        sleep 0.5
    done
    die "$name did not consume its queue $queue again in 60 s"
}

case ${1:-} in
    up) up ;;
    down) down ;;
    env) [ -s "$BOX_DIR/env" ] && cat "$BOX_DIR/env" || die "no box up in $BOX_DIR" ;;
    status) status ;;
    restart) crash_restart "${2:-}" ;;
    *) echo "usage: bash tests/box/box.sh up|down|env|status|restart conductor|taskmanager" >&2; exit 2 ;;
esac
