# shellcheck shell=bash
# chmpx's control port in the packaging tests' plain containers (the
# image's nc, port 8021). Sourced by merge-answer and merge-requests, after
# they define die().

ctl() {  # SERVER COMMAND: chmpx's answer on its control port
    printf '%s\n' "$2" | timeout 10 docker exec -i "$1" nc -N -w 5 127.0.0.1 8021 2>/dev/null || true
}
status() {  # SERVER: e.g. "[SERVICE IN][UP][n/a][Pending][NoSuspend]"
    ctl "$1" SELFSTATUS | sed -n 's/.*Server Status *= *[^(]*(SAFE -> \(.*\)).*/\1/p' | head -n 1
}
wait_status() {  # SERVER GLOB SECONDS
    local end=$((SECONDS + $3)) st=
    while [ "$SECONDS" -lt "$end" ]; do
        st=$(status "$1")
        # shellcheck disable=SC2053
        [[ $st == $2 ]] && return 0
        sleep 0.2
    done
    echo "$1 is $st, not $2, after $3 s" >&2
    return 1
}
views() {  # SERVERS...: "VIEWER SERVER" for each server a viewer shows [Done] or [Doing]
    local v
    for v in "$@"; do
        ctl "$v" ALLSTATUS | awk -v viewer="$v" '
            /Server Name/ { name = $NF }
            /Server Status/ && /\[(Done|Doing)\]/ { print viewer, name }'
    done
}
complete() {  # WHAT SERVERS...: COMPMERGE until every view is [Nothing], 20 s
    # A server's [Done], and its end of merge, reach its peers by status
    # notices: for a moment COMPMERGE may be refused, and a notice lost
    # leaves a peer showing it [Done] for good (and refusing SERVICEOUT as
    # "operating"). As the agent does, COMPMERGE goes every 2 s to a
    # server still [Done] and to each viewer that still shows one so; it
    # announces its status again.
    local what=$1 end=$((SECONDS + 20)) s v left stale
    shift
    while :; do
        left=()
        for s in "$@"; do
            [[ $(status "$s") == *'[Nothing]'* ]] || left+=("$s")
        done
        stale=
        [ "${#left[@]}" -gt 0 ] || stale=$(views "$@")
        [ "${#left[@]}" -gt 0 ] || [ -n "$stale" ] || return 0
        [ "$SECONDS" -lt "$end" ] ||
            die "$what: ${left[*]:-no server} did not complete; views not settled (viewer server): ${stale:-none}; ${left[0]:-$1} answers COMPMERGE with: $(ctl "${left[0]:-$1}" COMPMERGE | head -n 1)"
        for s in "${left[@]}"; do
            [[ $(status "$s") != *'[Done]'* ]] || ctl "$s" COMPMERGE >/dev/null
        done
        while read -r v s; do
            [ -n "$v" ] || continue
            ctl "$v" COMPMERGE >/dev/null
            [[ " $* " != *" $s "* ]] || ctl "$s" COMPMERGE >/dev/null
        done <<<"$stale"
        sleep 2
    done
}
until_taken() {  # SERVER COMMAND WHAT: COMMAND until chmpx answers SUCCEED, 20 s
    # A peer's end of merge reaches this server by a status notice: for a
    # moment after a merge it still refuses a status change as
    # "operating", and the agent asks again too.
    local end=$((SECONDS + 20)) r
    while :; do
        r=$(ctl "$1" "$2")
        grep -q SUCCEED <<<"$r" && return 0
        [ "$SECONDS" -lt "$end" ] ||
            die "$3: $2 refused: ${r:-no answer}; its view (viewer server, [Done] or [Doing]): $(views "$1" | tr '\n' ' ')"
        sleep 0.5
    done
}
