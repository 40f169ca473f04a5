# Sourced by the box's drivers (tests/quickstart, tests/cluster): questions
# to the box's Prometheus (tests/box/box.sh prometheus_up) through its HTTP
# API, as an operator's dashboards ask them.
#
#   prom_value QUERY     the first result's value now, or nothing
#   prom_wait QUERY WANT SECONDS   until prom_value prints WANT (a glob)

prom=http://127.0.0.1:${BOX_PROMETHEUS_PORT:-9090}

prom_value() {
    curl -sf --max-time 5 "$prom/api/v1/query" --data-urlencode "query=$1" |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null || true
}

prom_wait() {  # bounded; prints the last value either way
    local q=$1 want=$2 end out=""
    end=$(( $(date +%s) + $3 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        out=$(prom_value "$q")
        # shellcheck disable=SC2053
        if [[ $out == $want ]]; then printf '%s\n' "$out"; return 0; fi
        sleep 1
    done
    printf '%s\n' "${out:-no result}"
    return 1
}
