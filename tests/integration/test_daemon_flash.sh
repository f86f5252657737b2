#!/usr/bin/env bash
# test_daemon_flash: espstationd flashes two virtual boards (ESP32 with a
# bootloader whose header the engine patches, a data region and an app; ESP8266
# with a patched app at 0) from manual ports by profile, records boards and
# jobs, runs the boot check; a restart with the same boards skips them (flash
# MD5 matches what the engine would write, patch included); a bad config on
# SIGHUP is refused with the key named, and the old one keeps working.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"

# --- firmware sets --------------------------------------------------------------
FW=$WORK/fw32
mkdir -p "$FW"
make_image_esp esp32 20000 "$FW/bootloader.bin" 3
make_image_esp esp32 150000 "$FW/app.bin" 4
make_random 3072 "$FW/part.bin" 9
cat >"$FW/manifest.json" <<JSON
{"name": "full", "version": "2.0.0", "chip": "esp32",
 "flash_mode": "qio", "flash_size": "4MB", "flash_freq": "80m",
 "regions": [{"offset": "0x1000", "file": "bootloader.bin", "kind": "bootloader"},
             {"offset": "0x8000", "file": "part.bin", "kind": "data"},
             {"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
import_fw "$FW"
FW8=$WORK/fw8266
mkdir -p "$FW8"
make_image_esp esp8266 80000 "$FW8/app.bin" 5
cat >"$FW8/manifest.json" <<JSON
{"name": "e8266", "version": "1.0", "chip": "esp8266", "flash_mode": "dio", "flash_size": "4MB",
 "regions": [{"offset": 0, "file": "app.bin", "kind": "app"}]}
JSON
import_fw "$FW8"

# --- boards and config --------------------------------------------------------------
start_sim esp32
S32=$SIM_DIR
start_sim esp8266
S8=$SIM_DIR
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"ports": [{"uri": "$S32/tty", "label": "A1"}, {"uri": "$S8/tty", "label": "A2"}],
 "profiles": {"line": {"firmware": {"esp32": "full@2.0.0", "esp8266": "e8266@1.0"},
                       "boot_check": {"pattern": "esp_sim ([a-z0-9]+) app running, tick ([0-9]+)",
                                      "timeout_ms": 8000, "capture": ["version", "tick"]}}}}
JSON

start_daemon "$CFG"
wait_sql "SELECT count(*) FROM jobs WHERE state = 'passed'" 2 90
[ "$(db "SELECT count(*) FROM jobs")" = 2 ] || fail "expected exactly 2 jobs: $(db 'SELECT id, state, error_message FROM jobs')"

# Flash contents: data and app exact; the bootloader apart from the patched header
# bytes 2..3 and the re-computed SHA-256 at its end (and they must differ: qio/80m).
flash_region_equals "$S32" 0x8000 "$FW/part.bin"
flash_region_equals "$S32" 0x10000 "$FW/app.bin"
BL=$(size_of "$FW/bootloader.bin")
cmp -s -i $((0x1000 + 4)):4 -n $((BL - 36)) "$S32/flash.bin" "$FW/bootloader.bin" ||
    fail "bootloader body differs on flash"
hdr=$(od -An -tx1 -j $((0x1000 + 2)) -N 2 "$S32/flash.bin" | tr -d ' ')
[ "$hdr" = 002f ] || fail "bootloader header not patched to qio/4MB/80m: bytes 2..3 = $hdr"
# ESP8266 app at 0: bytes 2..3 patched to dio/4MB (0x02, 0x40 | the file's freq nibble 0)
tail -c +5 "$FW8/app.bin" >"$WORK/app8266.body"
flash_region_equals "$S8" 4 "$WORK/app8266.body"
hdr=$(od -An -tx1 -j 2 -N 2 "$S8/flash.bin" | tr -d ' ')
[ "$hdr" = 0240 ] || fail "ESP8266 header not patched to dio/4MB: bytes 2..3 = $hdr"

# Records: boards with MAC, chip, firmware and md5 of the app file.
row=$(db "SELECT chip, current_firmware, current_md5, flash_size, slot, online_state, running_version FROM boards WHERE mac = '24:6f:28:7a:d8:84'")
[ "$row" = "ESP32|full@2.0.0|$(md5_of "$FW/app.bin")|4194304|A1|awaiting_network|esp32" ] ||
    fail "ESP32 board record: $row"
row=$(db "SELECT chip, current_firmware, current_md5, slot FROM boards WHERE mac = '18:fe:34:a1:b2:c3'")
[ "$row" = "ESP8266|e8266@1.0|$(md5_of "$FW8/app.bin")|A2" ] || fail "ESP8266 board record: $row"
row=$(db "SELECT firmware, board_mac, slot, bytes > 0, kbps > 0, retries FROM jobs WHERE slot = 'A1'")
[ "$row" = "full@2.0.0|24:6f:28:7a:d8:84|A1|1|1|0" ] || fail "ESP32 job record: $row"
[ "$(db "SELECT count(*) FROM job_log WHERE line LIKE 'sync ok%'")" = 2 ] || fail "engine log lines missing from the job log"
[ "$(db "SELECT count(*) FROM job_log WHERE line LIKE 'boot check matched%'")" = 2 ] || fail "boot check not in the job log"
for k in port.added job.started board.identified job.finished; do
    [ "$(db "SELECT count(*) FROM events WHERE kind = '$k'")" = 2 ] || fail "expected 2 '$k' events"
done
# ESP8266 got a real hard reset after flashing: EN pulsed, then a normal boot.
sim_log_has 'reset -> boot' "$S8" || fail "ESP8266 was not hard-reset into its app"
# Log format: journald priority prefix (stderr is a file), board-scoped lines.
grep -Eq '^<5>\[slot A1 24:6f:28:7a:d8:84\] passed: full@2.0.0' "$DAEMON_LOG" || fail "log line format"

# --- SIGHUP with a broken config: refused, named, old config kept ----------------
cp "$CFG" "$WORK/good.json"
sed -i 's/"timeout_ms": 8000/"timeout_ms": "soon"/' "$CFG"
kill -HUP "$DAEMON_PID"
wait_log 'reload refused.*boot_check\.timeout_ms' 10
kill -0 "$DAEMON_PID" || fail "daemon died on a bad reload"
cp "$WORK/good.json" "$CFG"
kill -HUP "$DAEMON_PID"
wait_log 'configuration reloaded' 10
stop_daemon 0

# --- restart with the same boards: both skipped, nothing written -----------------
sim_log_mark "$S32"
m32=$SIM_LOG_MARK
sim_log_mark "$S8"
m8=$SIM_LOG_MARK
start_daemon "$CFG"
wait_sql "SELECT count(*) FROM jobs WHERE state = 'skipped' AND error_message LIKE 'already carries%'" 2 60
SIM_LOG_MARK=$m32
sim_log_new_has 'FLASH_(DEFL_)?DATA' "$S32" && fail "ESP32 was written although it carries the image"
SIM_LOG_MARK=$m8
sim_log_new_has 'FLASH_(DEFL_)?DATA' "$S8" && fail "ESP8266 was written although it carries the image"
stop_daemon 0
integrity_ok
done_ok
