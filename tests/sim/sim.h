/*
 * sim.h: shared declarations of the virtual ESP board (esp_sim).
 *
 * The board is one struct sim owned by main() and driven by a single-threaded
 * poll() loop. Modules (one job each):
 *   sim_main.c   command line, files in DIR, signals, the event loop
 *   sim_log.c    DIR/sim.log, one line per event with a monotonic ms stamp
 *   sim_link.c   the serial wire: pty or TCP, baud pacing in both directions,
 *                wrong-baud garbling, SLIP framing of board output
 *   sim_baud.c   reading the host's baud from the pty (termios2, kept apart
 *                because <asm/termbits.h> clashes with <termios.h>)
 *   sim_slip.c   SLIP decoder for host->board frames
 *   sim_flash.c  the flash model (mmap of DIR/flash.bin) and its timing
 *   sim_regs.c   per-chip register file: magic, eFuse MAC/revision, UART
 *                divider, SPI user-command RDID
 *   sim_board.c  chip life cycle: modem lines, reset, boot modes, banners,
 *                deferred replies, dispatch to a persona
 *   sim_rom.c    the ROM loader persona (ESP8266 and ESP32-family)
 *   sim_stub.c   the flasher-stub persona (after OHAI)
 *   sim_fault.c  fault knobs (--fault KIND[:ARG])
 * Times are CLOCK_MONOTONIC nanoseconds (int64_t).
 */
#ifndef SIM_H
#define SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <zlib.h>

#define SIM_NS_PER_MS 1000000LL
#define SIM_INITIAL_BAUD 115200u
#define SIM_ESP8266_BOOT_BAUD 74880u
#define SIM_MAX_FRAME (0x10000 + 64)
#define SIM_MAX_MEM_SEGS 16
#define SIM_MAX_FAULT_ARGS 16

/* ---- chips ----------------------------------------------------------------- */

enum sim_chip { SIM_ESP8266 = 0, SIM_ESP32, SIM_ESP32C3, SIM_ESP32S3 };

/* The board's port (--usb): a USB-UART bridge, the chip's USB-Serial/JTAG, the ROM's
 * USB-OTG CDC (sim_usb.c). */
enum sim_usb { SIM_USB_NONE = 0, SIM_USB_JTAG, SIM_USB_OTG };

struct sim_chip_info {
    enum sim_chip chip;
    const char *name;      /* command-line name */
    const char *lib_name;  /* name for esp_chip_by_name() */
    uint32_t magic;        /* value at 0x40001000 */
    unsigned status_bytes; /* ROM status bytes: 2 or 4 */
    int chip_id;           /* image / security-info id, -1 for ESP8266 */
    bool rom_full;         /* ESP32-era commands (ATTACH, DEFL, MD5, baud ...) */
    bool begin_5words;     /* ROM FLASH_BEGIN takes the encrypt word */
    bool security_info;    /* GET_SECURITY_INFO */
    uint32_t uart_clkdiv_reg;
    unsigned xtal_mhz;
    unsigned clkdiv_div;                                    /* 2 on ESP8266 */
    uint32_t spi_base, spi_usr, spi_usr1, spi_usr2, spi_w0; /* absolute */
    uint32_t efuse_mac_reg;                                 /* S2+: lo word */
    uint8_t default_mac[6];
};

const struct sim_chip_info *sim_chip_by_name(const char *name);

/* ---- time, logging ------------------------------------------------------ */

int64_t sim_now(void);
int sim_log_open(const char *path);
void sim_log_close(void);
void sim_log_set_mono(bool on); /* --log-mono: absolute CLOCK_MONOTONIC in every line */
void sim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *sim_op_name(uint8_t op);

/* ---- faults -------------------------------------------------------------- */

struct sim_faults {
    unsigned drop_reply[SIM_MAX_FAULT_ARGS];
    size_t n_drop_reply;
    unsigned corrupt_reply[SIM_MAX_FAULT_ARGS];
    size_t n_corrupt_reply;
    unsigned stall_at;         /* 0 = off */
    uint64_t disconnect_bytes; /* 0 = off */
    unsigned refuse_sync;      /* SYNCs to ignore */
    int boot_mode;             /* -1 = off */
    uint32_t write_error_addr[SIM_MAX_FAULT_ARGS];
    size_t n_write_error;
    bool md5_mismatch;
    bool stub_no_ohai; /* every uploaded stub hangs before its OHAI */
    bool silent;
    bool no_download_answer;
    uint32_t noisy_above; /* 0 = off: above this board baud, host->board bytes get bit flips */
    /* flash-dead[:ID]: the flash chip does not answer (not powered, a broken solder joint,
     * no flash fitted): RDID reads flash_dead_id (0xFFFFFF, MISO floating high; 0x000000
     * stuck low), every flash command of the ROM (01 06) or stub (0xC4) fails. */
    bool flash_dead;
    uint32_t flash_dead_id;
    /* flash-asleep: the flash starts in deep power-down (an app or a brown-out left it
     * there): it ignores everything but "release" (0xAB) and RDID reads 0xFFFFFF until
     * then. 0xB9 puts an awake flash into deep power-down, as on real parts. */
    bool flash_asleep;
    bool noisy_fired;
    uint64_t noisy_bytes; /* host->board bytes received while noisy */
    /* counters */
    unsigned replies;  /* reply frames produced in download mode */
    unsigned commands; /* commands received in download mode */
    unsigned syncs;    /* SYNC commands seen */
    uint64_t rx_bytes; /* bytes received from the host */
};

/* Parses one --fault argument into f; returns 0 or -1 (message on stderr). */
int sim_fault_parse(struct sim_faults *f, const char *spec);
/* True when the reply frame with this 1-based number must be dropped / corrupted. */
bool sim_fault_drop_reply(struct sim_faults *f, unsigned n);
bool sim_fault_corrupt_reply(struct sim_faults *f, unsigned n);
/* noisy-above: the byte as it arrives at a board running at board_baud (a bit flipped in
 * one byte of every SIM_NOISY_PERIOD while board_baud > noisy_above; deterministic). */
#define SIM_NOISY_PERIOD 211
uint8_t sim_fault_noisy(struct sim_faults *f, uint8_t byte, uint32_t board_baud);
/* True when [addr, addr+len) touches a write-error address. */
bool sim_fault_write_error(const struct sim_faults *f, uint32_t addr, uint32_t len);

/* ---- SLIP decoder ----------------------------------------------------- */

struct sim_slip {
    uint8_t *buf; /* owned, SIM_MAX_FRAME bytes */
    size_t len;
    bool started; /* a delimiter was seen (bytes before the first 0xC0 are noise) */
    bool escape;
    bool bad;     /* bad escape / overflow: drop until the next delimiter */
    bool garbled; /* some byte of this frame came in at a wrong baud */
    uint32_t garbled_baud;
    bool complete; /* buf holds a frame handed out; cleared at the next byte */
};

int sim_slip_init(struct sim_slip *s);
void sim_slip_free(struct sim_slip *s);
void sim_slip_reset(struct sim_slip *s);
/* Feeds one byte (garbled: it came in at a wrong baud, seen by the host at host_baud).
 * Returns true when a complete non-empty good frame is in buf/len. */
bool sim_slip_feed(struct sim_slip *s, uint8_t byte, bool garbled, uint32_t host_baud);

/* ---- the link (wire) ------------------------------------------------------ */

struct sim_chunk {
    struct sim_chunk *next;
    uint32_t baud;
    size_t len, pos;
    uint8_t data[];
};

struct sim_link {
    bool tcp;
    int master_fd; /* pty master, or the connected TCP client (-1 if none) */
    int slave_fd;  /* our own slave fd (pty mode) */
    int listen_fd; /* TCP mode */
    char slave_path[128];
    double speed; /* link-speed factor F, 0 = no pacing */
    /* rx: bytes read from the fd, waiting for their wire time */
    uint8_t *rx;
    uint8_t *rx_garbled; /* per byte: 0 or 1 */
    uint32_t *rx_baud;   /* host baud per byte (for auto-baud) */
    size_t rx_cap, rx_head, rx_arrived, rx_tail;
    double rx_wire_ns; /* completion time of the last arrived byte */
    /* tx: chunks waiting for their wire time, then outbuf waiting for the fd */
    struct sim_chunk *tx_head, *tx_tail;
    size_t tx_queued; /* bytes in the chunk queue */
    double tx_wire_ns;
    uint8_t *out;
    size_t out_len, out_cap;
    uint32_t rng;
    uint32_t last_host_baud;
    /* --adapter-max: the USB-serial adapter's highest rate, 0 = none (see
     * sim_link_host_baud); adapter_logged: the clamp was logged for this rate. */
    uint32_t adapter_max;
    uint32_t adapter_logged;
};

/* ---- flash model -------------------------------------------------------- */

struct sim_flash {
    uint8_t *mem; /* mmap of DIR/flash.bin */
    uint32_t size;
    int fd;
    double speed;       /* timing factor, 0 = instant */
    int64_t busy_until; /* the flash is busy (stub background writes) until then */
    uint64_t bytes_written, bytes_erased;
};

int sim_flash_open(struct sim_flash *fl, const char *path, uint32_t size, double speed);
void sim_flash_close(struct sim_flash *fl);
/* Erases [addr, addr+len) (whole sectors/blocks covering it), returns the time it takes (ns). */
int64_t sim_flash_erase(struct sim_flash *fl, uint32_t addr, uint32_t len, bool use_blocks);
/* Programs (NOR: AND) data at addr; returns the time it takes (ns). Caller checks bounds. */
int64_t sim_flash_program(struct sim_flash *fl, uint32_t addr, const uint8_t *data, size_t len);
int64_t sim_flash_scaled(const struct sim_flash *fl, int64_t ns);
bool sim_flash_in_bounds(const struct sim_flash *fl, uint32_t addr, uint64_t len);

/* ---- the board -------------------------------------------------------- */

enum sim_state {
    SIM_ST_RESET_HELD, /* EN low */
    SIM_ST_BOOTING,    /* EN released, waiting for the strap sample */
    SIM_ST_ROM,        /* ROM download mode */
    SIM_ST_STUB,       /* flasher stub running */
    SIM_ST_APP,        /* normal boot, app running (no SYNC answers) */
    SIM_ST_DEAD,       /* jumped somewhere silent; waits for a reset */
};

const char *sim_state_to_string(enum sim_state st);

enum sim_post {
    SIM_POST_NONE = 0,
    SIM_POST_OHAI,    /* after the reply: switch to the stub, send OHAI */
    SIM_POST_BAUD,    /* after the reply: switch the board baud to post_arg */
    SIM_POST_REBOOT,  /* after the reply: reset into a normal boot */
    SIM_POST_RUN_APP, /* after the reply: leave the loader, app runs (no banner) */
    SIM_POST_DEAD,    /* after the reply: go silent */
    SIM_POST_READ_FLASH,
};

struct sim_mem_seg {
    uint32_t addr, size, block_size;
    uint8_t *data;
};

/* Write operation in progress (FLASH_BEGIN / FLASH_DEFL_BEGIN). */
struct sim_write_op {
    bool active;
    bool compressed;
    uint32_t offset;     /* flash address of the first byte */
    uint32_t total;      /* erase_size word (stub: bytes to write) */
    uint32_t num_blocks; /* as announced */
    uint32_t block_size;
    uint32_t pos;       /* bytes written so far (uncompressed) */
    uint32_t erased_to; /* stub erase pointer: first address not yet erased (or started) */
    uint32_t erase_end; /* stub: end of the range to erase (the size rounded up to 4 KiB) */
    int64_t last_seq;   /* last good block, -1 none */
    bool inflate_init;
    bool inflate_done;
    z_stream zs;
    /* stub inflate: output collects in a 32 KiB buffer (the stubs' TINFL_LZ_DICT_SIZE
     * out_buf) and is written when it is full or the stream ends */
    bool staged_out;
    uint32_t olen;
    uint8_t obuf[32768];
    /* stub statistics of this write, logged at its end */
    unsigned st_blocks, st_arrived_busy, st_ahead, st_needed;
    int64_t st_waited, st_flash;
};

/* The flash work of one stub data block on a virtual clock (sim_write.c): the stub's
 * CPU is at t; the flash chip is busy until sim_flash.busy_until. */
struct sim_wtime {
    bool stub;        /* false: the ROM (area erased at BEGIN; t just sums the cost) */
    bool erase_ahead; /* start one erase without waiting at each inflate step */
    bool margin;      /* esptool stub: erase through the sector holding the write's end */
    int64_t t;
    unsigned ahead, needed;
    uint64_t programmed;
};

struct sim_read_op {
    bool active;
    uint32_t offset, length, packet_size, max_in_flight;
    uint32_t sent, acked;
    void *md5; /* EVP_MD_CTX */
};

/* The network persona (sim_net.c): configuration and the esp_netdev child. */
enum sim_net_state {
    SIM_NET_OFF,      /* no persona (no --net-bind, not in the app, no valid app image) */
    SIM_NET_STARTING, /* esp_netdev runs, DIR/net/ready not there yet */
    SIM_NET_UP,       /* DIR/net/ready written: the persona serves */
    SIM_NET_FAILED,   /* could not run, exited, or no ready in time: DIR/net/failed */
};

struct sim_net {
    const char *bind;     /* --net-bind 127.0.0.x; NULL = no persona */
    const char *checkin;  /* --checkin URL */
    const char *password; /* --ota-password */
    const char *auth;     /* --ota-auth md5|pbkdf2 */
    const char *fault;    /* --net-fault */
    const char *netdev;   /* --netdev PATH; NULL = next to esp_sim */
    int interval_ms;      /* --checkin-interval; -1 = "once" (one check-in per boot) */
    int ota_port;         /* --ota-port; -1 = the chip's (8266 / 3232) */
    int http_port;        /* --web-port; -1 = no /update form */
    int64_t app_offset;   /* --app-offset; -1 = chip default */
    const char *fs_off;   /* --fs-offset: where the persona writes filesystem images; NULL none */
    int pid;              /* the running esp_netdev, 0 = none */
    int start_timeout_ms; /* --net-start-timeout: DIR/net/ready must appear within this */
    enum sim_net_state state;
    int64_t start_deadline; /* SIM_NET_STARTING: give up at this sim_now() */
    char failed[256];       /* SIM_NET_FAILED: why (also in DIR/net/failed) */
    char up_line[1024];     /* what "net: persona up" logs after the pid */
    int64_t err_start;      /* size of DIR/net/netdev.err when this boot's persona started */
    bool announce;          /* print the version line at the next app tick */
    char version[64];
    char md5[33];
    uint32_t size;
};

struct sim {
    const struct sim_chip_info *chip;
    /* configuration */
    const char *dir;
    uint32_t flash_id;
    uint8_t mac[6];
    double speed;
    bool strict_reset, no_boot_noise;
    const char *stub_dir;
    /* --stub-gen legacy: the flasher stub of the esptool 4.x generation, which takes
     * FLASH_BEGIN/FLASH_DEFL_BEGIN with 4 words only (PROTOCOL-ROM.md §2.1, §6.3) */
    bool stub_legacy;
    /* --rom-unsupported N[:OP]: how the ROM answers an opcode it does not know
     * (PROTOCOL-ROM.md §1.4: error 0x05 "possibly several times and not necessarily
     * echoing the opcode"). rom_unsup_replies frames (default 1), opcode byte
     * rom_unsup_op (-1 = the request's opcode, the default). */
    unsigned rom_unsup_replies;
    int rom_unsup_op;
    /* --secure-download (C3/S3): eFuse ENABLE_SECURITY_DOWNLOAD burnt. GET_SECURITY_INFO
     * flag bit 2; the ROM runs only SYNC, SPI_ATTACH, SPI_SET_PARAMS, CHANGE_BAUDRATE,
     * FLASH_BEGIN/DATA/END and GET_SECURITY_INFO, everything else is answered
     * "unsupported" (PROTOCOL-ROM.md §2 SDM column, §4.3). */
    bool secure_download;
    /* --spi-pads CLK,Q,D,CS,HD (ESP32): SPI flash pins burnt in eFuse (RDATA5 clk/q/d/cs,
     * RDATA3 hd), as on modules with in-package flash on other pins; all 0 = the
     * default pins. The ESP32 ROM does not attach such flash by itself: SPI_ATTACH
     * must name these pins (PROTOCOL-ROM.md §5.1). */
    uint8_t spi_pads[5];
    /* --rom-attach required|lenient: an ESP32-family ROM runs flash commands only after
     * SPI_ATTACH with the right pins (default required, PROTOCOL-ROM.md §5.1). */
    bool rom_attach_lenient;
    /* --usb serial-jtag|otg and its knobs (sim_usb.c, PROTOCOL-ROM.md 3.6) */
    enum sim_usb usb;
    int usb_wdt_ms;          /* --usb-wdt-ms: watchdogs left armed by a USB reset; 0 = off */
    int usb_gone_ms;         /* --usb-gone-ms: the tty is away this long on re-enumeration */
    bool usb_reenum_always;  /* --usb-reenum always: also on a reset into the loader */
    uint32_t usb_otg_block;  /* --usb-otg-block: largest data block the OTG CDC takes */
    bool usb_master_fd;      /* --master-fd: the harness re-enumerates, not us */
    bool usb_jtag_dl;        /* peripheral: DTR was set when the reset was requested */
    bool usb_force_download; /* S3 RTC_CNTL_OPTION1 bit 0 (survives resets) */
    bool rtc_wdt_on, swd_on;
    int64_t wdt_fire_at; /* 0 = no watchdog running */
    bool usb_unplug_req; /* sim_main: drop the tty now */
    int64_t usb_back_at; /* sim_main: tty away until then (0 = present) */
    /* --usb-stray-05 N[:EVERY]: stray "01 05" replies with a foreign opcode on the
     * USB-Serial/JTAG path (esptool #813; sim_usb.c sim_usb_stray) */
    unsigned usb_stray_left, usb_stray_every, usb_stray_cmds;
    uint8_t usb_stray_prev_op;
    struct sim_faults faults;
    struct sim_net net;
    /* parts */
    struct sim_link link;
    struct sim_flash flash;
    struct sim_slip slip;
    /* chip state */
    enum sim_state state;
    bool dtr, rts;       /* asserted (from the modem channel) */
    bool strap_download; /* boot strap latched at the last hardware reset (software resets keep it)
                          */
    bool en_low;
    int64_t boot_sample_at; /* 0 = no timer */
    uint32_t baud;          /* the board's UART baud */
    bool stalled;
    bool want_exit;
    int64_t app_next_line; /* 0 = no app output */
    unsigned app_lines;
    uint32_t app_baud; /* --app-baud: the app's console rate (SIM_INITIAL_BAUD) */
    /* --manual-boot-after MS|signal: the board boots its app at plug-in and later a technician
     * holds BOOT and taps EN (a board on a fixture without DTR/RTS wiring, or a build that
     * asks for "before": "no-reset"): a hardware reset with GPIO0 low, so the ROM prints its
     * download banner ("waiting for download") and its loader answers. At MS ms after start
     * (manual_boot_at), or at SIGUSR1 (sim_board_manual_boot, any mode). */
    bool manual_boot;
    int64_t manual_boot_at; /* 0 = no timer */
    int manual_boot_ms;     /* -1 = signal only */
    unsigned app_syncs;     /* SYNC frames an app ignored (logged) */
    /* session */
    uint32_t last_value; /* stale ROM reply value */
    bool spi_params_set;
    uint32_t spi_total_size;
    bool spi_attached;   /* ROM: SPI_ATTACH seen with the pins the flash is on */
    bool flash_sleeping; /* deep power-down (0xB9 .. 0xAB; --fault flash-asleep at start) */
    struct sim_mem_seg mem[SIM_MAX_MEM_SEGS];
    size_t n_mem;
    struct sim_mem_seg *mem_cur;
    int64_t mem_last_seq;
    struct sim_write_op wr;
    struct sim_read_op rd;
    bool stub_error_pending; /* stub: a background write failed (0xC4, see sim_stub.c) */
    /* stub: its main loop is busy with a data block's flash work until then (the next
     * command is taken, and answered, no earlier); the flash chip: flash.busy_until */
    int64_t stub_cpu_until;
    /* --stub-pipeline off / --stub-erase-ahead off (sim_stub.c) */
    bool stub_sync_writes;
    bool stub_no_erase_ahead;
    /* register file */
    uint32_t *reg_addr, *reg_val;
    size_t n_regs, cap_regs;
    /* deferred replies: staged frames are released at defer_at */
    struct sim_chunk *stage_head, *stage_tail;
    int64_t defer_at; /* 0 = nothing deferred */
    enum sim_post post;
    uint32_t post_arg;
};

/* sim_link.c */
int sim_link_open_pty(struct sim_link *l, double speed);
int sim_link_open_master(struct sim_link *l, int master_fd, double speed);
int sim_link_open_tcp(struct sim_link *l, int port, int *actual_port, double speed);
void sim_link_close(struct sim_link *l);
/* USB re-enumeration (sim_usb.c): closes the pty (the host's fd hangs up) / opens a new one. */
void sim_link_pty_drop(struct sim_link *l);
int sim_link_pty_new(struct sim_link *l);
uint32_t sim_link_host_baud(struct sim_link *l, uint32_t board_baud);
/* Queue raw bytes for transmission at baud. */
void sim_link_send_raw(struct sim_link *l, const uint8_t *data, size_t len, uint32_t baud);
void sim_link_send_chunk(struct sim_link *l, struct sim_chunk *c);
void sim_link_drop_tx(struct sim_link *l);
void sim_link_drop_rx(struct sim_link *l);
/* I/O steps called from the loop. */
int sim_link_read(struct sim_link *l, uint32_t board_baud); /* -1 = link gone (pty) */
void sim_link_advance(struct sim_link *l, int64_t now, uint32_t board_baud);
int sim_link_flush(struct sim_link *l);
int64_t sim_link_next_event(const struct sim_link *l, uint32_t board_baud);
bool sim_link_rx_has_room(const struct sim_link *l);
/* Takes arrived bytes one at a time: returns false when none. */
bool sim_link_rx_pop(struct sim_link *l, uint8_t *byte, bool *garbled, uint32_t *host_baud);
bool sim_link_rx_pending(const struct sim_link *l);
void sim_link_tcp_accept(struct sim_link *l);
struct sim_chunk *sim_chunk_new(const uint8_t *data, size_t len, uint32_t baud);
/* SLIP-encodes pkt into a new chunk; corrupt inserts a bad escape. */
struct sim_chunk *sim_chunk_slip(const uint8_t *pkt, size_t len, uint32_t baud, bool corrupt);

/* sim_baud.c: host baud as set on the pty slave (0 if unknown). */
uint32_t sim_baud_get(int fd);

/* sim_regs.c */
uint32_t sim_regs_read(struct sim *s, uint32_t addr);
void sim_regs_write(struct sim *s, uint32_t addr, uint32_t value, uint32_t mask);
void sim_regs_free(struct sim *s);

/* sim_usb.c */
const char *sim_usb_name(enum sim_usb u);
bool sim_usb_read(const struct sim *s, uint32_t addr, uint32_t *v);
/* true: the write was taken (or refused) here and must not be stored */
bool sim_usb_write(struct sim *s, uint32_t addr, uint32_t nv);
void sim_usb_booted(struct sim *s, bool download, bool usb_reset, bool power_on);
void sim_usb_reenumerate(struct sim *s, const char *why);
bool sim_usb_frame_lost(struct sim *s, size_t len);
bool sim_usb_step(struct sim *s, int64_t now);
void sim_usb_stray(struct sim *s, uint8_t op);

/* sim_board.c */
int sim_board_init(struct sim *s);
void sim_board_free(struct sim *s);
void sim_board_modem(struct sim *s, const char *msg, size_t len);
/* The technician holds BOOT and taps EN (--manual-boot-after, SIGUSR1). */
void sim_board_manual_boot(struct sim *s);
void sim_board_step(struct sim *s, int64_t now);
int64_t sim_board_next_event(const struct sim *s);
void sim_board_reset_session(struct sim *s);
/* sim_net.c: start (after an app boot) / stop (reset, exit) the network persona. */
void sim_net_boot(struct sim *s);
void sim_net_stop(struct sim *s);
void sim_net_step(struct sim *s, int64_t now);
int64_t sim_net_next_event(const struct sim *s);
const char *sim_net_state_to_string(enum sim_net_state st);
/* The app's first console line about the network: 1 = written to line (version and IP, or
 * the failure), 0 = nothing to say (a plain tick line), -1 = hold the tick (still starting). */
int sim_net_app_line(struct sim *s, unsigned ms, char *line, size_t cap);
uint32_t sim_net_app_offset(const struct sim *s);
/* Staging of replies during command handling. */
void sim_reply(struct sim *s, uint8_t op, uint32_t value, const uint8_t *data, size_t data_len,
               uint8_t status, uint8_t error);
void sim_send_raw_frame(struct sim *s, const uint8_t *data, size_t len);
void sim_defer(struct sim *s, int64_t at, enum sim_post post, uint32_t arg);
/* Hands staged frames to the link now and runs the post action (if not deferred). */
void sim_release(struct sim *s);
void sim_mem_free(struct sim *s);
void sim_write_op_end(struct sim *s);

/* sim_write.c: flash write operations shared by both personas. */
enum sim_werr {
    SIM_W_OK = 0,
    SIM_W_FAULT,    /* write-error fault hit */
    SIM_W_BOUNDS,   /* beyond the flash (or the ROM's 2 MB before SPI_SET_PARAMS) */
    SIM_W_TOO_MUCH, /* more data than FLASH_(DEFL_)BEGIN announced */
    SIM_W_INFLATE,  /* zlib stream error */
    SIM_W_ADLER,    /* zlib Adler-32 mismatch */
};
struct sim_data {
    uint32_t dlen, seq;
    const uint8_t *payload;
    size_t plen;
};
enum sim_data_check { SIM_D_OK = 0, SIM_D_SHORT, SIM_D_LEN, SIM_D_CKSUM };
enum sim_data_check sim_data_parse(const uint8_t *body, size_t len, uint32_t cksum,
                                   struct sim_data *d);
uint32_t sim_flash_limit(const struct sim *s);
int sim_write_begin(struct sim *s, bool compressed, uint32_t total, uint32_t nblocks,
                    uint32_t block_size, uint32_t offset);
/* Writes at addr. Stub (wt->stub): erases first what the write needs, waits for the
 * flash, programs; the ROM: programs. Advances wt->t by the time it takes. */
enum sim_werr sim_write_bytes(struct sim *s, uint32_t addr, const uint8_t *data, size_t n,
                              struct sim_wtime *wt);
/* Inflates one compressed chunk and writes the output at offset+pos (stub: through the
 * 32 KiB output buffer, one erase ahead at each inflate step). */
enum sim_werr sim_write_inflate(struct sim *s, const uint8_t *in, size_t n, struct sim_wtime *wt);
/* Stub: starts one erase of the next sector/block without waiting, if the flash is idle
 * at wt->t and erase-ahead is on. */
void sim_write_erase_ahead(struct sim *s, struct sim_wtime *wt);

/* sim_rom.c / sim_stub.c: handle one decoded command frame. */
void sim_rom_command(struct sim *s, uint8_t op, const uint8_t *body, size_t len, uint32_t cksum);
void sim_stub_command(struct sim *s, uint8_t op, const uint8_t *body, size_t len, uint32_t cksum);
void sim_stub_read_ack(struct sim *s, const uint8_t *frame, size_t len);
void sim_stub_read_pump(struct sim *s);
/* shared helpers for both personas (sim_rom.c) */
uint8_t sim_checksum(const uint8_t *data, size_t len);
bool sim_md5(const uint8_t *data, size_t len, uint8_t out[16]);
int sim_mem_begin(struct sim *s, uint32_t size, uint32_t block_size, uint32_t addr);
/* MEM_BEGIN/DATA/END for either persona (stub = stub status codes). */
bool sim_rom_flash_reachable(const struct sim *s);
void sim_rom_mem_command(struct sim *s, uint8_t op, const uint8_t *b, size_t len, uint32_t ck,
                         bool stub);
int sim_mem_data(struct sim *s, uint32_t seq, const uint8_t *data, size_t len);
bool sim_mem_contains(const struct sim *s, uint32_t addr);
bool sim_stub_image_ok(struct sim *s);

static inline uint32_t sim_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint16_t sim_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline void sim_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

#endif
