#!/usr/bin/env bash
# Exercises the k2hdkc STAND-IN image with Docker (host networking): two
# server nodes (chmpx + k2hdkc in chmpx's IPC and PID namespaces) and a
# slave on 127.0.0.1, then the control commands, signals, ini reloads,
# refusals and a k2hlinetool backup. Removes its containers and volumes;
# keeps the image.
# Usage: smoke-test.sh [IMAGE]   (default k2hdkc-standin:test; build it first)
# Ports used: 18020-18025, 18031.
set -euo pipefail

image=${1:-k2hdkc-standin:test}
run_id=standin-smoke-$$
work=$(mktemp -d)
containers=()
volumes=()
failures=0

cleanup() {
    for c in "${containers[@]}"; do docker rm -f -- "$c" >/dev/null 2>&1 || true; done
    for v in "${volumes[@]}"; do docker volume rm -f -- "$v" >/dev/null 2>&1 || true; done
    rm -rf -- "$work"
}
trap cleanup EXIT

say() { printf '%s\n' "$*"; }
ok() { say "ok   - $*"; }
bad() { say "FAIL - $*"; failures=$((failures + 1)); }

# One control command: connect, send, read to close.
ctl() {
    local port=$1 cmd=$2 reply
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf '%s\n' "$cmd" >&3
    reply=$(timeout 5 cat <&3) || true
    exec 3<&- 3>&-
    printf '%s' "$reply"
}

status_of() { { ctl "$1" SELFSTATUS 2>/dev/null || true; } | sed -n 's/^ *Server Status *= //p'; }

# wait_status PORT PATTERN SECONDS: waits for SELFSTATUS to match.
wait_status() {
    local port=$1 want=$2 limit=$3 start now
    start=$(date +%s.%N)
    while :; do
        if status_of "$port" | grep -qF -- "$want"; then
            now=$(date +%s.%N)
            printf '%.1f' "$(echo "$now - $start" | bc)"
            return 0
        fi
        now=$(date +%s.%N)
        if (($(echo "$now - $start > $limit" | bc))); then return 1; fi
        sleep 0.1
    done
}

expect_reply() {
    local port=$1 cmd=$2 want=$3 got
    got=$(ctl "$port" "$cmd" 2>&1 || true)
    if grep -qF -- "$want" <<<"$got"; then ok "$cmd on $port -> $(head -n1 <<<"$got")"; else bad "$cmd on $port: want '$want', got '$got'"; fi
}

expect_status() {
    local port=$1 want=$2 got
    got=$(status_of "$port")
    if grep -qF -- "$want" <<<"$got"; then ok "SELFSTATUS $port = $got"; else bad "SELFSTATUS $port: want '$want', got '$got'"; fi
}

# volume NAME: creates "$run_id-NAME" (named volumes start with the image's
# /var/lib/antpickax, owned by 1001).
volume() {
    volumes+=("$run_id-$1")
    docker volume create -- "$run_id-$1" >/dev/null
}

# start NAME CONFDIR VOLUME [docker options...] -- ARGV...
start() {
    local name="$run_id-$1" conf=$2 vol=$3
    shift 3
    local opts=()
    while (($#)) && [[ $1 != -- ]]; do opts+=("$1"); shift; done
    shift
    containers+=("$name")
    docker run -d --name "$name" --network host --user 1001:1001 "${opts[@]}" \
        -v "$conf:/etc/antpickax:ro" -v "$vol:/var/lib/antpickax" "$image" "$@" >/dev/null
}

exit_code() { docker inspect -f '{{.State.ExitCode}}' "$run_id-$1"; }
running() { [[ $(docker inspect -f '{{.State.Running}}' "$run_id-$1") == true ]]; }
vol_dir() { docker volume inspect -f '{{.Mountpoint}}' "$run_id-$1"; }

# Atomic replace: temporary file in the same directory, then rename.
write_ini() {
    local path=$1 tmp
    tmp=$(mktemp "$(dirname -- "$path")/.k2hdkc.ini.XXXXXX")
    cat >"$tmp"
    chmod 644 "$tmp"
    mv -f -- "$tmp" "$path"
}

servers_ini() {
    cat <<'EOF'
[GLOBAL]
FILEVERSION         = 1
GROUP               = smoke
MODE                = SERVER
DELIVERMODE         = hash
MAXCHMPX            = 8
REPLICA             = 1
MAXMQSERVER         = 8
MAXMQCLIENT         = 128
PORT                = 18020
CTLPORT             = 18021
MQACK               = no
AUTOMERGE           = on
DOMERGE             = on
[SVRNODE]
NAME                = 127.0.0.1
PORT                = 18020
CTLPORT             = 18021
[SVRNODE]
NAME                = 127.0.0.1
PORT                = 18022
CTLPORT             = 18023
EOF
    printf '%s' "${1:-}"
    cat <<'EOF'
[SLVNODE]
NAME                = [.]*
CTLPORT             = 18031
[K2HDKC]
K2HTYPE             = file
K2HFILE             = /var/lib/antpickax/k2hdkc/k2hdkc.k2h
K2HFULLMAP          = on
K2HINIT             = no
EOF
}

mkdir -p "$work/servers" "$work/slave" "$work/mqack" "$work/bigport"
chmod 755 "$work" "$work/servers" "$work/slave" "$work/mqack" "$work/bigport"
servers_ini | write_ini "$work/servers/k2hdkc.ini"
servers_ini | sed -e 's/^MODE  *= SERVER/MODE                = SLAVE/' -e '/^\[GLOBAL\]/,/^\[SVRNODE\]/s/^CTLPORT  *= 18021/CTLPORT             = 18031/' \
    -e '/^\[K2HDKC\]/,$d' | write_ini "$work/slave/k2hdkc.ini"
servers_ini | sed 's/^MQACK .*/MQACK = yes/' | write_ini "$work/mqack/k2hdkc.ini"
# chmpx keeps ports in a C short: a control port above 32767 cannot listen.
servers_ini | sed 's/18021/40021/g' | write_ini "$work/bigport/k2hdkc.ini"
printf 'set key1 value-1\nset key2 value two\nar put /var/lib/antpickax/k2hdkc/backup.ar\nexit\n' >"$work/servers/backup.cmd"
printf 'ar load /var/lib/antpickax/k2hdkc/backup.ar\nprint key1\nprint key2\nexit\n' >"$work/servers/restore.cmd"
chmod 644 "$work/servers/"*.cmd

say "# server 1: chmpx, then k2hdkc in its IPC and PID namespaces"
volume data1; v1=$run_id-data1
start s1-chmpx "$work/servers" "$v1" --ipc shareable --sysctl fs.mqueue.msg_max=256 -- chmpx -conf /etc/antpickax/k2hdkc.ini -ctlport 18021 -d msg
wait_status 18021 "SERVICE OUT" 5 >/dev/null || bad "chmpx 1 did not answer"
expect_status 18021 "0x10011(SAFE -> [SERVICE OUT][UP][n/a][Nothing][Suspend])"
start s1-k2hdkc "$work/servers" "$v1" --ipc "container:$run_id-s1-chmpx" --pid "container:$run_id-s1-chmpx" -- k2hdkc -conf /etc/antpickax/k2hdkc.ini -ctlport 18021 -d msg
if t=$(wait_status 18021 "[SERVICE IN][UP][n/a][Nothing][NoSuspend]" 10); then ok "server 1 serves ${t}s after k2hdkc started (AUTOMERGE)"; else bad "server 1 never served"; fi
expect_status 18021 "0x21(SAFE -> [SERVICE IN][UP][n/a][Nothing][NoSuspend])"

say "# server 2"
volume data2; v2=$run_id-data2
start s2-chmpx "$work/servers" "$v2" --ipc shareable --sysctl fs.mqueue.msg_max=256 -- chmpx -conf /etc/antpickax/k2hdkc.ini -ctlport 18023 -d msg
wait_status 18023 "SERVICE OUT" 5 >/dev/null || bad "chmpx 2 did not answer"
start s2-k2hdkc "$work/servers" "$v2" --ipc "container:$run_id-s2-chmpx" --pid "container:$run_id-s2-chmpx" -- k2hdkc -conf /etc/antpickax/k2hdkc.ini -ctlport 18023
if t=$(wait_status 18023 "[SERVICE IN][UP][n/a][Nothing][NoSuspend]" 10); then ok "server 2 serves ${t}s after k2hdkc started"; else bad "server 2 never served"; fi
sleep 1
all=$(ctl 18021 ALLSTATUS || true)
if [[ $(grep -c 'Server Status *= 0x21(SAFE -> \[SERVICE IN\]\[UP\]\[n/a\]\[Nothing\]\[NoSuspend\])' <<<"$all") == 2 ]]; then ok "ALLSTATUS on 18021 lists both servers serving"; else bad "ALLSTATUS: $all"; fi

say "# slave"
volume data3; v3=$run_id-data3
start slave "$work/slave" "$v3" --sysctl fs.mqueue.msg_max=256 -- chmpx -conf /etc/antpickax/k2hdkc.ini -ctlport 18031 -d msg
wait_status 18031 "SLAVE" 5 >/dev/null || bad "slave did not answer"
expect_status 18031 "0x1(SAFE -> [SLAVE][UP][n/a][Nothing][NoSuspend])"
expect_reply 18031 SERVICEIN "ERROR: The command can not be executed on the slave node."
expect_reply 18031 MERGE "SUCCEED: There no server on RING."

say "# control commands"
expect_reply 18021 version "Version 1.0.111"
expect_reply 18021 "frobnicate x" "Unknown command(frobnicate)"
expect_reply 18021 SERVICEIN "ERROR: Could not change status, because status is not allowed."
expect_reply 18021 "SERVICEOUT localhost:18023" "ERROR: There is no such as server."
expect_reply 18021 "SERVICEOUT 127.0.0.1:18023" "SUCCEED"
if t=$(wait_status 18023 "0x11(SAFE -> [SERVICE OUT][UP][n/a][Nothing][NoSuspend])" 5); then ok "server 2 serviced out (forwarded from server 1) in ${t}s"; else bad "server 2 not out: $(status_of 18023)"; fi
sleep 2
expect_status 18023 "[SERVICE OUT][UP][n/a][Nothing][NoSuspend]"
expect_reply 18023 ServiceIn "SUCCEED"
if t=$(wait_status 18023 "[SERVICE IN][UP][n/a][Nothing][NoSuspend]" 5); then ok "server 2 back in after SERVICEIN (${t}s)"; else bad "server 2 not back: $(status_of 18023)"; fi
sleep 1 # server 1 sees server 2's merge end at its next poll; before that MERGE is refused
for c in MERGE COMPMERGE ABORTMERGE; do expect_reply 18021 "$c" "SUCCEED"; done

say "# k2hdkc stops: chmpx stays in, suspended"
docker kill -s INT "$run_id-s1-k2hdkc" >/dev/null
docker wait "$run_id-s1-k2hdkc" >/dev/null
[[ $(exit_code s1-k2hdkc) == 0 ]] && ok "k2hdkc exited 0 on SIGINT" || bad "k2hdkc exit $(exit_code s1-k2hdkc)"
if wait_status 18021 "0x10021(SAFE -> [SERVICE IN][UP][n/a][Nothing][Suspend])" 3 >/dev/null; then ok "server 1 is [SERVICE IN][UP][n/a][Nothing][Suspend]"; else bad "server 1: $(status_of 18021)"; fi

say "# refusals"
start bad-nopid "$work/servers" "$v1" --ipc "container:$run_id-s1-chmpx" -- k2hdkc -conf /etc/antpickax/k2hdkc.ini -ctlport 18021
volume other; v4=$run_id-other
start bad-novol "$work/servers" "$v4" --ipc "container:$run_id-s1-chmpx" --pid "container:$run_id-s1-chmpx" -- k2hdkc -conf /etc/antpickax/k2hdkc.ini -ctlport 18021
start bad-mqack "$work/mqack" "$v1" --ipc "container:$run_id-s1-chmpx" --pid "container:$run_id-s1-chmpx" -- k2hdkc -conf /etc/antpickax/k2hdkc.ini -ctlport 18021
start bad-noself "$work/servers" "$v4" --sysctl fs.mqueue.msg_max=256 -- chmpx -conf /etc/antpickax/k2hdkc.ini -ctlport 18099
start bad-bigport "$work/bigport" "$v4" --sysctl fs.mqueue.msg_max=256 -- chmpx -conf /etc/antpickax/k2hdkc.ini -ctlport 40021 -d err
# As user 1001 without room for MAXMQSERVER + MAXMQCLIENT (host default 10).
start bad-mqsize "$work/servers" "$v4" -- chmpx -conf /etc/antpickax/k2hdkc.ini -ctlport 18021 -d err
# The data volume shared only at /var/lib/antpickax/k2hdkc: chmpx's shared
# memory in /var/lib/antpickax stays out of k2hdkc's reach.
containers+=("$run_id-bad-subdir")
docker run -d --name "$run_id-bad-subdir" --network host --user 1001:1001 --ipc "container:$run_id-s1-chmpx" --pid "container:$run_id-s1-chmpx" \
    -v "$work/servers:/etc/antpickax:ro" -v "$(vol_dir data1)/k2hdkc:/var/lib/antpickax/k2hdkc" "$image" \
    k2hdkc -conf /etc/antpickax/k2hdkc.ini -ctlport 18021 >/dev/null
for c in bad-nopid bad-novol bad-mqack bad-noself bad-bigport bad-mqsize bad-subdir; do
    docker wait "$run_id-$c" >/dev/null
    code=$(exit_code "$c")
    log=$(docker logs "$run_id-$c" 2>&1 | grep -m1 -E 'ERR\]|ERROR' | cut -c1-160 || true)
    [[ $code == 1 ]] && ok "$c exits 1: $log" || bad "$c exit $code"
done

say "# data volume and backup"
d1=$(vol_dir data1)
ls -ln "$d1" "$d1/k2hdkc" | sed 's/^/     /'
[[ -f $d1/smoke-18021.chmpx && -f $d1/k2hdkc/k2hdkc.k2h ]] && ok "shm file and K2HFILE are in the data volume" || bad "files missing in $d1"
docker exec "$run_id-s2-k2hdkc" k2hlinetool -f /var/lib/antpickax/k2hdkc/k2hdkc.k2h -run /etc/antpickax/backup.cmd && ok "k2hlinetool ar put" || bad "ar put"
out=$(docker exec "$run_id-s2-k2hdkc" k2hlinetool -f /var/lib/antpickax/k2hdkc/restored.k2h -run /etc/antpickax/restore.cmd) || bad "ar load"
[[ $out == *'"key1" => "value-1"'* && $out == *'"key2" => "value two"'* ]] && ok "ar load into a fresh file: $(tr '\n' ' ' <<<"$out")" || bad "restore printed: $out"

say "# ini reload (atomic rename) on the slave"
servers_ini $'[SVRNODE]\nNAME                = 127.0.0.1\nPORT                = 18024\nCTLPORT             = 18025\n' |
    sed -e 's/^MODE  *= SERVER/MODE = SLAVE/' -e '/^\[GLOBAL\]/,/^\[SVRNODE\]/s/^CTLPORT  *= 18021/CTLPORT = 18031/' -e '/^\[K2HDKC\]/,$d' | write_ini "$work/slave/k2hdkc.ini"
sleep 1.5
all=$(ctl 18031 ALLSTATUS || true)
if grep -q 'Control Port *= 18025' <<<"$all" && grep -q '0x10(SAFE -> \[SERVICE OUT\]\[DOWN\]' <<<"$all"; then ok "slave reloaded: 3 servers, the new one DOWN"; else bad "reload: $all"; fi
printf '[GLOBAL]\nGROUP = smoke\n' | write_ini "$work/slave/k2hdkc.ini"
if timeout 5 docker wait "$run_id-slave" >/dev/null; then
    [[ $(exit_code slave) == 1 ]] && ok "broken ini: slave chmpx exited 1 ($(docker logs "$run_id-slave" 2>&1 | grep -m1 'reloading' | cut -c1-110))" || bad "slave exit $(exit_code slave)"
else bad "slave still running after a broken ini"; fi

say "# signals"
docker kill -s TERM "$run_id-s1-chmpx" >/dev/null
sleep 1
running s1-chmpx && ok "chmpx ignores SIGTERM" || bad "chmpx died on SIGTERM"
start_t=$(date +%s.%N)
docker kill -s INT "$run_id-s1-chmpx" >/dev/null
docker wait "$run_id-s1-chmpx" >/dev/null
took=$(echo "$(date +%s.%N) - $start_t" | bc)
[[ $(exit_code s1-chmpx) == 0 ]] && ok "chmpx exited 0 on SIGINT in $(printf '%.2f' "$took")s" || bad "chmpx exit $(exit_code s1-chmpx)"
[[ ! -e $d1/smoke-18021.chmpx ]] && ok "clean exit removed the shm file" || bad "shm file left"
sleep 1.5
all=$(ctl 18023 ALLSTATUS || true)
# AUTOMERGE on and server 2 now alone: like the real chmpx (compare-real.sh
# F01) it takes server 1 out by itself.
grep -q '0x10(SAFE -> \[SERVICE OUT\]\[DOWN\]' <<<"$all" && ok "server 2 alone (AUTOMERGE) sees server 1 as [SERVICE OUT][DOWN]" || bad "server 2 ALLSTATUS: $all"
expect_reply 18023 "SERVICEOUT 127.0.0.1:18021" "SUCCEED: Already server has been SERVICEOUT."
ctl 18023 MERGE >/dev/null || true
ctl 18023 COMPMERGE >/dev/null || true
grep -q '0x10(SAFE -> \[SERVICE OUT\]\[DOWN\]' <<<"$(ctl 18023 ALLSTATUS || true)" && ok "still out after MERGE + COMPMERGE" || bad "not out"
docker kill -s HUP "$run_id-s2-chmpx" >/dev/null
timeout 5 docker wait "$run_id-s2-chmpx" >/dev/null && [[ $(exit_code s2-chmpx) == 0 ]] && ok "chmpx exited 0 on SIGHUP" || bad "SIGHUP"
timeout 15 docker wait "$run_id-s2-k2hdkc" >/dev/null && ok "k2hdkc 2 ended with its chmpx's PID namespace (exit $(exit_code s2-k2hdkc))" || bad "k2hdkc 2 still running"

say "# logs of server 1 chmpx"
docker logs "$run_id-s1-chmpx" 2>&1 | sed 's/^/     /' | grep -v '^ *$' | tail -n 12

if ((failures)); then say "$failures FAILED"; exit 1; fi
say "all passed"
