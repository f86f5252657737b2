#!/usr/bin/env bash
# test_api_sse: GET /api/v1/events over real HTTP (curl -N): a client sees the
# journal events of a flash (ids increasing, event name = kind, data = the
# event object) and the non-persisted slot.progress; after a disconnect,
# reconnecting with Last-Event-ID delivers exactly the missed events (compared
# with the journal in the database: none lost, none twice, in order); 20
# clients at once all get every event; ?last_event_id=0 replays the journal;
# heartbeats (": ping") arrive on an idle stream.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

FW=$WORK/fw
mkdir -p "$FW"
make_image_esp esp32 60000 "$FW/app.bin" 4
cat >"$FW/manifest.json" <<JSON
{"name": "demo", "version": "1.0.0", "chip": "esp32",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
import_fw "$FW"
start_sim esp32 --link-speed 1 --mac 24:6f:28:00:00:21
S1=$SIM_DIR
TOKEN=sse-token
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"ports": [{"uri": "$S1/tty", "label": "A1"}], "api": {"token": "$TOKEN"},
 "profiles": {"line": {"firmware": {"esp32": "demo@1.0.0"}, "baud": 460800, "retries": 0}}}
JSON

# sse_start NAME [curl args...]: a background event-stream client writing $WORK/NAME.sse.
declare -A SSE_PIDS
sse_start() {
    local name=$1
    shift
    timeout 300 curl -sS -N "$@" "$API/api/v1/events" >"$WORK/$name.sse" 2>"$WORK/$name.err" &
    SSE_PIDS[$name]=$!
}
sse_stop() {
    kill "${SSE_PIDS[$1]}" 2>/dev/null || true
    wait "${SSE_PIDS[$1]}" 2>/dev/null || true
}
# sse_wait NAME REGEX [TIMEOUT]
sse_wait() {
    wait_file_log "$2" "$WORK/$1.sse" "${3:-60}"
}
sse_ids() {
    sed -n 's/^id: //p' "$WORK/$1.sse"
}

start_api_daemon "$CFG"
sse_start idle
# The first job starts as the daemon does: replay from the start, then live.
sse_start first -H 'Last-Event-ID: 0'
sse_wait first '^event: hello'
sse_wait idle '^event: hello'

# --- a live client sees the flash ------------------------------------------------------------
wait_api /api/v1/jobs '[.jobs[] | select(.state == "passed")] | length == 1' 120
J1=$(jqr '.jobs[0].id')
sse_wait first "^data: .*\"kind\":\"job.finished\".*\"job\":$J1"
sse_stop first
grep -q '^event: job.started$' "$WORK/first.sse" || fail "no job.started event"
grep -q '^event: board.identified$' "$WORK/first.sse" || fail "no board.identified event"
grep -q '^event: slot.progress$' "$WORK/first.sse" || fail "no slot.progress event"
grep '^data: ' "$WORK/first.sse" | sed 's/^data: //' | jq -e . >/dev/null || fail "a data line is not JSON"
# every persisted event: id line == data.id, event line == data.kind
awk '/^id: /{id=$2} /^event: /{ev=$2} /^data: /{ if (id != "") print id, ev, substr($0, 7); id=""}' \
    "$WORK/first.sse" >"$WORK/first.tab"
while read -r id ev data; do
    [ "$(jq -r .id <<<"$data")" = "$id" ] || fail "id $id but data.id $(jq -r .id <<<"$data")"
    [ "$(jq -r .kind <<<"$data")" = "$ev" ] || fail "event $ev but data.kind $(jq -r .kind <<<"$data")"
done <"$WORK/first.tab"
# slot.progress carries a whole slot object and no id
grep -A1 '^event: slot.progress$' "$WORK/first.sse" | sed -n 's/^data: //p' | tail -n 1 |
    jq -e '.id == "A1" and (.phase | type == "string") and has("progress")' >/dev/null ||
    fail "slot.progress data is not a slot object"
grep -B1 '^event: slot.progress$' "$WORK/first.sse" | grepq '^id: ' && fail "slot.progress has an id"
grep '"progress":{"done":[1-9]' "$WORK/first.sse" >/dev/null || fail "no slot.progress with bytes"
sse_ids first | sort -n -c || fail "ids not increasing"
LAST=$(sse_ids first | tail -n 1)
[ "$LAST" = "$(db "SELECT max(id) FROM events")" ] || fail "first client missed the newest event ($LAST vs db)"
log "first client: $(sse_ids first | wc -l) events, last id $LAST"

# --- while disconnected: another job; then resume with Last-Event-ID -----------------------------
sse_start many0 # 20 clients watch the second job live
for i in $(seq 1 19); do sse_start "many$i"; done
for i in $(seq 0 19); do sse_wait "many$i" '^event: hello'; done
apij POST /api/v1/slots/A1/reflash '{"force": true}'
expect_status 202
J2=$(jqr .id)
wait_api "/api/v1/jobs/$J2" '.state == "passed"' 120
for i in $(seq 0 19); do sse_wait "many$i" "\"kind\":\"job.finished\".*\"job\":$J2"; done
END=$(db "SELECT max(id) FROM events")
sse_start resumed -H "Last-Event-ID: $LAST"
sse_wait resumed "^id: $END\$"
sleep 0.5
sse_stop resumed
db "SELECT id FROM events WHERE id > $LAST AND id <= $END ORDER BY id" >"$WORK/missed.db"
sse_ids resumed >"$WORK/missed.sse"
[ -s "$WORK/missed.db" ] || fail "no events while disconnected?"
diff "$WORK/missed.db" "$WORK/missed.sse" >"$WORK/missed.diff" ||
    fail "resume after $LAST: got ids $(tr '\n' ' ' <"$WORK/missed.sse"), journal has $(tr '\n' ' ' <"$WORK/missed.db")"
log "resumed after $LAST: exactly the $(wc -l <"$WORK/missed.db") missed events"
for i in $(seq 0 19); do
    sse_stop "many$i"
    sse_ids "many$i" >"$WORK/many$i.ids"
    db "SELECT id FROM events WHERE id > $LAST AND id <= $(tail -n1 "$WORK/many$i.ids") ORDER BY id" >"$WORK/many$i.db"
    diff -q "$WORK/many$i.db" "$WORK/many$i.ids" >/dev/null || fail "client many$i missed events"
done
log "20 clients: every event"

# --- full replay, query parameter form; bad ids ----------------------------------------------------
sse_start all "-G" --data-urlencode "last_event_id=0"
sse_wait all "^id: $END\$"
sse_stop all
[ "$(sse_ids all | head -n 1)" = "$(db 'SELECT min(id) FROM events')" ] || fail "replay from 0 does not start at the first event"
[ "$(sse_ids all | awk -v e="$END" '$1 <= e' | wc -l)" = "$(db "SELECT count(*) FROM events WHERE id <= $END")" ] ||
    fail "replay from 0 is incomplete"
api GET /api/v1/events -H 'Last-Event-ID: banana'
expect_error 400 bad_request
api POST /api/v1/events
expect_error 405 method_not_allowed

# --- heartbeat on the idle client --------------------------------------------------------------------
sse_wait idle '^: ping$' 25
sse_stop idle
api GET /metrics
# (a closed client is noticed at the next write -- an event or a heartbeat -- so only the format)
grep -q '^espstation_sse_clients [0-9]' "$WORK/resp" || fail "sse clients gauge: $(grep sse "$WORK/resp")"

stop_daemon
done_ok
