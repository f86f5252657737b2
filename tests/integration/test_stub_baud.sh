#!/usr/bin/env bash
# test_stub_baud: the baud changes before the stub upload where the ROM takes
# CHANGE_BAUDRATE (issue 11; PROTOCOL-ROM.md §2, §5.1).
# - The ROM personas: the ESP32 and ESP32-C3 ROMs answer CHANGE_BAUDRATE and switch,
#   the ESP8266 ROM refuses it as unsupported (01 05) and stays at its rate.
# - ESP32 and ESP32-C3: CHANGE_BAUDRATE(921600, old 0) goes to the ROM before the first
#   MEM_BEGIN, so the whole stub travels at 921600 (the board's UART runs at 921600 from
#   the "baud 921600" line on, and no frame arrives at a wrong baud); it is the only
#   CHANGE_BAUDRATE, and the stub keeps the rate.
# - ESP8266: the stub goes up at 115200 and the running stub changes the rate
#   (old = 115200, the rate in force).
# - A link that garbles bytes above 115200 (--fault noisy-above:115200): the stub upload at
#   921600 fails at stage baud with advice to lower the rate (no reset, no ROM fall back);
#   at -b 115200 the same board flashes.
source "${INTEG_LIB:?}"

# line NUMBER of the first sim.log line matching REGEX (0 if none)
first_line() {
    local n
    n=$(grep -n -E -m1 -- "$1" "$SIM_DIR/sim.log" | cut -d: -f1 || true)
    echo "${n:-0}"
}

# rom_change_baud PORT BAUD: SYNC, then CHANGE_BAUDRATE(BAUD, 0) in raw SLIP at 115200;
# prints the reply's two status bytes ("00 00", "01 05") or "none".
rom_change_baud() {
    python3 - "$1" "$2" <<'PY'
import os, select, struct, sys, termios, time, tty

port, baud = sys.argv[1], int(sys.argv[2])
fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
tty.setraw(fd)
a = termios.tcgetattr(fd)
a[4] = a[5] = termios.B115200
termios.tcsetattr(fd, termios.TCSANOW, a)


def send(op, body):
    pkt = struct.pack("<BBHI", 0, op, len(body), 0) + body
    pkt = pkt.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
    os.write(fd, b"\xc0" + pkt + b"\xc0")


def frames(seconds):
    buf, end = b"", time.time() + seconds
    while time.time() < end:
        if select.select([fd], [], [], 0.05)[0]:
            buf += os.read(fd, 4096)
    out = []
    for part in buf.split(b"\xc0"):
        if part:
            out.append(part.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb"))
    return out


send(0x08, b"\x07\x07\x12\x20" + b"\x55" * 32)
frames(0.3)
send(0x0F, struct.pack("<II", baud, 0))
for f in frames(0.5):
    if len(f) >= 10 and f[0] == 1 and f[1] == 0x0F:  # status bytes lead the body here
        print("%02x %02x" % (f[8], f[9]))
        break
else:
    print("none")
PY
}

# --- the ROM personas ------------------------------------------------------------------
for chip in esp8266 esp32 esp32c3; do
    start_sim "$chip"
    got=$(rom_change_baud "$SIM_PORT" 230400)
    if [ "$chip" = esp8266 ]; then
        [ "$got" = "01 05" ] || fail "ESP8266 ROM: CHANGE_BAUDRATE answered '$got', expected 01 05"
        sim_log_has 'baud 230400' && fail "ESP8266 ROM switched its baud"
    else
        [ "$got" = "00 00" ] || fail "$chip ROM: CHANGE_BAUDRATE answered '$got', expected 00 00"
        sim_log_has 'baud 230400' || fail "$chip ROM did not switch to 230400"
    fi
    stop_sim
done

# --- ESP32 family: baud first, stub at 921600 ----------------------------------------
for chip in esp32 esp32c3; do
    start_sim "$chip"
    make_image 60000 "$WORK/app-$chip.bin" 1101
    expect_exit 0 -p "$SIM_PORT" -b 921600 --json flash 0x10000 "$WORK/app-$chip.bin"
    assert_ok_result flash
    assert_json '.stub' true
    flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app-$chip.bin"
    [ "$(grep -c 'cmd CHANGE_BAUDRATE' "$SIM_DIR/sim.log")" = 1 ] ||
        fail "$chip: expected one CHANGE_BAUDRATE: $(grep 'CHANGE_BAUDRATE' "$SIM_DIR/sim.log")"
    sim_log_has 'cmd CHANGE_BAUDRATE new=921600 old=0$' ||
        fail "$chip: the ROM did not get CHANGE_BAUDRATE(921600, 0)"
    cb=$(first_line 'cmd CHANGE_BAUDRATE')
    sw=$(first_line ' baud 921600$')
    mem=$(first_line 'cmd MEM_BEGIN')
    run=$(first_line 'stub running')
    [ "$cb" -gt 0 ] && [ "$sw" -gt "$cb" ] && [ "$mem" -gt "$sw" ] && [ "$run" -gt "$mem" ] ||
        fail "$chip: order CHANGE_BAUDRATE@$cb, board at 921600@$sw, MEM_BEGIN@$mem, stub@$run"
    sim_log_has 'frame at wrong baud' && fail "$chip: a frame arrived at a wrong baud"
    sim_log_has 'auto-baud' && fail "$chip: the board had to auto-baud"
    stop_sim
done

# --- ESP8266: stub at 115200, then the stub changes the rate ---------------------------
start_sim esp8266
make_image 40000 "$WORK/app-8266.bin" 1102
expect_exit 0 -p "$SIM_PORT" -b 921600 --json flash 0x10000 "$WORK/app-8266.bin"
assert_ok_result flash
assert_json '.stub' true
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app-8266.bin"
[ "$(grep -c 'cmd CHANGE_BAUDRATE' "$SIM_DIR/sim.log")" = 1 ] || fail "ESP8266: one CHANGE_BAUDRATE expected"
sim_log_has 'cmd CHANGE_BAUDRATE new=921600 old=115200$' ||
    fail "ESP8266: the stub did not get CHANGE_BAUDRATE(921600, 115200)"
[ "$(first_line 'cmd MEM_BEGIN')" -lt "$(first_line 'stub running')" ] &&
    [ "$(first_line 'stub running')" -lt "$(first_line 'cmd CHANGE_BAUDRATE')" ] ||
    fail "ESP8266: expected MEM_BEGIN, stub running, then CHANGE_BAUDRATE"
sim_log_has 'warning: CHANGE_BAUDRATE old=' && fail "ESP8266: wrong old baud to the stub"
stop_sim

# --- a link that garbles bytes above 115200 ----------------------------------------------
start_sim esp32 --fault noisy-above:115200
make_image 30000 "$WORK/noisy.bin" 1103
expect_exit 4 -p "$SIM_PORT" -b 921600 --json flash 0x10000 "$WORK/noisy.bin"
assert_json '.error.stage' baud
jr '.error.message' | grepq 'uploading the stub at 921600 baud failed' ||
    fail "message: $(jr '.error.message')"
jr '.error.advice' | grepq 'choose a lower baud rate' || fail "advice: $(jr '.error.advice')"
sim_log_has 'fault noisy-above fired' || fail "noisy-above never fired"
[ "$(grep -c 'reset -> download mode' "$SIM_DIR/sim.log")" = 1 ] ||
    fail "the garbled upload led to another reset (a ROM fall back?)"
sim_log_has 'stub running' && fail "a stub started over the garbled link"
expect_exit 0 -p "$SIM_PORT" -b 115200 --json flash 0x10000 "$WORK/noisy.bin"
assert_ok_result flash
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/noisy.bin"

done_ok
