# The shell library the test scripts source: one way to say what happens,
# to give up with a cause, to measure, and to wait with a bound.
#
#   prog=NAME; source tests/lib.sh   (NAME prefixes die's message)
#   say TEXT          "==> TEXT"; with SAY_GAP=1, after a blank line (a
#                     script's major steps)
#   die TEXT          "NAME: TEXT" on stderr, exit 1 (fail is the same);
#                     TEXT stays in DIED_WITH for an EXIT trap
#   now               seconds since the epoch, with nanoseconds
#   since T0          seconds since T0, 1 decimal (SINCE_DIGITS=2: two)
#   bounded SECONDS CMD...
#                     runs CMD every 0.5 s until it succeeds; 1 when
#                     SECONDS passed first (a bound by the clock, not by a
#                     count of tries). (tests/box/cli.sh's wait_until waits
#                     for a command's output instead.)
# Sourced, never run.

say() {
    [ "${SAY_GAP:-0}" != 1 ] || printf '\n'
    printf '==> %s\n' "$*"
}
die() {
    echo "${prog:-${0##*/}}: $*" >&2
    # kept for an EXIT trap that prints logs: it repeats the cause last,
    # where a CI log's tail still shows it
    DIED_WITH="$*"
    exit 1
}
fail() { die "$@"; }
now() { date +%s.%N; }
since() {
    python3 -c 'import sys; print("%.*f" % (int(sys.argv[3]), float(sys.argv[2]) - float(sys.argv[1])))' \
        "$1" "$(now)" "${SINCE_DIGITS:-1}"
}
bounded() {
    local until=$((SECONDS + $1))
    shift
    while [ "$SECONDS" -lt "$until" ]; do
        "$@" && return 0
        sleep 0.5
    done
    return 1
}
