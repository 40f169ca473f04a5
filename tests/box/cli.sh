# Sourced by the box's drivers (tests/cluster): the real `openstack` CLI on
# a box that is up, and waits that poll trove-api directly with the CLI's
# token (a CLI run costs about 2 s of imports, which would blur timings).
#
#   source tests/box/cli.sh; box_cli_init [admin]   as demo (or admin)
#   os database cluster list        the CLI, bounded
#   api_get clusters/ID             trove-api's JSON, or "gone" / "HTTP nnn"
#   wait_until "cluster_task ID" NONE 300   until a command prints WANT (a glob)
#   k2hr3_hosts                     the addresses registered in the K2HR3 role
#   k2hr3_slaves                    the addresses registered in its slave role

source tests/lib.sh

box_cli_init() {  # [TENANT]: the CLI and the API calls as demo (default) or admin
    # shellcheck disable=SC1090
    source "$BOX_DIR/${1:-demo}-openrc"
    PEER_BIN=$(cd .venv/bin && pwd)
    k2hr3=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$BOX_DIR/k2hr3.json")
    extdata=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["extdata_url"])' "$BOX_DIR/k2hr3.json")
    slave_extdata=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["slave_extdata_url"])' "$BOX_DIR/k2hr3.json")
    # The token lives in a 0600 file: api_get runs in command
    # substitutions, and a token it issues again must reach later calls.
    token_file=$BOX_DIR/cli-token
    token_issue
    api="http://127.0.0.1:${BOX_TROVE_PORT:-8779}/v1.0/$(os token issue -f value -c project_id)"
    net_id=$(os network show k2hdkc-box -f value -c id 2>/dev/null || true)
    [ -n "$net_id" ] || { echo "the network k2hdkc-box is not there (openstack network show)" >&2; return 1; }
}

os() { timeout 180 "$PEER_BIN/openstack" "$@"; }

k2hr3_fault() {  # MODE: the K2HR3 stand-in's fault mode (ok, down; after box_cli_init)
    curl -fsS --max-time 10 -X POST -H 'Content-Type: application/json' \
        -d "{\"mode\": \"$1\"}" "$k2hr3/_standin/fault" >/dev/null
}

token_issue() {  # a new Keystone token into $token and $token_file
    token=$(os token issue -f value -c id) || return 1
    (umask 077 && printf '%s\n' "$token" >"$token_file")
}

api_get() {  # PATH under the tenant's API: the JSON, or "gone" (404), or "HTTP nnn"
    # 30 s: showing an instance whose guest is dead waits for its
    # get_filesystem_stats call (Trove: agent_call_low_timeout, 15 s).
    local out try
    for try in 1 2; do
        [ ! -s "${token_file:-}" ] || token=$(<"$token_file")
        # The token through curl's stdin config, not its argv (ps shows argv).
        out=$(curl -s --max-time 30 -K - -w '\n%{http_code}' "$api/$1" <<<"header = \"X-Auth-Token: $token\"") ||
            { echo "?"; return; }
        # Keystone's tokens last an hour: a run at volume outlives one.
        [ "${out##*$'\n'}" = 401 ] && [ "$try" = 1 ] || break
        token_issue || break
    done
    case ${out##*$'\n'} in
        404) echo gone ;;
        200) printf '%s\n' "${out%$'\n'*}" ;;
        *) echo "HTTP ${out##*$'\n'}" ;;
    esac
}

instance_state() {  # INSTANCE: "status/operating_status", or "gone"
    local j
    j=$(api_get "instances/$1")
    case $j in \{*) python3 -c 'import json,sys; i=json.loads(sys.argv[1])["instance"]; print("%s/%s" % (i["status"], i.get("operating_status", "")))' "$j" ;; *) echo "$j" ;; esac
}

cluster_task() {  # CLUSTER: its task name (NONE when idle), or "gone"
    local j
    j=$(api_get "clusters/$1")
    case $j in \{*) python3 -c 'import json,sys; print(json.loads(sys.argv[1])["cluster"]["task"]["name"])' "$j" ;; *) echo "$j" ;; esac
}

cluster_members() {  # CLUSTER: "id status/operating_status" per member
    local j id
    j=$(api_get "clusters/$1")
    case $j in \{*) ;; *) return 0 ;; esac
    for id in $(python3 -c 'import json,sys; print(" ".join(i["id"] for i in json.loads(sys.argv[1])["cluster"]["instances"]))' "$j"); do
        echo "$id $(instance_state "$id")"
    done
}

wait_until() {  # COMMAND WANT SECONDS: until COMMAND prints WANT (a glob); prints the last output
    local cmd=$1 want=$2 secs=$3 out="" end
    end=$(( $(date +%s) + secs ))
    while [ "$(date +%s)" -lt "$end" ]; do
        out=$(eval "$cmd")
        # shellcheck disable=SC2053
        if [[ $out == $want ]]; then printf '%s\n' "$out"; return 0; fi
        sleep 0.5
    done
    printf '%s (after %s s)\n' "$out" "$secs"
    return 1
}

k2hr3_slaves() {  # the addresses registered in the cluster's slave role now
    curl -s --max-time 10 "$k2hr3/_standin/calls" | python3 -c '
import json, sys
print(" ".join(sorted({h["ip"] for h in json.load(sys.stdin)["slaves"]})))'
}
k2hr3_hosts() {  # the addresses registered in the K2HR3 role now
    curl -s --max-time 10 "$k2hr3/_standin/calls" | python3 -c '
import json, sys
print(" ".join(sorted({h["ip"] for h in json.load(sys.stdin)["hosts"]})))'
}
