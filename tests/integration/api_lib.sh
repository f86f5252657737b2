# shellcheck shell=bash
#
# api_lib.sh: helpers for the REST API tests (sourced after lib.sh and
# daemon_lib.sh, never run). The daemon listens on an ephemeral port
# (--listen 127.0.0.1:0) and writes it to a file (--port-file); every curl
# call is bounded by `timeout`.

command -v curl >/dev/null || fail "curl is needed (apt-get install curl)"
command -v jq >/dev/null || fail "jq is needed (apt-get install jq)"

API=""
HTTP_STATUS=""
RESP=""
TOKEN=""

# start_api_daemon CONFIG [args...]: start_daemon on an ephemeral port; sets API.
start_api_daemon() {
    local cfg=$1 pf
    shift
    pf="$WORK/port.$((DAEMON_N + 1))"
    rm -f "$pf"
    start_daemon "$cfg" --listen 127.0.0.1:0 --port-file "$pf" "$@"
    local deadline=$((SECONDS + 10))
    until [ -s "$pf" ]; do
        [ $SECONDS -lt $deadline ] || fail "no port file $pf"
        sleep 0.05
    done
    API="http://127.0.0.1:$(tr -d '\n' <"$pf")"
    log "API at $API"
}

# api METHOD PATH [curl args...]: one request; sets HTTP_STATUS and RESP (the body).
api() {
    local m=$1 p=$2
    shift 2
    HTTP_STATUS=$(timeout 60 curl -sS -o "$WORK/resp" -D "$WORK/resp.headers" -w '%{http_code}' \
        -X "$m" "$@" "$API$p") || fail "curl $m $p failed"
    RESP=$(cat "$WORK/resp")
}

# apit METHOD PATH [curl args...]: api with the bearer token.
apit() {
    local m=$1 p=$2
    shift 2
    api "$m" "$p" -H "Authorization: Bearer $TOKEN" "$@"
}

# apij METHOD PATH JSON: authenticated JSON request.
apij() {
    apit "$1" "$2" -H 'Content-Type: application/json' --data-binary "$3"
}

expect_status() {
    [ "$HTTP_STATUS" = "$1" ] || fail "expected HTTP $1, got $HTTP_STATUS${2:+ ($2)}: $RESP"
}

# expect_error STATUS CODE [FIELD]: a JSON error object with that status, code and field.
expect_error() {
    expect_status "$1" "${4:-}"
    [ "$(jq -r '.error.code' <<<"$RESP")" = "$2" ] ||
        fail "expected error code $2, got: $RESP"
    [ -n "$(jq -r '.error.message // empty' <<<"$RESP")" ] || fail "error without a message: $RESP"
    if [ -n "${3:-}" ]; then
        [ "$(jq -r '.error.field' <<<"$RESP")" = "$3" ] ||
            fail "expected error field $3, got: $RESP"
    fi
    grep -qi '^content-type: application/json' "$WORK/resp.headers" ||
        fail "error answer is not application/json: $(cat "$WORK/resp.headers")"
}

# jqr FILTER: jq -r on the last body.
jqr() {
    jq -r "$1" <<<"$RESP"
}

# expect_jq FILTER: jq -e on the last body.
expect_jq() {
    jq -e "$1" >/dev/null <<<"$RESP" || fail "body does not satisfy $1: $RESP"
}

# wait_api PATH FILTER [TIMEOUT_S]: polls GET PATH until jq -e FILTER holds.
wait_api() {
    local p=$1 f=$2 tmo=${3:-60}
    local deadline=$((SECONDS + tmo))
    while :; do
        api GET "$p" -H "Authorization: Bearer $TOKEN"
        if [ "$HTTP_STATUS" = 200 ] && jq -e "$f" >/dev/null 2>&1 <<<"$RESP"; then
            return 0
        fi
        if [ -n "$DAEMON_PID" ] && ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            fail "espstationd died while waiting for $p to satisfy $f"
        fi
        [ $SECONDS -lt $deadline ] || fail "timeout (${tmo}s) waiting for $p to satisfy $f (last: $RESP)"
        sleep 0.2
    done
}
