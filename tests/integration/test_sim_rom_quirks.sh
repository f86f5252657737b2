#!/usr/bin/env bash
# ROM-loader behaviours of real chips that esp_sim did not model before
# (notes/AUDIT-MODEL-ROM.md; PROTOCOL-ROM.md sections named per part):
#  1. §1.4: a ROM answers an opcode it does not know with error 0x05 "possibly several
#     times and not necessarily echoing the opcode" (--rom-unsupported N[:OP]). The
#     station sends GET_SECURITY_INFO to every ESP32 ROM while detecting the chip.
#  2. §5.1: the ESP32 ROM does not attach flash on pins burnt in eFuse by itself;
#     SPI_ATTACH must name them (--spi-pads), and an ESP32-family ROM runs no flash
#     command before SPI_ATTACH (esp_sim's default --rom-attach required).
#  3. §4.3, §2 (SDM column): Secure Download Mode (--secure-download): only SYNC,
#     SPI_ATTACH, SPI_SET_PARAMS, CHANGE_BAUDRATE, FLASH_BEGIN/DATA/END and
#     GET_SECURITY_INFO; no stub, no compression, no MD5, no register access.
#  4. §5.9: ROM flash addresses are 24 bits: 16 MB and above wraps to 0, so a ROM write
#     there must be refused, not sent.
source "${INTEG_LIB:?}"

# --- 1. repeated "unsupported" replies ----------------------------------------
# Echoed three times: before the fix the two late copies of the GET_SECURITY_INFO
# answer were taken for the answer to READ_REG of the magic register ("cannot read the
# chip magic register: READ_REG is not supported by the device (status bytes 01 05)").
make_image 70000 "$WORK/app.bin" 11
for how in 3 3:00 2:0a; do
    start_sim esp32 --link-speed 0 --rom-unsupported "$how"
    sim_log_mark
    expect_exit 0 -p "$SIM_PORT" --json info
    assert_ok_result info
    assert_json '.chip' ESP32
    assert_json '.mac' 24:6f:28:7a:d8:84
    sim_log_new_has "GET_SECURITY_INFO unsupported, ${how%%:*} replies" ||
        fail "the sim did not answer GET_SECURITY_INFO $how times (--rom-unsupported $how)"
    # Through the ROM (more commands after the repeated answers) and through the stub.
    expect_exit 0 -p "$SIM_PORT" --no-stub --json flash 0x10000 "$WORK/app.bin"
    assert_ok_result flash
    assert_json_true '.regions[0].verified'
    flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app.bin"
    make_image 50000 "$WORK/app2.bin" 12
    expect_exit 0 -p "$SIM_PORT" --json flash 0x20000 "$WORK/app2.bin"
    assert_ok_result flash
    assert_json '.stub' true
    flash_region_equals "$SIM_DIR" 0x20000 "$WORK/app2.bin"
    stop_sim
done

# --- 2. ESP32 flash on eFuse-assigned pins --------------------------------------
# ESP32-D2WD style in-package flash: CLK 6, Q 17, D 8, CS 16, HD 11. The station must
# send SPI_ATTACH 0x0B420446 (hd<<24|cs<<18|d<<12|q<<6|clk) to the ROM; with 0 the ROM
# drives the default pins, RDID reads 0xFFFFFF and FLASH_BEGIN fails.
start_sim esp32 --link-speed 0 --spi-pads 6,17,8,16,11
expect_exit 0 -p "$SIM_PORT" --no-stub --json flash 0x10000 "$WORK/app.bin"
assert_ok_result flash
assert_json '.flash_size' 4194304
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app.bin"
sim_log_has 'not attached|before SPI_ATTACH' && fail "the ROM was never attached to the flash"
sim_log_has 'spi RDID -> 0x1640ef' || fail "the flash id was not read from the attached flash"
stop_sim

# An ESP32-family ROM without SPI_ATTACH runs no flash command (the sim itself).
start_sim esp32c3 --link-speed 0
python3 - "$SIM_DIR" <<'EOF' || fail "esp_sim ran a ROM flash command before SPI_ATTACH"
import os, socket, sys, time
d = sys.argv[1]
port = open(os.path.join(d, "ready")).read()
fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
import termios, tty
tty.setraw(fd)
def slip(b):
    return b"\xc0" + b.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"
def cmd(op, body):
    os.write(fd, slip(bytes([0, op]) + len(body).to_bytes(2, "little") + b"\0" * 4 + body))
def frames(wait):
    buf, end = b"", time.time() + wait
    while time.time() < end:
        try:
            os.set_blocking(fd, False)
            buf += os.read(fd, 4096)
        except BlockingIOError:
            time.sleep(0.01)
    return [f for f in buf.split(b"\xc0") if len(f) >= 8]
w = lambda *v: b"".join(x.to_bytes(4, "little") for x in v)
cmd(0x08, b"\x07\x07\x12\x20" + b"\x55" * 32)
frames(0.3)
cmd(0x02, w(0x1000, 1, 0x400, 0x10000))
r = [f for f in frames(0.3) if f[1] == 0x02]
assert r and r[0][8] == 1 and r[0][9] == 0x06, r  # refused: 01 06
cmd(0x0D, w(0, 0))
frames(0.3)
cmd(0x02, w(0x1000, 1, 0x400, 0x10000))
r = [f for f in frames(0.3) if f[1] == 0x02]
assert r and r[0][8] == 0, r
EOF
stop_sim

# --- 3. Secure Download Mode (ESP32-C3) ---------------------------------------------
start_sim esp32c3 --link-speed 0 --secure-download
expect_exit 0 -p "$SIM_PORT" --json info
assert_ok_result info
assert_json '.security.secure_download_mode' true
assert_json '.stub' false
sim_log_mark
expect_exit 0 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app.bin"
assert_ok_result flash
assert_json '.stub' false
assert_json '.compressed' false
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app.bin"
sim_log_new_has 'secure download mode: .* refused' &&
    fail "the station sent a command the ROM refuses in Secure Download Mode: $(grep -m1 refused "$WORK/simlog.tmp")"
stop_sim

# --- 4. 24-bit ROM addresses --------------------------------------------------------
start_sim esp32 --link-speed 0 --flash-size 32MB --flash-id 0x1940EF
cp "$SIM_DIR/flash.bin" "$WORK/model32.bin"
make_image 8192 "$WORK/high.bin" 13
expect_exit 6 -p "$SIM_PORT" --no-stub --json flash 0x1000000 "$WORK/high.bin"
assert_output '16 MB'
sim_log_has 'wraps to' && fail "a ROM write above 16 MB was sent (it lands at the wrapped address)"
flash_equals_model "$SIM_DIR" "$WORK/model32.bin"
stop_sim

done_ok
