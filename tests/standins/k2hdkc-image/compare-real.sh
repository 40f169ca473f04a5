#!/usr/bin/env bash
# Differential check of the chmpx STAND-IN against the REAL chmpx, for local
# use only (CI cannot build the real image; build it with
# /work/shared/tools/k2hdkc-real/build.sh).
#
# For each image it starts, in Docker with host networking (user 1001,
# fs.mqueue.msg_max set, k2hdkc in chmpx's IPC and PID namespaces), a ring
# in the K2HDKC DBaaS shape (CHMPXIDTYPE = CUSTOM, CUSTOM_ID_SEED per node,
# AUTOMERGE on, MQACK no, MAXMQSERVER 8 / MAXMQCLIENT 128): two servers and
# a slave. It sends the same scripted control commands to both (bad
# SERVICEOUT shapes, SERVICEIN when in, SERVICEOUT of self and twice, the
# merge commands, unknown commands, ALLSTATUS after each change), then the
# SERVICEOUT shapes on one-node rings of CHMPXIDTYPE NAME, CUK and
# CTLENDPOINTS, and prints the replies side by side ("=" same, "#" differs).
#
# Known: the real chmpx 1.0.111 refuses to start the CTLENDPOINTS ini here
# (nodes without CTLENDPOINTS keys), so the G-ceps lines show an empty real
# reply.
#
# Usage: compare-real.sh [REAL_IMAGE] [STANDIN_IMAGE]
#        (defaults k2hdkc-real:1.0.17, k2hdkc-standin:test)
# Ports used: 18220-18225, 18239. Exit status 0 even when replies differ.
set -euo pipefail

real=${1:-k2hdkc-real:1.0.17}
standin=${2:-k2hdkc-standin:test}
run_id=chmpx-compare-$$
work=$(mktemp -d)
containers=()
volumes=()
GROUP=cmpring
# chmpx names this host by its primary address and looks every peer up
# (reverse DNS, per connection): use that address as the node name and give
# it a hosts entry, or the real chmpx stalls on DNS.
ip=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
ip=${ip:-$(hostname -I | awk '{ print $1 }')}
hostopt=(--add-host "$(hostname):$ip")

cleanup() {
    for c in "${containers[@]}"; do docker rm -f -- "$c" >/dev/null 2>&1 || true; done
    for v in "${volumes[@]}"; do docker volume rm -f -- "$v" >/dev/null 2>&1 || true; done
    rm -rf -- "$work"
}
trap cleanup EXIT

# One control command: connect, send, read to EOF (chmpx closes).
ctl() {
    local port=$1 cmd=$2
    (
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
        printf '%s\n' "$cmd" >&3
        timeout 10 cat <&3 || true
    ) 2>/dev/null || true
}

status_of() { ctl "$1" SELFSTATUS | sed -n 's/^ *Server Status *= //p'; }

wait_for() { # PORT PATTERN SECONDS
    local i
    for ((i = 0; i < $3 * 5; i++)); do
        status_of "$1" | grep -qF -- "$2" && return 0
        sleep 0.2
    done
    return 1
}

out=/dev/null
note() { printf '%s\t%s\n' "$1" "$2" >>"$out"; }

# send STEP PORT COMMAND: records the reply (status blocks: their status
# lines; other replies: all lines joined by " / ").
send() {
    local step=$1 port=$2 cmd=$3 reply
    reply=$(ctl "$port" "$cmd")
    if grep -q 'Server Status' <<<"$reply"; then
        note "$step $cmd@$port" "$(awk '/^No\./ { n = $0 } /Server Status/ { sub(/^ *Server Status *= */, ""); printf "%s%s ", (n ? n ":" : ""), $0 }' <<<"$reply")"
    else
        note "$step $cmd@$port" "$(printf '%s' "$reply" | awk 'NF { printf "%s%s", (n++ ? " | " : ""), $0 }')"
    fi
}

allstatus() { send "$1" "$2" ALLSTATUS; }

volume() {
    volumes+=("$run_id-$1")
    docker volume rm -f -- "$run_id-$1" >/dev/null 2>&1 || true
    docker volume create -- "$run_id-$1" >/dev/null
}

# start IMAGE NAME CONFDIR VOLUME [docker options...] -- ARGV...
start() {
    local image=$1 name="$run_id-$2" conf=$3 vol=$4
    shift 4
    local opts=()
    while (($#)) && [[ $1 != -- ]]; do opts+=("$1"); shift; done
    shift
    containers+=("$name")
    docker rm -f -- "$name" >/dev/null 2>&1 || true
    docker run -d --name "$name" --network host "${hostopt[@]}" --user 1001:1001 "${opts[@]}" \
        -v "$conf:/etc/antpickax:ro" -v "$vol:/var/lib/antpickax" "$image" "$@" >/dev/null
}

stop() { docker kill -s INT "$run_id-$1" >/dev/null 2>&1 || true; docker wait "$run_id-$1" >/dev/null 2>&1 || true; docker rm -f -- "$run_id-$1" >/dev/null 2>&1 || true; }

write_ini() { # PATH (text on stdin), atomically
    local tmp
    tmp=$(mktemp "$(dirname -- "$1")/.ini.XXXXXX")
    cat >"$tmp"
    chmod 644 "$tmp"
    mv -f -- "$tmp" "$1"
}

# ini IDTYPE MODE SELFCTLPORT NSERVERS
ini() {
    local idtype=$1 mode=$2 self=$3 n=$4 i
    cat <<EOF
[GLOBAL]
FILEVERSION         = 1
GROUP               = $GROUP
MODE                = $mode
DELIVERMODE         = hash
MAXCHMPX            = 8
REPLICA             = 1
MAXMQSERVER         = 8
MAXMQCLIENT         = 128
PORT                = 18220
CTLPORT             = $self
SELFCTLPORT         = $self
MQACK               = no
AUTOMERGE           = on
DOMERGE             = on
K2HFULLMAP          = on
CHMPXIDTYPE         = $idtype
EOF
    for ((i = 1; i <= n; i++)); do
        printf '[SVRNODE]\nNAME                = %s\nPORT                = %d\nCTLPORT             = %d\nCUSTOM_ID_SEED      = seed-%d\n' \
            "$ip" $((18218 + 2 * i)) $((18219 + 2 * i)) "$i"
        # A CUK on a node must match the process's own (-cuk): CUK rings only.
        [[ $idtype != CUK ]] || printf 'CUK                 = cuk-%d\n' "$i"
    done
    printf '[SLVNODE]\nNAME                = [.]*\nCTLPORT             = 18239\nCUSTOM_ID_SEED      = seed-slave\n'
    [[ $idtype != CUK ]] || printf 'CUK                 = cuk-slave\n'
    if [[ $mode == SERVER ]]; then
        printf '[K2HDKC]\nK2HTYPE             = file\nK2HFILE             = /var/lib/antpickax/k2hdkc.k2h\nK2HFULLMAP          = on\nK2HINIT             = no\n'
    fi
}

chmpx_c() { # IMAGE NAME CONFDIR VOLUME CTLPORT [extra chmpx args]
    local image=$1 name=$2 conf=$3 vol=$4 port=$5
    shift 5
    start "$image" "$name" "$conf" "$vol" --ipc shareable --sysctl fs.mqueue.msg_max=256 -- \
        chmpx -conf /etc/antpickax/k2hdkc.ini -ctlport "$port" "$@"
}
k2hdkc_c() { # IMAGE NAME CONFDIR VOLUME CTLPORT CHMPXNAME
    start "$1" "$2" "$3" "$4" --ipc "container:$run_id-$6" --pid "container:$run_id-$6" -- \
        k2hdkc -conf /etc/antpickax/k2hdkc.ini -ctlport "$5"
}

# The scripted session for one image; records into $out.
session() {
    local image=$1 dir=$work/$2
    mkdir -p "$dir/custom" "$dir/slave" "$dir/name" "$dir/cuk" "$dir/ceps"
    chmod 755 "$dir" "$dir"/*
    ini CUSTOM SERVER 18221 2 | write_ini "$dir/custom/k2hdkc.ini"
    ini CUSTOM SLAVE 18239 2 | write_ini "$dir/slave/k2hdkc.ini"
    ini NAME SERVER 18221 1 | write_ini "$dir/name/k2hdkc.ini"
    ini CUK SERVER 18221 1 | write_ini "$dir/cuk/k2hdkc.ini"
    ini CTLENDPOINTS SERVER 18221 1 | write_ini "$dir/ceps/k2hdkc.ini"

    # --- a CUSTOM ring: two servers and a slave -------------------------------
    volume "$2-d1"; volume "$2-d2"; volume "$2-d3"
    chmpx_c "$image" s1 "$dir/custom" "$run_id-$2-d1" 18221
    wait_for 18221 "SERVICE" 10 || echo "  ($2: chmpx 1 does not answer)" >&2
    k2hdkc_c "$image" k1 "$dir/custom" "$run_id-$2-d1" 18221 s1
    wait_for 18221 "[SERVICE IN][UP][n/a][Nothing][NoSuspend]" 15 || echo "  ($2: server 1 not in)" >&2
    chmpx_c "$image" s2 "$dir/custom" "$run_id-$2-d2" 18223
    wait_for 18223 "SERVICE" 10 || echo "  ($2: chmpx 2 does not answer)" >&2
    k2hdkc_c "$image" k2 "$dir/custom" "$run_id-$2-d2" 18223 s2
    wait_for 18223 "[SERVICE IN][UP][n/a][Nothing][NoSuspend]" 15 || echo "  ($2: server 2 not in)" >&2
    start "$image" sl "$dir/slave" "$run_id-$2-d3" --sysctl fs.mqueue.msg_max=256 -- \
        chmpx -conf /etc/antpickax/k2hdkc.ini -ctlport 18239
    wait_for 18239 "SLAVE" 10 || echo "  ($2: slave does not answer)" >&2
    sleep 3
    allstatus A01 18221
    send A02 18239 SELFSTATUS
    send A03 18221 "frobnicate x"
    send A04 18221 "servicein"
    send A05 18221 "SERVICEIN extra words"
    send A06 18221 "SERVICEOUT"
    send A07 18221 "SERVICEOUT $ip:18221"
    send A08 18221 "SERVICEOUT $ip:18221:seed-9"
    send A09 18221 "SERVICEOUT $ip:18221:seed-1:x"
    send A10 18221 "SERVICEOUT $ip:18221:"
    send A11 18221 "SERVICEOUT :18221:seed-1"
    send A12 18221 "SERVICEOUT $ip:-1:seed-1"
    send A13 18221 "SERVICEOUT $ip::seed-9"
    send A14 18221 "SERVICEOUT $ip:18299:seed-2"
    send A15 18221 "UPDATESTATUS"
    send A16 18221 "SUSPENDMERGE"
    send A17 18221 "NOSUSPENDMERGE"
    send A18 18221 "MERGE"
    sleep 2
    send A19 18221 "COMPMERGE"
    sleep 1
    send A20 18221 "ABORTMERGE"
    sleep 2
    allstatus A21 18221
    for c in SERVICEIN "SERVICEOUT $ip:18299:seed-9" MERGE COMPMERGE ABORTMERGE SUSPENDMERGE NOSUSPENDMERGE UPDATESTATUS "frob"; do
        send B "18239" "$c"
        sleep 0.5
    done
    allstatus B99 18239

    # SERVICEOUT of server 2 through server 1 (forwarded), then again.
    send C01 18221 "SERVICEOUT $ip:18223:seed-2"
    sleep 4
    allstatus C02 18221
    send C03 18221 "SERVICEOUT $ip:18223:seed-2"
    send C04 18223 "SERVICEOUT $ip:18223:seed-2"
    send C05 18223 "SERVICEIN"
    sleep 4
    allstatus C06 18221
    send C07 18223 "SERVICEIN"

    # SUSPENDMERGE, then SERVICEOUT of self: the merge is by hand.
    send D01 18221 "SUSPENDMERGE"
    send D02 18221 "SERVICEOUT $ip:18221:seed-1"
    sleep 2
    allstatus D03 18221
    send D04 18221 "SERVICEOUT $ip:18221:seed-1"
    send D05 18221 "SERVICEIN"
    sleep 2
    allstatus D06 18221
    send D07 18221 "MERGE"
    send D08 18221 "MERGE"
    send D09 18221 "COMPMERGE"
    send D10 18221 "SERVICEIN"
    sleep 3
    allstatus D11 18221
    send D12 18221 "COMPMERGE"
    sleep 2
    allstatus D13 18221
    send D14 18221 "NOSUSPENDMERGE"
    sleep 3
    allstatus D15 18221

    # k2hdkc of server 1 stops: suspended.
    stop k1
    sleep 3
    allstatus E01 18221
    send E02 18221 "SERVICEIN"
    send E03 18221 "MERGE"
    send E04 18221 "COMPMERGE"
    send E05 18221 "ABORTMERGE"
    sleep 1
    allstatus E06 18221

    # server 2 stops without SERVICEOUT: server 1 is alone.
    stop k2
    stop s2
    sleep 5
    allstatus F01 18221
    send F02 18221 "SERVICEOUT $ip:18223:seed-2"
    sleep 1
    allstatus F03 18221
    send F04 18221 "SERVICEOUT $ip:18223:seed-2"
    send F05 18221 "MERGE"
    sleep 1
    send F06 18221 "COMPMERGE"
    sleep 1
    allstatus F07 18221
    send F08 18221 "SERVICEOUT $ip:18221:seed-1"
    sleep 2
    allstatus F09 18221
    send F10 18221 "SERVICEOUT $ip:18221:seed-1"
    send F11 18221 ""
    send F12 18221 " SELFSTATUS"
    stop sl
    stop s1

    # --- one-node rings: SERVICEOUT shapes by CHMPXIDTYPE --------------------
    local t
    for t in name cuk ceps; do
        volume "$2-$t"
        if [[ $t == cuk ]]; then
            chmpx_c "$image" "o-$t" "$dir/$t" "$run_id-$2-$t" 18221 -cuk cuk-1
        else
            chmpx_c "$image" "o-$t" "$dir/$t" "$run_id-$2-$t" 18221
        fi
        wait_for 18221 "SERVICE" 10 || echo "  ($2: $t chmpx does not answer)" >&2
        for c in "$ip" "$ip:18221" "$ip:18221:" "$ip:18221:cuk-1" "$ip:18221:x:y" \
            "$ip:18221:$ip:472d" "$ip:18299" "localhost:18221" "$ip:abc" "$ip:18221abc" \
            ":18221" "$ip:18221:cuk-9" "x:1:cuk-1"; do
            send "G-$t" 18221 "SERVICEOUT $c"
        done
        stop "o-$t"
    done
}

for pair in "real:$real" "standin:$standin"; do
    label=${pair%%:*}
    image=${pair#*:}
    docker image inspect -- "$image" >/dev/null 2>&1 || { echo "compare-real.sh: no image $image" >&2; exit 1; }
    echo "# session on $label ($image)" >&2
    out=$work/$label.txt
    : >"$out"
    session "$image" "$label"
done

# Side by side.
same=0 diffs=0
while IFS=$'\t' read -r step a && IFS=$'\t' read -r _ b <&3; do
    if [[ $a == "$b" ]]; then
        same=$((same + 1))
        printf '= %s\n    %s\n' "$step" "$a"
    else
        diffs=$((diffs + 1))
        printf '# %s\n    real:    %s\n    standin: %s\n' "$step" "$a" "$b"
    fi
done <"$work/real.txt" 3<"$work/standin.txt"
echo "compare-real.sh: $same same, $diffs different"
