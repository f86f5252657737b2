/*
 * umock_station: a umockdev testbed that plays the USB hub of a station.
 *
 *   umockdev-wrapper umock_station --sim ESP_SIM --workdir DIR [--ctl FIFO|-] [--no-fixup]
 *                    -- PROG ARGS...
 *
 * The program under test (espstationd, devsrc_probe) runs inside the testbed:
 * it sees USB-serial boards appear and vanish through its real libudev
 * monitor and talks to them through the real serial path (libserialport or
 * termios). Each board is a virtual ESP board (esp_sim --master-fd) on the
 * pty umockdev made for the mock /dev node.
 *
 * The hybrid recipe (shared/examples/umockdev-hybrid): an ioctl handler per
 * board emulates only the modem-line ioctls (TIOCMGET/TIOCMSET/TIOCMBIS/
 * TIOCMBIC) and TIOCGSERIAL/TIOCSSERIAL; every other ioctl runs on the real
 * pty (umockdev_ioctl_client_execute), read/write fall through. Each modem
 * line change is sent to the board's sim as "DTR=<0|1> RTS=<0|1>\n" on
 * DIR/<board>/tty.modem and appended to DIR/<board>/modem.log with a
 * timestamp: the DTR/RTS timeline the tests assert.
 *
 * Commands, one per line, from the FIFO DIR/ctl (or stdin with --ctl -),
 * executed in order; each is acknowledged in DIR/umock.log (and stdout).
 * Log times are ms since the harness started; the "ready" line gives that
 * origin on CLOCK_MONOTONIC (t0_mono_us=), and "uevent add NAME DEVNODE
 * since=MS" brackets the board's add uevents (sent between since= and the
 * line's own time, before the board's sim is up).
 *   add NAME CHIP VID:PID ID_PATH [+tag=T] [+serial=S] [+nosim] [esp_sim args...]
 *                        (add NAME ... of a removed board plugs it in again
 *                        as it was; the rest of the line is ignored)
 *   remove NAME          hang up the port (the host sees EIO/HUP), stop the
 *                        board's sim, send the remove uevent, drop the sysfs
 *   reenumerate NAME     remove + add again: same ID_PATH and board dir (the
 *                        flash persists), new tty number
 *   start                spawn PROG (again, after it exited: a restart)
 *   signal SIG           send SIG (TERM, KILL, INT, HUP or a number) to PROG
 *   waitexit MS          wait until PROG has exited (at most MS)
 *   wait MS              pause command processing
 *   sync TOKEN           just acknowledge (lets a test know all before ran)
 *   quit                 SIGTERM PROG, wait, stop all sims, exit with PROG's
 *                        status (128+signal if it died of one)
 *
 * Invariants / gotchas (README of the example):
 *  - The testbed is created before anything else (umockdev_in_mock_environment
 *    caches its first answer) and TMPDIR points to a short directory under
 *    /tmp before that (linked as WORKDIR/tmp): the testbed's per-device
 *    ioctl sockets must fit in sun_path.
 *  - The handler is attached before the device is added (adding sends the
 *    uevent at once). It runs on umockdev's worker thread: all board state
 *    is under one mutex and the handler never blocks.
 *  - The program may open the port before the board's sim is up. Modem-line
 *    ioctls of a board whose sim is not ready yet are completed later (like
 *    a slow USB control transfer), so no reset edge is ever lost.
 *  - An ioctl handler is never detached while the program may still hold
 *    the fd (the preload aborts the program when its ioctl socket closes);
 *    they stay attached until exit. umockdev keeps a dev node name forever
 *    in its table, so tty numbers are never reused.
 *  - Sims run without LD_PRELOAD/UMOCKDEV_DIR: they are the hardware side.
 *  - --jtag-reenumerate-on-reset: boards added as 303a:1001 behave like the
 *    ESP USB-Serial/JTAG peripheral. The download reset (DTR set while RTS
 *    rises, then both released) reaches the sim as the classic BOOT-low
 *    release, and a reset into the app (EN released, no download latch) makes
 *    the chip drop off USB: the board is re-enumerated on its own (same
 *    ID_PATH and flash, new ttyACM number), logged as "auto-reenumerate".
 *  - The program runs with libumock_fixup.so (next to this binary) preloaded
 *    in front of umockdev's preload: it answers realpath("/dev/ttyUSBn") like
 *    a real device node would (umock_fixup.c says why); --no-fixup drops it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib-unix.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <umockdev.h>

/* The kernel's termios ioctls and modem bits; glibc's <termios.h> is not
 * included so the two definitions do not clash. */
#include <asm/termbits.h>
#include <linux/serial.h>

#define READY_TIMEOUT_MS 20000
#define SIM_STOP_TIMEOUT_MS 5000
#define PROG_STOP_TIMEOUT_MS 20000

struct pending_ioctl {
    UMockdevIoctlClient *client; /* ref */
    UMockdevIoctlData *data;     /* ref, NULL for none */
    gulong request;
    unsigned value;
};

struct board {
    char *name, *chip, *id_path, *tag, *serial;
    char **sim_args; /* extra esp_sim args, NULL-terminated */
    guint16 vid, pid;
    bool acm;     /* cdc_acm (Espressif native USB): ttyACMn, else ttyUSBn */
    bool nosim;   /* no board behind the port */
    bool jtag;    /* 303a:1001 with --jtag-reenumerate-on-reset */
    bool jtag_dl; /* (state_lock) USB-JTAG download latch: DTR was set when EN went low */
    char *dir;    /* DIR/NAME */
    /* current incarnation (changes on reenumerate) */
    char devnode[64];
    char *usb_syspath, *intf_syspath, *serial_syspath, *tty_syspath;
    int master_fd; /* owned by the testbed */
    int keep_slave;
    GPid sim_pid;
    UMockdevIoctlBase *handler; /* current; old ones stay attached (see top) */
    /* shared with the handler thread, under state_lock */
    bool present; /* plugged in (false after remove) */
    bool ready;   /* sim answers on tty.modem */
    unsigned mctrl;
    GPtrArray *pending; /* struct pending_ioctl *, modem ioctls waiting for the sim */
    FILE *modem_log;
    struct sockaddr_un modem_addr;
};

/* A handler's view of its board: which incarnation it was attached for. */
struct handler_ctx {
    struct board *b;
    unsigned incarnation;
};

static GMutex state_lock;
static UMockdevTestbed *tb;
static gint64 t0;
static const char *sim_path, *workdir;
static char **prog_argv;
static GPid prog_pid;
static bool prog_running;
static int prog_status = -1;
static FILE *umock_log;
static char *program_log;
static char *fixup_path;   /* libumock_fixup.so next to this binary, NULL = none */
static GHashTable *boards; /* name -> struct board * */
static GQueue cmd_queue = G_QUEUE_INIT;
static GString *ctl_buf;
static guint wait_source;
static gint64 waitexit_deadline;
static GMainLoop *loop;
static bool quitting;
static int modem_sock = -1;
static unsigned next_usb_port = 1, next_ttyusb, next_ttyacm;
static GHashTable *incarnations; /* board name -> current incarnation (GUINT) */
static bool jtag_reenum;         /* --jtag-reenumerate-on-reset */

struct jtag_ev {
    struct board *b;
    unsigned incarnation;
};
static gboolean jtag_release(gpointer ud);
static gboolean jtag_reenumerate(gpointer ud);

static double ms_now(void)
{
    return (double)(g_get_monotonic_time() - t0) / 1000.0;
}

static void say(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static void say(const char *fmt, ...)
{
    va_list ap;
    char line[2048];
    va_start(ap, fmt);
    g_vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(umock_log, "%.1f %s\n", ms_now(), line);
    fflush(umock_log);
    printf("%s\n", line);
    fflush(stdout);
}

/* ---- modem lines (handler thread, and main thread for deferred ones) ----- */

static bool en_low(unsigned m)
{
    return (m & TIOCM_RTS) && !(m & TIOCM_DTR);
}

static bool boot_low(unsigned m)
{
    return (m & TIOCM_DTR) && !(m & TIOCM_RTS);
}

/* Applies a modem-line request; called with state_lock held. */
static void apply_modem(struct board *b, gulong req, unsigned v)
{
    unsigned old = b->mctrl;
    const char *op = "TIOCMSET";
    if (req == TIOCMBIS) {
        b->mctrl |= v;
        op = "TIOCMBIS";
    } else if (req == TIOCMBIC) {
        b->mctrl &= ~v;
        op = "TIOCMBIC";
    } else {
        b->mctrl = v;
    }
    b->mctrl &= TIOCM_DTR | TIOCM_RTS;
    if (b->mctrl == old)
        return;
    int dtr = !!(b->mctrl & TIOCM_DTR), rts = !!(b->mctrl & TIOCM_RTS);
    bool jtag_boot_dl = false;
    if (b->jtag) {
        if (en_low(b->mctrl) && !en_low(old))
            b->jtag_dl = (old & TIOCM_DTR) != 0; /* through (1,1): download requested */
        if (!en_low(b->mctrl) && en_low(old)) {
            struct jtag_ev *e = g_new0(struct jtag_ev, 1);
            e->b = b;
            e->incarnation = GPOINTER_TO_UINT(g_hash_table_lookup(incarnations, b->name));
            if (b->jtag_dl && !boot_low(b->mctrl)) {
                /* the peripheral holds BOOT low while the chip samples it */
                jtag_boot_dl = true;
                g_timeout_add(30, jtag_release, e);
            } else if (!boot_low(b->mctrl)) {
                g_timeout_add(30, jtag_reenumerate, e); /* the app boots: USB drops */
            } else {
                g_free(e);
            }
            b->jtag_dl = false;
        }
    }
    if (b->modem_log) {
        fprintf(b->modem_log, "%.3f DTR=%d RTS=%d EN=%s BOOT=%s %s %s\n", ms_now(), dtr, rts,
                en_low(b->mctrl) ? "low" : "high", boot_low(b->mctrl) ? "low" : "high", op,
                b->devnode);
        fflush(b->modem_log);
    }
    if (!b->nosim && modem_sock >= 0) {
        char msg[32];
        int n = jtag_boot_dl ? g_snprintf(msg, sizeof(msg), "DTR=1 RTS=0\n")
                             : g_snprintf(msg, sizeof(msg), "DTR=%d RTS=%d\n", dtr, rts);
        /* non-blocking datagram: never waits; a vanished sim just misses it */
        (void)sendto(modem_sock, msg, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&b->modem_addr,
                     sizeof(b->modem_addr));
    }
}

static void complete_modem(struct board *b, UMockdevIoctlClient *c, UMockdevIoctlData *d,
                           gulong req, unsigned v)
{
    if (req == TIOCMGET) {
        unsigned out = b->mctrl | TIOCM_CTS | TIOCM_DSR | TIOCM_CD;
        umockdev_ioctl_data_update(d, 0, (guint8 *)&out, sizeof(out));
    } else {
        apply_modem(b, req, v);
    }
    umockdev_ioctl_client_complete(c, 0, 0);
}

static UMockdevIoctlData *resolve_arg(UMockdevIoctlClient *c, gsize len)
{
    GError *err = NULL;
    UMockdevIoctlData *d =
        umockdev_ioctl_data_resolve(umockdev_ioctl_client_get_arg(c), 0, len, &err);
    g_clear_error(&err);
    return d;
}

static gboolean on_ioctl(UMockdevIoctlBase *h, UMockdevIoctlClient *c, gpointer ud)
{
    (void)h;
    struct handler_ctx *hc = ud;
    struct board *b = hc->b;
    gulong req = umockdev_ioctl_client_get_request(c);

    if (req == TIOCMGET || req == TIOCMSET || req == TIOCMBIS || req == TIOCMBIC) {
        UMockdevIoctlData *d = resolve_arg(c, sizeof(int));
        if (!d) {
            umockdev_ioctl_client_complete(c, -1, EFAULT);
            return TRUE;
        }
        unsigned v;
        memcpy(&v, d->data, sizeof(v));
        g_mutex_lock(&state_lock);
        unsigned cur = GPOINTER_TO_UINT(g_hash_table_lookup(incarnations, b->name));
        if (!b->present || cur != hc->incarnation) {
            g_mutex_unlock(&state_lock);
            g_object_unref(d);
            umockdev_ioctl_client_complete(c, -1, EIO); /* unplugged: like a hung-up tty */
            return TRUE;
        }
        if (!b->ready) {
            struct pending_ioctl *p = g_new0(struct pending_ioctl, 1);
            p->client = g_object_ref(c);
            p->data = d;
            p->request = req;
            p->value = v;
            g_ptr_array_add(b->pending, p);
            g_mutex_unlock(&state_lock);
            return TRUE; /* completed by the main thread once the sim is up */
        }
        complete_modem(b, c, d, req, v);
        g_mutex_unlock(&state_lock);
        g_object_unref(d);
        return TRUE;
    }
    if (req == TIOCGSERIAL) {
        struct serial_struct ss;
        memset(&ss, 0, sizeof(ss));
        ss.type = PORT_16550A;
        ss.baud_base = 3000000;
        ss.xmit_fifo_size = 512;
        UMockdevIoctlData *d = resolve_arg(c, sizeof(ss));
        if (!d) {
            umockdev_ioctl_client_complete(c, -1, EFAULT);
            return TRUE;
        }
        umockdev_ioctl_data_update(d, 0, (guint8 *)&ss, sizeof(ss));
        g_object_unref(d);
        umockdev_ioctl_client_complete(c, 0, 0);
        return TRUE;
    }
    if (req == TIOCSSERIAL) {
        umockdev_ioctl_client_complete(c, 0, 0);
        return TRUE;
    }
    /* everything else (termios, flush, exclusive, FIONREAD...) on the real pty */
    GError *err = NULL;
    int eno = 0;
    int ret = umockdev_ioctl_client_execute(c, &eno, &err);
    g_clear_error(&err);
    umockdev_ioctl_client_complete(c, ret, ret < 0 ? eno : 0);
    return TRUE;
}

static gboolean on_rw(UMockdevIoctlBase *h, UMockdevIoctlClient *c, gpointer ud)
{
    (void)h;
    (void)c;
    (void)ud;
    return FALSE; /* read/write go to the real pty */
}

static void flush_pending(struct board *b, bool fail)
{
    g_mutex_lock(&state_lock);
    for (guint i = 0; i < b->pending->len; i++) {
        struct pending_ioctl *p = g_ptr_array_index(b->pending, i);
        if (fail)
            umockdev_ioctl_client_complete(p->client, -1, EIO);
        else
            complete_modem(b, p->client, p->data, p->request, p->value);
        g_object_unref(p->data);
        g_object_unref(p->client);
        g_free(p);
    }
    g_ptr_array_set_size(b->pending, 0);
    g_mutex_unlock(&state_lock);
}

/* ---- boards ------------------------------------------------------------------ */

static const char *product_of(guint16 vid, guint16 pid)
{
    if (vid == 0x10c4)
        return "CP2102 USB to UART Bridge Controller";
    if (vid == 0x1a86 && pid == 0x55d4)
        return "USB Single Serial";
    if (vid == 0x1a86)
        return "USB2.0-Serial";
    if (vid == 0x0403)
        return "FT232R USB UART";
    if (vid == 0x067b)
        return "USB-Serial Controller";
    if (vid == 0x303a && pid == 0x1001)
        return "USB JTAG/serial debug unit";
    if (vid == 0x303a)
        return "Espressif Device";
    return "Generic USB Serial";
}

static const char *driver_of(guint16 vid, bool acm)
{
    if (acm)
        return "cdc_acm";
    switch (vid) {
    case 0x10c4:
        return "cp210x";
    case 0x1a86:
        return "ch341";
    case 0x0403:
        return "ftdi_sio";
    case 0x067b:
        return "pl2303";
    default:
        return "usbserial_generic";
    }
}

static bool wait_for_file(const char *path, int timeout_ms)
{
    gint64 end = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    while (g_get_monotonic_time() < end) {
        if (g_file_test(path, G_FILE_TEST_EXISTS))
            return true;
        g_usleep(2000);
    }
    return false;
}

static bool start_sim(struct board *b)
{
    char *ready = g_build_filename(b->dir, "ready", NULL);
    g_unlink(ready);
    /* A re-plugged board's new sim starts a new sim.log: keep the earlier
     * incarnations' as sim.log.1, sim.log.2, ... (tests read the whole history). */
    char *simlog = g_build_filename(b->dir, "sim.log", NULL);
    for (int i = 1; i < 1000 && g_file_test(simlog, G_FILE_TEST_EXISTS); i++) {
        char *kept = g_strdup_printf("%s.%d", simlog, i);
        if (!g_file_test(kept, G_FILE_TEST_EXISTS)) {
            (void)g_rename(simlog, kept);
            g_free(kept);
            break;
        }
        g_free(kept);
    }
    g_free(simlog);
    GPtrArray *av = g_ptr_array_new();
    g_ptr_array_add(av, (gpointer)sim_path);
    g_ptr_array_add(av, (gpointer) "--chip");
    g_ptr_array_add(av, b->chip);
    g_ptr_array_add(av, (gpointer) "--dir");
    g_ptr_array_add(av, b->dir);
    g_ptr_array_add(av, (gpointer) "--master-fd");
    g_ptr_array_add(av, (gpointer) "3");
    for (char **a = b->sim_args; a && *a; a++)
        g_ptr_array_add(av, *a);
    g_ptr_array_add(av, NULL);

    char **env = g_get_environ();
    env = g_environ_unsetenv(env, "LD_PRELOAD");
    env = g_environ_unsetenv(env, "UMOCKDEV_DIR");
    char *errpath = g_build_filename(b->dir, "sim.stderr", NULL);
    int errfd = open(errpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    int src_fds[1] = {b->master_fd};
    int dst_fds[1] = {3};
    GError *err = NULL;
    bool ok = g_spawn_async_with_pipes_and_fds(NULL, (const char *const *)av->pdata,
                                               (const char *const *)env, G_SPAWN_DO_NOT_REAP_CHILD,
                                               NULL, NULL, nullfd, nullfd, errfd, src_fds, dst_fds,
                                               1, &b->sim_pid, NULL, NULL, NULL, &err);
    if (errfd >= 0)
        close(errfd);
    if (nullfd >= 0)
        close(nullfd);
    g_free(errpath);
    g_strfreev(env);
    g_ptr_array_free(av, TRUE);
    if (!ok) {
        say("error add %s: cannot start esp_sim: %s", b->name, err->message);
        g_clear_error(&err);
        g_free(ready);
        b->sim_pid = 0;
        return false;
    }
    ok = wait_for_file(ready, READY_TIMEOUT_MS);
    g_free(ready);
    if (!ok) {
        say("error add %s: esp_sim did not get ready (see %s/sim.stderr)", b->name, b->dir);
        return false;
    }
    return true;
}

static void stop_sim(struct board *b)
{
    if (b->sim_pid <= 0)
        return;
    kill(b->sim_pid, SIGTERM);
    gint64 end = g_get_monotonic_time() + SIM_STOP_TIMEOUT_MS * 1000;
    int st;
    for (;;) {
        pid_t r = waitpid(b->sim_pid, &st, WNOHANG);
        if (r == b->sim_pid || (r < 0 && errno != EINTR))
            break;
        if (g_get_monotonic_time() > end) {
            kill(b->sim_pid, SIGKILL);
            waitpid(b->sim_pid, &st, 0);
            break;
        }
        g_usleep(2000);
    }
    b->sim_pid = 0;
}

/* Builds the usb_device -> usb_interface -> [usb-serial ->] tty chain. */
static char *describe(struct board *b, unsigned port, unsigned ttynum)
{
    char vid[8], pid[8];
    g_snprintf(vid, sizeof(vid), "%04x", b->vid);
    g_snprintf(pid, sizeof(pid), "%04x", b->pid);
    const char *drv = driver_of(b->vid, b->acm);
    char *usb = g_strdup_printf("/devices/pci0000:00/0000:00:14.0/usb1/1-%u", port);
    char *intf = g_strdup_printf("%s/1-%u:1.0", usb, port);
    char *intf_name = g_strdup_printf("1-%u:1.0", port);
    char *tty = g_strdup_printf("ttyUSB%u", ttynum);
    if (b->acm) {
        g_free(tty);
        tty = g_strdup_printf("ttyACM%u", ttynum);
    }
    GString *s = g_string_new(NULL);
    g_string_append_printf(s,
                           "P: %s\nE: SUBSYSTEM=usb\nE: DEVTYPE=usb_device\nE: DRIVER=usb\n"
                           "E: BUSNUM=001\nE: DEVNUM=%03u\nE: ID_VENDOR_ID=%s\nE: ID_MODEL_ID=%s\n"
                           "E: ID_SERIAL_SHORT=%s\nA: idVendor=%s\nA: idProduct=%s\nA: serial=%s\n"
                           "A: manufacturer=umock\nA: product=%s\nA: busnum=1\nA: devnum=%u\n"
                           "A: speed=12\n\n",
                           usb, port + 1, vid, pid, b->serial, vid, pid, b->serial,
                           product_of(b->vid, b->pid), port + 1);
    g_string_append_printf(
        s,
        "P: %s\nE: SUBSYSTEM=usb\nE: DEVTYPE=usb_interface\nE: DRIVER=%s\n"
        "E: INTERFACE=255/0/0\nA: bInterfaceNumber=00\nA: bInterfaceClass=ff\n\n",
        intf, drv);
    char *parent;
    if (b->acm) {
        parent = g_strdup(intf);
    } else {
        parent = g_strdup_printf("%s/%s", intf, tty);
        g_string_append_printf(
            s, "P: %s\nE: SUBSYSTEM=usb-serial\nE: DRIVER=%s\nA: port_number=0\n\n", parent, drv);
    }
    char *ttyp = g_strdup_printf("%s/tty/%s", parent, tty);
    g_string_append_printf(s,
                           "P: %s\nN: %s\nE: SUBSYSTEM=tty\nE: DEVNAME=/dev/%s\nE: MAJOR=%u\n"
                           "E: MINOR=%u\nE: ID_PATH=%s\nE: ID_VENDOR_ID=%s\nE: ID_MODEL_ID=%s\n"
                           "E: ID_SERIAL_SHORT=%s\nE: ID_BUS=usb\n",
                           ttyp, tty, tty, b->acm ? 166u : 188u, ttynum, b->id_path, vid, pid,
                           b->serial);
    if (b->tag)
        g_string_append_printf(s, "E: TAGS=:%s:\nE: CURRENT_TAGS=:%s:\n", b->tag, b->tag);
    /* libserialport walks /sys/class/tty/X/device/../.. for the USB ids */
    g_string_append_printf(s, "A: dev=%u:%u\nL: device=../../../%s\n", b->acm ? 166u : 188u, ttynum,
                           b->acm ? intf_name : tty);

    g_free(b->usb_syspath);
    g_free(b->intf_syspath);
    g_free(b->serial_syspath);
    g_free(b->tty_syspath);
    b->usb_syspath = g_strdup_printf("/sys%s", usb);
    b->intf_syspath = g_strdup_printf("/sys%s", intf);
    b->serial_syspath = b->acm ? NULL : g_strdup_printf("/sys%s", parent);
    b->tty_syspath = g_strdup_printf("/sys%s", ttyp);
    g_snprintf(b->devnode, sizeof(b->devnode), "/dev/%s", tty);
    g_free(usb);
    g_free(intf);
    g_free(intf_name);
    g_free(tty);
    g_free(parent);
    g_free(ttyp);
    return g_string_free(s, FALSE);
}

/* Plugs in the board's current incarnation. */
static bool plug(struct board *b)
{
    unsigned port = next_usb_port++;
    unsigned ttynum = b->acm ? next_ttyacm++ : next_ttyusb++;
    char *desc = describe(b, port, ttynum);

    g_mutex_lock(&state_lock);
    unsigned inc = GPOINTER_TO_UINT(g_hash_table_lookup(incarnations, b->name)) + 1;
    g_hash_table_insert(incarnations, g_strdup(b->name), GUINT_TO_POINTER(inc));
    b->present = true;
    b->ready = b->nosim;              /* without a sim, modem ioctls complete at once */
    b->mctrl = TIOCM_DTR | TIOCM_RTS; /* a tty raises both on open (HUPCL) */
    g_mutex_unlock(&state_lock);

    struct handler_ctx *hc = g_new0(struct handler_ctx, 1);
    hc->b = b;
    hc->incarnation = inc;
    UMockdevIoctlBase *h = umockdev_ioctl_base_new();
    g_signal_connect(h, "handle-ioctl", G_CALLBACK(on_ioctl), hc);
    g_signal_connect(h, "handle-read", G_CALLBACK(on_rw), hc);
    g_signal_connect(h, "handle-write", G_CALLBACK(on_rw), hc);
    GError *err = NULL;
    if (!umockdev_testbed_attach_ioctl(tb, b->devnode, h, &err)) {
        say("error add %s: attach_ioctl %s: %s", b->name, b->devnode, err->message);
        g_clear_error(&err);
        g_free(desc);
        return false;
    }
    b->handler = h; /* kept (and attached) until exit */

    double t_uevent = ms_now();
    if (!umockdev_testbed_add_from_string(tb, desc, &err)) {
        say("error add %s: %s", b->name, err->message);
        g_clear_error(&err);
        g_free(desc);
        return false;
    }
    /* the add uevents went out between since= and this line's time */
    say("uevent add %s %s since=%.1f", b->name, b->devnode, t_uevent);
    g_free(desc);
    b->master_fd = umockdev_testbed_get_dev_fd(tb, b->devnode);
    if (b->master_fd < 0) {
        say("error add %s: no pty for %s", b->name, b->devnode);
        return false;
    }
    /* Until a slave is open the master polls HUP and reads give EIO. */
    b->keep_slave = open(ptsname(b->master_fd), O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (!b->nosim && !start_sim(b))
        return false;
    g_mutex_lock(&state_lock);
    b->ready = true;
    g_mutex_unlock(&state_lock);
    flush_pending(b, false);
    return true;
}

/* Unplugs the board's current incarnation. */
static void unplug(struct board *b)
{
    g_mutex_lock(&state_lock);
    b->present = false;
    b->ready = false;
    g_mutex_unlock(&state_lock);
    flush_pending(b, true);
    stop_sim(b);
    /* Hang up the port: the testbed's master fd is the last one open now;
     * replace it by /dev/null (the testbed closes that number at exit). */
    if (b->master_fd >= 0) {
        char pts[64] = "";
        if (ptsname_r(b->master_fd, pts, sizeof(pts)) != 0)
            pts[0] = '\0';
        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (nul >= 0) {
            dup3(nul, b->master_fd, O_CLOEXEC);
            close(nul);
        }
        b->master_fd = -1;
        /* umockdev maps each pty to the fake major:minor in dev/.ptymap and
         * does not forget it on remove; the pty number is free again now
         * and the next openpty() may get it, so drop the stale entry. */
        if (pts[0]) {
            g_strdelimit(pts, "/", '_');
            char *map =
                g_build_filename(umockdev_testbed_get_root_dir(tb), "dev", ".ptymap", pts, NULL);
            g_unlink(map);
            g_free(map);
        }
    }
    if (b->keep_slave >= 0) {
        close(b->keep_slave);
        b->keep_slave = -1;
    }
    /* The remove uevent is built from sysfs, so it goes out before the
     * device is dropped; the program sees sysfs already gone, as on real
     * hardware. */
    umockdev_testbed_uevent(tb, b->tty_syspath, "remove");
    umockdev_testbed_remove_device(tb, b->tty_syspath);
    if (b->serial_syspath)
        umockdev_testbed_remove_device(tb, b->serial_syspath);
    umockdev_testbed_uevent(tb, b->intf_syspath, "remove");
    umockdev_testbed_remove_device(tb, b->intf_syspath);
    umockdev_testbed_uevent(tb, b->usb_syspath, "remove");
    umockdev_testbed_remove_device(tb, b->usb_syspath);
}

static bool parse_vidpid(const char *s, guint16 *vid, guint16 *pid)
{
    unsigned v, p;
    char extra;
    if (sscanf(s, "%x:%x%c", &v, &p, &extra) != 2 || v > 0xffff || p > 0xffff)
        return false;
    *vid = (guint16)v;
    *pid = (guint16)p;
    return true;
}

static void cmd_add(char **w, int n)
{
    if (n < 2) {
        say("error add: usage: add NAME CHIP VID:PID ID_PATH [+tag=T] [+serial=S] [+nosim] "
            "[esp_sim args]");
        return;
    }
    struct board *old = g_hash_table_lookup(boards, w[1]);
    if (old && old->present) {
        say("error add %s: already plugged in", w[1]);
        return;
    }
    if (old) {
        /* re-plug an unplugged board: same ID_PATH, dir (flash) and sim args */
        if (plug(old))
            say("ok add %s %s %s sim_pid=%d", old->name, old->devnode, old->tty_syspath,
                (int)old->sim_pid);
        return;
    }
    if (n < 5) {
        say("error add: usage: add NAME CHIP VID:PID ID_PATH [+tag=T] [+serial=S] [+nosim] "
            "[esp_sim args]");
        return;
    }
    struct board *b = g_new0(struct board, 1);
    b->master_fd = b->keep_slave = -1;
    b->name = g_strdup(w[1]);
    b->chip = g_strdup(w[2]);
    if (!parse_vidpid(w[3], &b->vid, &b->pid)) {
        say("error add %s: bad VID:PID '%s'", w[1], w[3]);
        g_free(b->name);
        g_free(b->chip);
        g_free(b);
        return;
    }
    b->id_path = g_strdup(w[4]);
    b->acm = b->vid == 0x303a;
    b->jtag = jtag_reenum && b->vid == 0x303a && b->pid == 0x1001;
    GPtrArray *sa = g_ptr_array_new();
    for (int i = 5; i < n; i++) {
        if (g_str_has_prefix(w[i], "+tag="))
            b->tag = g_strdup(w[i] + 5);
        else if (g_str_has_prefix(w[i], "+serial="))
            b->serial = g_strdup(w[i] + 8);
        else if (strcmp(w[i], "+nosim") == 0)
            b->nosim = true;
        else
            g_ptr_array_add(sa, g_strdup(w[i]));
    }
    g_ptr_array_add(sa, NULL);
    b->sim_args = (char **)g_ptr_array_free(sa, FALSE);
    if (!b->serial)
        b->serial = g_strdup_printf("UMOCK-%s", b->name);
    b->dir = g_build_filename(workdir, b->name, NULL);
    g_mkdir_with_parents(b->dir, 0755);
    char *ml = g_build_filename(b->dir, "modem.log", NULL);
    b->modem_log = fopen(ml, "a");
    g_free(ml);
    char *mp = g_build_filename(b->dir, "tty.modem", NULL);
    b->modem_addr.sun_family = AF_UNIX;
    g_strlcpy(b->modem_addr.sun_path, mp, sizeof(b->modem_addr.sun_path));
    g_free(mp);
    b->pending = g_ptr_array_new();
    g_hash_table_insert(boards, g_strdup(b->name), b);
    if (plug(b))
        say("ok add %s %s %s sim_pid=%d", b->name, b->devnode, b->tty_syspath, (int)b->sim_pid);
}

static struct board *find_board(const char *cmd, char **w, int n)
{
    if (n < 2) {
        say("error %s: usage: %s NAME", cmd, cmd);
        return NULL;
    }
    struct board *b = g_hash_table_lookup(boards, w[1]);
    if (!b)
        say("error %s %s: no such board", cmd, w[1]);
    return b;
}

static void cmd_remove(char **w, int n)
{
    struct board *b = find_board("remove", w, n);
    if (!b)
        return;
    if (!b->present) {
        say("error remove %s: not plugged in", b->name);
        return;
    }
    unplug(b);
    say("ok remove %s %s", b->name, b->devnode);
}

static void cmd_reenumerate(char **w, int n)
{
    struct board *b = find_board("reenumerate", w, n);
    if (!b)
        return;
    char old[64];
    g_strlcpy(old, b->devnode, sizeof(old));
    if (b->present)
        unplug(b);
    if (plug(b))
        say("ok reenumerate %s %s -> %s sim_pid=%d", b->name, old, b->devnode, (int)b->sim_pid);
}

static void on_prog_exit(GPid pid, gint status, gpointer ud);

static bool jtag_current(struct jtag_ev *e)
{
    unsigned cur = GPOINTER_TO_UINT(g_hash_table_lookup(incarnations, e->b->name));
    return e->b->present && cur == e->incarnation;
}

/* USB-JTAG download reset: the latch lets go of BOOT once the chip sampled it. */
static gboolean jtag_release(gpointer ud)
{
    struct jtag_ev *e = ud;
    g_mutex_lock(&state_lock);
    if (jtag_current(e) && !e->b->nosim && modem_sock >= 0) {
        char msg[32];
        int n = g_snprintf(msg, sizeof(msg), "DTR=%d RTS=%d\n", !!(e->b->mctrl & TIOCM_DTR),
                           !!(e->b->mctrl & TIOCM_RTS));
        (void)sendto(modem_sock, msg, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&e->b->modem_addr,
                     sizeof(e->b->modem_addr));
    }
    g_mutex_unlock(&state_lock);
    g_free(e);
    return G_SOURCE_REMOVE;
}

/* USB-JTAG reset into the app: the chip drops off USB and comes back. */
static gboolean jtag_reenumerate(gpointer ud)
{
    struct jtag_ev *e = ud;
    g_mutex_lock(&state_lock);
    bool cur = jtag_current(e);
    g_mutex_unlock(&state_lock);
    if (cur && !quitting) {
        struct board *b = e->b;
        char old[64];
        g_strlcpy(old, b->devnode, sizeof(old));
        unplug(b);
        if (plug(b))
            say("ok auto-reenumerate %s %s -> %s sim_pid=%d", b->name, old, b->devnode,
                (int)b->sim_pid);
    }
    g_free(e);
    return G_SOURCE_REMOVE;
}

static void cmd_start(void)
{
    if (prog_running) {
        say("error start: already running (pid %d)", (int)prog_pid);
        return;
    }
    int fd = open(program_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    char **env = g_get_environ();
    if (fixup_path) {
        /* our shim first, so its realpath() wraps umockdev's */
        const char *pre = g_environ_getenv(env, "LD_PRELOAD");
        char *np = g_strdup_printf("%s%s%s", fixup_path, pre ? ":" : "", pre ? pre : "");
        env = g_environ_setenv(env, "LD_PRELOAD", np, TRUE);
        g_free(np);
    }
    GError *err = NULL;
    bool ok = g_spawn_async_with_pipes_and_fds(
        NULL, (const char *const *)prog_argv, (const char *const *)env,
        G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_SEARCH_PATH, NULL, NULL, nullfd, fd, fd, NULL, NULL, 0,
        &prog_pid, NULL, NULL, NULL, &err);
    g_strfreev(env);
    if (fd >= 0)
        close(fd);
    if (nullfd >= 0)
        close(nullfd);
    if (!ok) {
        say("error start: %s", err->message);
        g_clear_error(&err);
        return;
    }
    prog_running = true;
    g_child_watch_add(prog_pid, on_prog_exit, NULL);
    say("ok start pid=%d", (int)prog_pid);
}

static int parse_signal(const char *s)
{
    static const struct {
        const char *name;
        int sig;
    } sigs[] = {{"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT},
                {"HUP", SIGHUP},   {"STOP", SIGSTOP}, {"CONT", SIGCONT}};
    if (g_str_has_prefix(s, "SIG"))
        s += 3;
    for (size_t i = 0; i < G_N_ELEMENTS(sigs); i++)
        if (strcmp(s, sigs[i].name) == 0)
            return sigs[i].sig;
    char *end;
    long v = strtol(s, &end, 10);
    return (*s && !*end && v > 0 && v < 65) ? (int)v : -1;
}

static void process_queue(void);

static gboolean wait_done(gpointer ud)
{
    (void)ud;
    wait_source = 0;
    process_queue();
    return G_SOURCE_REMOVE;
}

static gboolean waitexit_poll(gpointer ud)
{
    (void)ud;
    if (!prog_running || g_get_monotonic_time() >= waitexit_deadline) {
        if (prog_running)
            say("error waitexit: still running (pid %d)", (int)prog_pid);
        else
            say("ok waitexit status=%d", prog_status);
        wait_source = 0;
        process_queue();
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static void finish(void)
{
    /* the program is gone: stop every board, then leave */
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, boards);
    while (g_hash_table_iter_next(&it, &k, &v))
        stop_sim(v);
    g_main_loop_quit(loop);
}

static void on_prog_exit(GPid pid, gint status, gpointer ud)
{
    (void)ud;
    g_spawn_close_pid(pid);
    prog_running = false;
    if (WIFEXITED(status))
        prog_status = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        prog_status = 128 + WTERMSIG(status);
    else
        prog_status = 1;
    say("exited pid=%d status=%d", (int)pid, prog_status);
    if (quitting)
        finish();
}

static gboolean quit_timeout(gpointer ud)
{
    (void)ud;
    if (prog_running) {
        say("quit: program did not stop, SIGKILL");
        kill(prog_pid, SIGKILL);
    }
    return G_SOURCE_REMOVE;
}

static void cmd_quit(void)
{
    quitting = true;
    if (!prog_running) {
        finish();
        return;
    }
    kill(prog_pid, SIGTERM);
    g_timeout_add(PROG_STOP_TIMEOUT_MS, quit_timeout, NULL);
}

/* Runs queued commands until one has to wait (wait, waitexit) or quit. */
static void process_queue(void)
{
    char *line;
    while (!wait_source && !quitting && (line = g_queue_pop_head(&cmd_queue)) != NULL) {
        char **w = NULL;
        int n = 0;
        g_strstrip(line);
        if (!*line || line[0] == '#' || !g_shell_parse_argv(line, &n, &w, NULL)) {
            if (*line && line[0] != '#')
                say("error: cannot parse '%s'", line);
            g_free(line);
            continue;
        }
        if (strcmp(w[0], "add") == 0) {
            cmd_add(w, n);
        } else if (strcmp(w[0], "remove") == 0) {
            cmd_remove(w, n);
        } else if (strcmp(w[0], "reenumerate") == 0) {
            cmd_reenumerate(w, n);
        } else if (strcmp(w[0], "start") == 0) {
            cmd_start();
        } else if (strcmp(w[0], "signal") == 0 && n == 2) {
            int sig = parse_signal(w[1]);
            if (sig < 0 || !prog_running)
                say("error signal %s: %s", w[1], sig < 0 ? "unknown signal" : "not running");
            else {
                kill(prog_pid, sig);
                say("ok signal %s", w[1]);
            }
        } else if (strcmp(w[0], "wait") == 0 && n == 2) {
            wait_source = g_timeout_add((guint)atoi(w[1]), wait_done, NULL);
        } else if (strcmp(w[0], "waitexit") == 0 && n == 2) {
            waitexit_deadline = g_get_monotonic_time() + (gint64)atoi(w[1]) * 1000;
            wait_source = g_timeout_add(10, waitexit_poll, NULL);
        } else if (strcmp(w[0], "sync") == 0) {
            say("ok sync %s", n > 1 ? w[1] : "");
        } else if (strcmp(w[0], "quit") == 0) {
            say("ok quit");
            cmd_quit();
        } else {
            say("error: unknown command '%s'", w[0]);
        }
        g_strfreev(w);
        g_free(line);
    }
}

static gboolean on_ctl(gint fd, GIOCondition cond, gpointer ud)
{
    (void)cond;
    (void)ud;
    char buf[4096];
    ssize_t r;
    while ((r = read(fd, buf, sizeof(buf))) > 0)
        g_string_append_len(ctl_buf, buf, r);
    char *nl;
    while ((nl = memchr(ctl_buf->str, '\n', ctl_buf->len)) != NULL) {
        g_queue_push_tail(&cmd_queue, g_strndup(ctl_buf->str, (gsize)(nl - ctl_buf->str)));
        g_string_erase(ctl_buf, 0, (gssize)(nl - ctl_buf->str) + 1);
    }
    process_queue();
    if (r == 0 && fd == STDIN_FILENO) {
        /* stdin closed: treat as quit once everything queued has run */
        g_queue_push_tail(&cmd_queue, g_strdup("quit"));
        process_queue();
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static gboolean on_term(gpointer ud)
{
    (void)ud;
    say("signal: quitting");
    g_queue_clear_full(&cmd_queue, g_free);
    if (wait_source) {
        g_source_remove(wait_source);
        wait_source = 0;
    }
    if (!quitting)
        cmd_quit();
    return G_SOURCE_CONTINUE;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: umockdev-wrapper umock_station --sim ESP_SIM --workdir DIR "
            "[--ctl FIFO|-] [--no-fixup] [--jtag-reenumerate-on-reset] -- PROG [ARGS...]\n");
}

int main(int argc, char **argv)
{
    const char *ctl = NULL;
    bool no_fixup = false;
    int i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else if (strcmp(argv[i], "--sim") == 0 && i + 1 < argc) {
            sim_path = argv[++i];
        } else if (strcmp(argv[i], "--workdir") == 0 && i + 1 < argc) {
            workdir = argv[++i];
        } else if (strcmp(argv[i], "--ctl") == 0 && i + 1 < argc) {
            ctl = argv[++i];
        } else if (strcmp(argv[i], "--jtag-reenumerate-on-reset") == 0) {
            jtag_reenum = true;
        } else if (strcmp(argv[i], "--no-fixup") == 0) {
            no_fixup = true;
        } else {
            usage();
            return 2;
        }
    }
    if (!sim_path || !workdir || i >= argc) {
        usage();
        return 2;
    }
    prog_argv = &argv[i];
    const char *pre = getenv("LD_PRELOAD");
    if (!pre || !strstr(pre, "umockdev")) {
        fprintf(stderr, "umock_station: must run under umockdev-wrapper\n");
        return 2;
    }
    /* before anything else: TMPDIR (testbed location), then the testbed.
     * The testbed holds a Unix socket per device (ioctl/dev/ttyUSBn) and
     * sun_path has 108 bytes: under a deep work dir the socket cannot be
     * bound and every ioctl on the port fails with ENOTTY. So the testbed
     * lives in a short directory under /tmp, linked from WORKDIR/tmp. */
    g_mkdir_with_parents(workdir, 0755);
    char shortdir[] = "/tmp/umock.XXXXXX";
    if (!mkdtemp(shortdir)) {
        fprintf(stderr, "umock_station: mkdtemp /tmp: %s\n", g_strerror(errno));
        return 1;
    }
    char *tmp = g_build_filename(workdir, "tmp", NULL);
    (void)unlink(tmp);
    if (symlink(shortdir, tmp) != 0)
        fprintf(stderr, "umock_station: symlink %s: %s\n", tmp, g_strerror(errno));
    g_setenv("TMPDIR", shortdir, TRUE);
    g_free(tmp);
    t0 = g_get_monotonic_time();
    tb = umockdev_testbed_new();
    if (!umockdev_in_mock_environment()) {
        fprintf(stderr, "umock_station: not in a umockdev mock environment\n");
        return 2;
    }

    char *lp = g_build_filename(workdir, "umock.log", NULL);
    umock_log = fopen(lp, "a");
    g_free(lp);
    if (!umock_log) {
        fprintf(stderr, "umock_station: cannot write to %s\n", workdir);
        return 1;
    }
    program_log = g_build_filename(workdir, "program.log", NULL);
    if (!no_fixup) {
        char *exe = g_file_read_link("/proc/self/exe", NULL);
        char *dir = exe ? g_path_get_dirname(exe) : NULL;
        fixup_path = dir ? g_build_filename(dir, "libumock_fixup.so", NULL) : NULL;
        if (fixup_path && !g_file_test(fixup_path, G_FILE_TEST_EXISTS)) {
            g_free(fixup_path);
            fixup_path = NULL;
        }
        g_free(dir);
        g_free(exe);
    }
    boards = g_hash_table_new(g_str_hash, g_str_equal);
    incarnations = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    ctl_buf = g_string_new(NULL);
    modem_sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    signal(SIGPIPE, SIG_IGN);

    int ctl_fd;
    if (ctl && strcmp(ctl, "-") == 0) {
        ctl_fd = STDIN_FILENO;
        fcntl(ctl_fd, F_SETFL, fcntl(ctl_fd, F_GETFL) | O_NONBLOCK);
    } else {
        char *fifo = ctl ? g_strdup(ctl) : g_build_filename(workdir, "ctl", NULL);
        if (mkfifo(fifo, 0600) != 0 && errno != EEXIST) {
            fprintf(stderr, "umock_station: mkfifo %s: %s\n", fifo, g_strerror(errno));
            return 1;
        }
        /* O_RDWR: never sees EOF when a writer closes */
        ctl_fd = open(fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (ctl_fd < 0) {
            fprintf(stderr, "umock_station: open %s: %s\n", fifo, g_strerror(errno));
            return 1;
        }
        g_free(fifo);
    }
    loop = g_main_loop_new(NULL, FALSE);
    g_unix_fd_add(ctl_fd, G_IO_IN | G_IO_HUP, on_ctl, NULL);
    g_unix_signal_add(SIGTERM, on_term, NULL);
    g_unix_signal_add(SIGINT, on_term, NULL);
    /* t0: the log's time origin on CLOCK_MONOTONIC (g_get_monotonic_time), so
     * umock.log and modem.log times can be set against other logs */
    say("ready root=%s t0_mono_us=%" G_GINT64_FORMAT, umockdev_testbed_get_root_dir(tb), t0);
    g_main_loop_run(loop);

    /* handlers stay attached until here: the program is gone */
    fclose(umock_log);
    g_object_unref(tb); /* removes the testbed directory */
    (void)rmdir(shortdir);
    return prog_status < 0 ? 0 : prog_status;
}
