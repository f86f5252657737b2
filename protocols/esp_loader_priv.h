/*
 * esp_loader_priv: the engine's context and the helpers shared by its files.
 *
 * The engine is split by job:
 *   esp_loader.c   context, config, logging, errors, command I/O (send, wait
 *                  for the matching reply, device status to struct esp_error),
 *                  register access, timeouts
 *   esp_reset.c    DTR/RTS reset strategies (into the loader and after flashing)
 *   esp_connect.c  connect (reset + SYNC + boot-log diagnosis), chip detection,
 *                  identify (MAC, revision, crystal, security info)
 *   esp_start.c    stub upload, CHANGE_BAUDRATE, SPI attach + flash id/size
 *   esp_flash.c    safety checks, write (raw/compressed), MD5 verify, erase, read
 *
 * Invariants: every device wait goes through esp_ldr_read_frame(), so
 * cancellation (-ECANCELED) and a vanished port (-ENODEV) surface the same way
 * everywhere; l->stage always names the step in progress and is what error
 * records carry; frames that are not the expected reply are counted in
 * stats.frames_dropped, never silently lost.
 */
#ifndef ESP_LOADER_PRIV_H
#define ESP_LOADER_PRIV_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_cmd.h"
#include "esp_loader.h"
#include "slip.h"

/* Timeouts in ms before cfg.timeout_scale (PROTOCOL-ROM.md §3.5). */
#define ESP_TMO_DEFAULT 3000
#define ESP_TMO_SYNC 100
#define ESP_TMO_MEM_END_ROM 200
#define ESP_TMO_ERASE_PER_MB 40000
#define ESP_TMO_ERASE_WRITE_PER_MB 40000
#define ESP_TMO_MD5_PER_MB 8000
#define ESP_TMO_CHIP_ERASE 120000
#define ESP_TMO_MAX 240000
#define ESP_TMO_WRITE 10000
#define ESP_TMO_READ_FLASH_FRAME 3000
#define ESP_TMO_OHAI 1000

/* Host wait after a CHANGE_BAUDRATE reply before talking at the new rate
 * (esp_start.c: a stub switches 11 ms after its reply, a ROM at once). */
#define ESP_BAUD_SETTLE_STUB_MS 25
#define ESP_BAUD_SETTLE_ROM_MS 2
#define ESP_TMO_SECURITY_INFO 1000

#define ESP_ROM_WRITE_SIZE 0x400
#define ESP_STUB_WRITE_SIZE 0x4000
#define ESP_OTG_WRITE_SIZE 0x800
#define ESP_RAM_BLOCK 0x1800
#define ESP_OTG_RAM_BLOCK 0x800
#define ESP_SECTOR 0x1000
#define ESP_MAX_FRAMES_PER_REPLY 100
#define ESP_ROM_ADDR_LIMIT 0x1000000u /* 24-bit ROM flash addressing */

#define ESP_ESPRESSIF_VID 0x303A
#define ESP_USB_JTAG_PID 0x1001

/* Largest packet we send: header + data header + one stub block. */
#define ESP_PKT_MAX (ESP_CMD_HEADER_LEN + ESP_DATA_HEADER_LEN + ESP_STUB_WRITE_SIZE)
/* Largest frame we accept: READ_FLASH data packets are 0x1000. */
#define ESP_RX_FRAME_MAX 0x4100
#define ESP_RX_CHUNK 4096
#define ESP_BOOT_CAPTURE 2048

/* Sentinel for "no alternative expected data length". */
#define ESP_EXPECT_NONE ((size_t)-1)

struct esp_loader {
    struct transport *t; /* borrowed */
    struct esp_loader_config cfg;
    struct esp_chip_info info;
    struct esp_loader_stats stats;
    enum esp_stage stage; /* step in progress, for error records */

    /* Who answers and how many status bytes it sends. */
    enum esp_responder who;
    bool responder_known;
    bool stub;      /* our stub (uploaded or found running) answers */
    bool connected; /* SYNC (or its skip) and detection done */
    bool attached;  /* SPI flash attached and size set */
    bool no_lines;  /* transport has no modem lines */
    bool warned_no_lines;
    bool warned_no_stub;
    bool warned_no_verify;
    bool ohai_seen; /* an "OHAI" frame passed by while waiting for something else */
    /* Opcode of the last command the ROM answered "unsupported" (0x05), -1 none: the
     * ROM may send that answer several times (PROTOCOL-ROM.md §1.4), and a copy
     * arriving late belongs to that command, not to the one being waited for. */
    int unsup_op;

    /* Receive path. */
    struct slip_decoder dec;
    uint8_t rx[ESP_RX_CHUNK];
    size_t rx_off, rx_len;

    /* Transmit buffers. */
    uint8_t *pkt;  /* ESP_PKT_MAX */
    uint8_t *wire; /* slip_encoded_max(ESP_PKT_MAX) */

    /* Output seen around the last reset, for diagnostics (first bytes only). */
    uint8_t boot[ESP_BOOT_CAPTURE];
    size_t boot_len;
};

/* ---- esp_loader.c ---- */

void esp_ldr_log(struct esp_loader *l, enum esp_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ms scaled by cfg.timeout_scale, at least 1. */
int esp_ldr_tmo(const struct esp_loader *l, int ms);
/* esptool's timeout_per_mb: max(3 s, ms_per_mb * bytes / 1e6), capped at 240 s, scaled. */
int esp_ldr_tmo_per_mb(const struct esp_loader *l, int ms_per_mb, uint64_t bytes);

int64_t esp_ldr_now_ms(void);
void esp_ldr_sleep_ms(int ms);

/* Fills err for a transport failure (-ENODEV, -ECANCELED, -ETIMEDOUT ...) at l->stage. */
int esp_ldr_io_error(struct esp_loader *l, int rc, const char *what, struct esp_error *err);

/* Discards pending input: transport buffer, our rx buffer and the decoder's partial frame. */
int esp_ldr_flush_input(struct esp_loader *l);

/* SLIP-encodes and writes one packet; returns the bytes put on the wire. */
int esp_ldr_send_raw(struct esp_loader *l, const uint8_t *pkt, size_t len, struct esp_error *err);

/* Waits up to timeout_ms for the next complete frame (in l->dec.frame/frame_len).
 * Returns 1 with a frame, 0 on timeout, <0 on transport failure (err not filled). */
int esp_ldr_read_frame(struct esp_loader *l, int timeout_ms);

/*
 * Waits for the reply to op: skips non-responses and other opcodes (counted as
 * dropped), recognises the "unsupported command" reply, turns device failures
 * into -EIO (or -ENOTSUP for ROM 0x05 / stub 0xFF) with the status bytes in
 * err. expect_alt, unless ESP_EXPECT_NONE, is a second acceptable data length.
 * *r points into the decoder's frame until the next read.
 */
int esp_ldr_recv(struct esp_loader *l, uint8_t op, size_t expect, size_t expect_alt, int timeout_ms,
                 struct esp_response *r, struct esp_error *err);

/*
 * As esp_ldr_recv, but a frame of exactly data_len bytes that is not the reply
 * (READ_FLASH streams raw data frames right after its reply) ends the wait
 * too: returns 1 with that frame left in l->dec.frame, the reply taken as lost.
 */
int esp_ldr_recv_or_data(struct esp_loader *l, uint8_t op, size_t expect, size_t data_len,
                         int timeout_ms, struct esp_response *r, struct esp_error *err);

/* Send l->pkt[0..len) and wait for its reply. */
int esp_ldr_cmd(struct esp_loader *l, size_t len, size_t expect, int timeout_ms,
                struct esp_response *r, struct esp_error *err);

/* Command whose body is u32 words. */
int esp_ldr_cmd_words(struct esp_loader *l, uint8_t op, const uint32_t *words, size_t n,
                      size_t expect, int timeout_ms, struct esp_response *r, struct esp_error *err);

/* *_DATA command (len, seq, 0, 0, data). */
int esp_ldr_cmd_data(struct esp_loader *l, uint8_t op, uint32_t seq, const uint8_t *data,
                     size_t len, int timeout_ms, struct esp_error *err);

/* -EINVAL with a message unless connect succeeded. */
int esp_ldr_need_connected(struct esp_loader *l, struct esp_error *err);

/* Sets the responder and whether the stub answers. */
void esp_ldr_set_responder(struct esp_loader *l, enum esp_responder who);

/* True when the chip is an ESP8266 talking through its ROM. */
bool esp_ldr_is_8266_rom(const struct esp_loader *l);

/* True when the transport is an Espressif USB-OTG CDC port (smaller blocks). */
bool esp_ldr_is_usb_otg(const struct esp_loader *l);

/* Copies up to cap-1 printable characters of buf into out (others as '.', CR/LF as ' '). */
void esp_ldr_printable(const uint8_t *buf, size_t len, char *out, size_t cap);

/* ---- esp_reset.c ---- */

enum esp_reset_kind {
    ESP_RESET_CLASSIC,
    ESP_RESET_TIGHT,
    ESP_RESET_USB_JTAG,
    ESP_RESET_HARD,
};

const char *esp_ldr_reset_kind_to_string(enum esp_reset_kind k);

/* EN (RTS) low time of a reset pulse: esptool's and esp-serial-flasher's 100 ms, and
 * the short pulse of the first connect attempt and the final hard reset, which is
 * still 400x the chip's minimum (esp_reset.c). */
#define ESP_EN_LOW_MS 100
#define ESP_EN_LOW_FAST_MS 20

/* Runs a DTR/RTS sequence: EN low en_low_ms (classic, tight, hard), BOOT held up to
 * delay_ms after EN rose (classic, tight). Returns 0, -ENOTSUP (no modem lines),
 * -ENODEV, -ECANCELED. */
int esp_ldr_line_reset(struct esp_loader *l, enum esp_reset_kind kind, int en_low_ms, int delay_ms);

/* ---- esp_start.c ---- */

/* SPI_SET_PARAMS(0, size, 64 KiB, 4 KiB, 256, 0xFFFF). */
int esp_ldr_spi_set_params(struct esp_loader *l, uint32_t size, struct esp_error *err);

/* ---- esp_flash.c ---- */

/* Words to send in FLASH_BEGIN / FLASH_DEFL_BEGIN: 5 (with the encrypt word) only to
 * the ROM of S2 and later chips, 4 to the ESP8266/ESP32 ROMs and to every stub. */
size_t esp_ldr_begin_words(const struct esp_loader *l);

/* ---- esp_connect.c ---- */

/* Chip detection once SYNC worked (or was skipped). */
int esp_ldr_detect(struct esp_loader *l, struct esp_error *err);

/* Right after EN rose with BOOT low (input flushed just before, esp_reset.c): reads
 * the boot output into l->boot until the ROM's download banner ("waiting for
 * download") is in it or max_ms passed. 0, or -ENODEV / -ECANCELED. */
int esp_ldr_boot_hold(struct esp_loader *l, int max_ms);

/* Discards input and SYNCs again (no reset) to get a talking loader or stub
 * back in step, up to tries times. 1 answered, 0 silent, <0 port failure. */
int esp_ldr_resync(struct esp_loader *l, int tries);

/* GET_SECURITY_INFO into l->info; *chip_id (optional) = id or -1 when the
 * reply has none (S2). 0, or <0 when unavailable (err filled). */
int esp_ldr_security_info(struct esp_loader *l, int *chip_id, struct esp_error *err);

#endif
