#!/usr/bin/env python3
"""bench_daemon_report: computes and prints bench_daemon.sh's figures.

  bench_daemon_report.py session DIR          one session: a summary line
  bench_daemon_report.py table IMPORT_DIR DIR...  all sessions: the tables

A session DIR (written by bench_daemon.sh and the harness) holds facts (clock
pairs, daemon CPU ticks, VmHWM), jobs.txt, umock.log, b<n>/modem.log,
b<n>/sim.log (esp_sim --log-mono), cnt/deflate.<pid> (libcount_deflate.so);
DIR/../data/records.db is the daemon's records DB (event journal), DIR/../fw
the firmware set.

Clocks: umock.log and modem.log are ms since the harness's t0, given on
CLOCK_MONOTONIC in its "ready" line; sim.log lines carry @<CLOCK_MONOTONIC s>;
the records DB uses CLOCK_REALTIME ms, converted with the (monotonic, realtime)
pair sampled just before the adds (facts: clk0; clk1 checks the drift).
"""
import glob
import json
import os
import re
import sqlite3
import statistics
import sys

SYNC_FRAME_BYTES = 46  # C0, 8-byte header, 36-byte body, C0 (nothing to escape)
INITIAL_BAUD = 115200
SYNC_WIRE_MS = SYNC_FRAME_BYTES * 10 * 1000.0 / INITIAL_BAUD
# The physical limit of a job (as bench_flash's whole-CLI rows): the SYNC exchange
# at 115200 (the host's 46-byte frame and the ROM's 8 replies of 14 bytes, which
# the host waits for), the other commands sent before CHANGE_BAUDRATE at 115200,
# and the rest of the bytes the host wrote (jobs.wire_bytes) at the job's baud.
SYNC_EXCHANGE_S = (SYNC_FRAME_BYTES + 8 * 14) * 10.0 / INITIAL_BAUD
DATA_OPS = ("FLASH_DATA", "MEM_DATA", "FLASH_DEFL_DATA")  # sim.log len= is the data, body = 16 + len
# The sleeps between the add and the first SYNC byte when the first reset
# attempt is used (protocols/esp_reset.c ESP_RESET_TIGHT, esp_connect.c):
EN_LOW_MS = 100  # EN held low
BOOT_HOLD_MS = 50  # reset delay d1 (cfg.reset_delay_ms 0 -> 50): BOOT held low after EN release
CAPTURE_QUIET_MS = 50  # capture_boot: boot output read until 50 ms of silence
RESET_SLEEPS_MS = EN_LOW_MS + BOOT_HOLD_MS + CAPTURE_QUIET_MS


def read_facts(d):
    f = {}
    with open(os.path.join(d, "facts")) as fh:
        for line in fh:
            k, _, v = line.rstrip("\n").partition("=")
            f[k] = v
    m0, r0 = (int(x) for x in f["clk0"].split())
    m1, r1 = (int(x) for x in f["clk1"].split())
    f["off0_ms"] = (r0 - m0) / 1e6  # realtime - monotonic
    f["drift_ms"] = (r1 - m1) / 1e6 - f["off0_ms"]
    f["mono0_ms"] = m0 / 1e6
    f["mono1_ms"] = m1 / 1e6
    for k in ("boards", "run", "daemon_pid", "clk_hz", "cpu0", "cpu1", "vmhwm_kib", "vmrss_kib"):
        f[k] = int(f[k])
    # added for the 32-board run (issue 11); absent in older session dirs
    f["baud"] = int(f.get("baud", "921600"))
    if "machine0" in f:
        b0, t0 = (int(x) for x in f["machine0"].split())
        b1, t1 = (int(x) for x in f["machine1"].split())
        f["machine_busy_cores"] = (b1 - b0) / f["clk_hz"]
        f["machine_cores_total"] = (t1 - t0) / f["clk_hz"]
        f["harness_cpu_s"] = (int(f["harness_cpu1"]) - int(f["harness_cpu0"])) / f["clk_hz"]
        st, sn = (int(x) for x in f["sims_cpu1"].split())
        f["sims_cpu_s"] = st / f["clk_hz"]
        f["sims_seen"] = sn
    return f


def parse_umock(d):
    t0 = None
    adds, readies, added = {}, {}, {}
    with open(os.path.join(d, "umock.log")) as fh:
        for line in fh:
            m = re.match(r"^([0-9.]+) ready .* t0_mono_us=(\d+)", line)
            if m:
                t0 = int(m.group(2)) / 1000.0
                continue
            m = re.match(r"^([0-9.]+) uevent add (\S+) \S+ since=([0-9.]+)", line)
            if m:
                # the uevents went out within [since, line time]: take the start
                # (latencies measured from it are upper bounds)
                adds.setdefault(m.group(2), float(m.group(3)))
                added.setdefault(m.group(2), float(m.group(1)) - float(m.group(3)))
                continue
            m = re.match(r"^([0-9.]+) ok add (\S+) ", line)
            if m:
                readies.setdefault(m.group(2), float(m.group(1)))
    if t0 is None:
        raise SystemExit(f"{d}/umock.log: no t0_mono_us in the ready line (harness too old?)")
    return ({b: t0 + v for b, v in adds.items()}, {b: t0 + v for b, v in readies.items()}, t0,
            added)


def parse_modem(path, t0):
    """First host modem change, EN release (BOOT low), final release: mono ms."""
    first = en_rel = rel = None
    with open(path) as fh:
        for line in fh:
            m = re.match(r"^([0-9.]+) DTR=\d RTS=\d EN=(\w+) BOOT=(\w+)", line)
            if not m:
                continue
            t = t0 + float(m.group(1))
            if first is None:
                first = t
            if en_rel is None and m.group(2) == "high" and m.group(3) == "low":
                en_rel = t
            elif en_rel is not None and rel is None and m.group(3) == "high":
                rel = t
                break
    return first, en_rel, rel


def first_sync(path):
    with open(path) as fh:
        for line in fh:
            m = re.match(r"^\d+ @([0-9.]+) cmd SYNC ", line)
            if m:
                return float(m.group(1)) * 1000.0
    return None


def events(d, f):
    db = os.path.join(d, "..", "data", "records.db")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    since = int(f["mono0_ms"] + f["off0_ms"]) - 1
    ev = {}
    for ts, kind, slot, data in con.execute(
            "select ts, kind, slot, data from events where ts >= ? order by id", (since,)):
        e = ev.setdefault(slot, {})
        key = kind
        if kind == "job.progress":
            key = "stage." + json.loads(data or "{}").get("stage", "")
        e.setdefault(key, ts - f["off0_ms"])  # first occurrence, as mono ms
    con.close()
    return ev


def pre_baud_bytes(path):
    """Bytes of the frames the host sent after SYNC up to and including
    CHANGE_BAUDRATE (at 115200), from sim.log; None without a CHANGE_BAUDRATE."""
    total, seen_sync = 0, False
    with open(path) as fh:
        for line in fh:
            m = re.match(r"^\d+ @[0-9.]+ cmd (\S+)(.*)$", line)
            if not m:
                continue
            op, rest = m.group(1), m.group(2)
            if op == "SYNC" and not seen_sync:
                seen_sync = True
                continue
            if not seen_sync:
                continue
            if op == "CHANGE_BAUDRATE":
                return total + 8 + 10
            ln = re.search(r" len=(\d+)", rest)
            body = int(ln.group(1)) if ln else 0
            if op in DATA_OPS:
                body += 16
            total += body + 10  # 8-byte header, two C0 (escapes not counted)
    return None


def flash_ok(d, b):
    """The board's flash holds the app at 0x10000 (the daemon verified MD5s too)."""
    app = os.path.join(d, "..", "fw", "app.bin")
    with open(app, "rb") as fh:
        want = fh.read()
    with open(os.path.join(d, b, "flash.bin"), "rb") as fh:
        fh.seek(0x10000)
        return fh.read(len(want)) == want


def analyse(d):
    f = read_facts(d)
    adds, readies, t0, added = parse_umock(d)
    jobs = []
    with open(os.path.join(d, "jobs.txt")) as fh:
        for line in fh:
            p = line.rstrip("\n").split("|")
            jobs.append({"id": int(p[0]), "slot": p[1], "state": p[2], "start": int(p[3]) - f["off0_ms"],
                         "end": int(p[4]) - f["off0_ms"], "kbps": float(p[5] or 0),
                         "seconds": float(p[6] or 0),
                         "bytes": int(p[7]) if len(p) > 8 else None,
                         "wire_bytes": int(p[8]) if len(p) > 8 else None})
    ev = events(d, f)
    job_by_slot = {j["slot"]: j for j in jobs}
    boards = []
    for n in range(1, f["boards"] + 1):
        b = f"b{n}"
        slot = f"A{n}"
        m_first, en_rel, rel = parse_modem(os.path.join(d, b, "modem.log"), t0)
        sync = first_sync(os.path.join(d, b, "sim.log"))
        e = ev.get(slot, {})
        r = {"board": b, "add": adds.get(b), "ready": readies.get(b), "m_first": m_first,
             "en_rel": en_rel, "rel": rel, "sync_byte": None, "flash_ok": flash_ok(d, b)}
        if sync is not None:
            r["sync_byte"] = sync - SYNC_WIRE_MS
        if r["add"] is not None and r["sync_byte"] is not None:
            r["raw"] = r["sync_byte"] - r["add"]
            r["net"] = r["raw"] - RESET_SLEEPS_MS
        if r["add"] is not None:
            r["sim_up"] = (r["ready"] - r["add"]) if r["ready"] else None
            r["add_call"] = added.get(b)
            r["ioctl_after_ready"] = (m_first - r["ready"]) if (m_first and r["ready"]) else None
            r["to_port_added"] = e.get("port.added", float("nan")) - r["add"]
            r["to_job"] = e.get("job.started", float("nan")) - r["add"]
            r["open"] = e.get("stage.sync", float("nan")) - e.get("stage.open", float("nan"))
            r["to_ioctl"] = (m_first - r["add"]) if m_first else None
        j = job_by_slot.get(slot)
        if j is not None:
            r["job_s"] = j["seconds"]
            if r["add"] is not None:
                r["own_s"] = (j["end"] - r["add"]) / 1000.0  # this board: add -> its job ended
            pre = pre_baud_bytes(os.path.join(d, b, "sim.log"))
            if j["wire_bytes"]:
                r["wire_bytes"] = j["wire_bytes"]
                if pre is None:  # no baud change: everything at 115200
                    r["limit_s"] = SYNC_EXCHANGE_S + (j["wire_bytes"] - SYNC_FRAME_BYTES) * 10.0 / INITIAL_BAUD
                else:
                    r["limit_s"] = (SYNC_EXCHANGE_S + pre * 10.0 / INITIAL_BAUD +
                                    (j["wire_bytes"] - SYNC_FRAME_BYTES - pre) * 10.0 / f["baud"])
                r["limit_pct"] = 100.0 * r["limit_s"] / j["seconds"] if j["seconds"] else None
                r["limit_pct_own"] = 100.0 * r["limit_s"] / r["own_s"] if r.get("own_s") else None
        if m_first and rel:
            r["reset"] = rel - m_first
        if rel and r["sync_byte"]:
            r["capture"] = r["sync_byte"] - rel
        boards.append(r)
    first_add = min(r["add"] for r in boards)
    last_end = max(j["end"] for j in jobs)
    wall = (last_end - first_add) / 1000.0
    span = (last_end - min(j["start"] for j in jobs)) / 1000.0
    cpu_s = (f["cpu1"] - f["cpu0"]) / f["clk_hz"]
    window = (f["mono1_ms"] - f["mono0_ms"]) / 1000.0
    cnt = os.path.join(d, "cnt", f"deflate.{f['daemon_pid']}")
    loaded, deflates = False, 0
    if os.path.exists(cnt):
        with open(cnt) as fh:
            for line in fh:
                loaded |= line.startswith("load ")
                deflates += line.startswith("deflate ")
    owns = [r["own_s"] for r in boards if r.get("own_s") is not None]
    return {"name": os.path.basename(d), "run": f["run"], "boards": f["boards"], "wall": wall,
            "slowest": max(owns) if owns else float("nan"), "facts": f,
            "plug_s": (max(r["add"] for r in boards) - first_add) / 1000.0,
            "span": span, "cpu_s": cpu_s, "window": window,
            "cpu_pct_board": 100.0 * cpu_s / wall / f["boards"],
            "cpu_pct": 100.0 * cpu_s / wall, "hwm_mib": f["vmhwm_kib"] / 1024.0,
            "shim_loaded": loaded, "deflates": deflates, "drift_ms": f["drift_ms"],
            "passed": sum(j["state"] == "passed" for j in jobs), "jobs": jobs, "per_board": boards,
            "job_s": [j["seconds"] for j in jobs], "kbps": [j["kbps"] for j in jobs]}


def mmm(xs, fmt="{:.0f}"):
    xs = [x for x in xs if x is not None and x == x]
    if not xs:
        return "-"
    return "/".join(fmt.format(v) for v in (min(xs), statistics.median(xs), max(xs)))


def session_line(s):
    pb = s["per_board"]
    return (f"{s['name']}: {s['passed']}/{s['boards']} passed, wall {s['wall']:.2f} s "
            f"(slowest board {s['slowest']:.2f} s), "
            f"limit% min/med/max {mmm([b.get('limit_pct') for b in pb], '{:.1f}')}, "
            f"daemon cpu {s['cpu_s']:.2f} s ({s['cpu_pct_board']:.2f} %/board), "
            f"VmHWM {s['hwm_mib']:.1f} MiB, deflate in daemon {s['deflates']}"
            f"{'' if s['shim_loaded'] else ' (SHIM NOT LOADED)'}, "
            f"add->SYNC raw min/med/max {mmm([b.get('raw') for b in pb])} ms, "
            f"net {mmm([b.get('net') for b in pb])} ms, "
            f"flash ok {sum(b['flash_ok'] for b in pb)}/{len(pb)}")


def table(import_dir, dirs):
    ss = [analyse(d) for d in dirs]
    imp_loaded, imp_n, imp_lines = False, 0, []
    for p in glob.glob(os.path.join(import_dir, "deflate.*")):
        with open(p) as fh:
            for line in fh:
                imp_loaded |= line.startswith("load ")
                if line.startswith("deflate "):
                    imp_n += 1
                    imp_lines.append(line.split()[2])
    man = os.path.join(dirs[0], "..", "fw", "manifest.json")
    with open(man) as fh:
        regions = len(json.load(fh)["regions"])

    print("== bench_daemon: sessions ==")
    print(f"{'session':<12} {'boards':>6} {'passed':>6} {'wall_s':>7} {'ratio':>6} {'slowest_s':>9} "
          f"{'ratio':>6} {'plug_s':>6} {'jobspan_s':>9} "
          f"{'job_s min/med/max':>18} {'limit%':>6} {'cpu_s':>6} {'cpu%/board':>10} {'VmHWM_MiB':>9} {'deflate':>7} "
          f"{'flash_ok':>8}")
    singles = {s["run"]: s for s in ss if s["boards"] == 1}
    ratios, ratios_slow = [], []
    for s in ss:
        ratio = ratio_s = ""
        if s["boards"] > 1 and s["run"] in singles:
            rv = s["wall"] / singles[s["run"]]["wall"]
            ratios.append(rv)
            ratio = f"{rv:.2f}"
            rs = s["slowest"] / singles[s["run"]]["slowest"]
            ratios_slow.append(rs)
            ratio_s = f"{rs:.2f}"
        lp = [b.get("limit_pct") for b in s["per_board"] if b.get("limit_pct") is not None]
        print(f"{s['name']:<12} {s['boards']:>6} {s['passed']:>6} {s['wall']:>7.2f} {ratio:>6} "
              f"{s['slowest']:>9.2f} {ratio_s:>6} {s['plug_s']:>6.2f} "
              f"{s['span']:>9.2f} {mmm(s['job_s'], '{:.2f}'):>18} "
              f"{(statistics.median(lp) if lp else float('nan')):>6.1f} {s['cpu_s']:>6.2f} "
              f"{s['cpu_pct_board']:>10.2f} {s['hwm_mib']:>9.1f} "
              f"{(str(s['deflates']) if s['shim_loaded'] else 'n/a'):>7} "
              f"{sum(b['flash_ok'] for b in s['per_board']):>5}/{len(s['per_board']):<2}")
    print("  wall = first add -> last job ended (ratio to the run's single board); slowest = the "
          "longest own add -> own job ended; plug_s = first add -> last add (the harness plugs the "
          "boards one after another); limit% = median over boards of limit_s / job_s")
    print()
    print("== physical limit per board (SYNC exchange and pre-CHANGE_BAUDRATE commands at 115200, "
          "the rest of the job's wire bytes at the job's baud) ==")
    print(f"{'session':<12} {'board':>5} {'add->end_s':>10} {'job_s':>7} {'wire_bytes':>10} "
          f"{'limit_s':>8} {'limit%':>7} {'limit%(add->end)':>16}")
    for s in ss:
        for b in s["per_board"]:
            if b.get("limit_s") is None:
                print(f"{s['name']:<12} {b['board']:>5} (no wire_bytes)")
                continue
            print(f"{s['name']:<12} {b['board']:>5} {b.get('own_s', float('nan')):>10.2f} "
                  f"{b['job_s']:>7.2f} {b['wire_bytes']:>10} {b['limit_s']:>8.2f} "
                  f"{b['limit_pct']:>7.1f} {b.get('limit_pct_own') or float('nan'):>16.1f}")
    print()
    if all("machine_busy_cores" in s["facts"] for s in ss):
        print("== CPU over the measured window (first add -> all jobs seen done), seconds of CPU ==")
        print(f"{'session':<12} {'window_s':>8} {'daemon':>7} {'sims':>7} {'sims/board%':>11} "
              f"{'harness':>7} {'machine_busy':>12} {'of_cores':>8} {'loadavg_before':>16}")
        for s in ss:
            f = s["facts"]
            print(f"{s['name']:<12} {s['window']:>8.2f} {s['cpu_s']:>7.2f} {f['sims_cpu_s']:>7.2f} "
                  f"{100.0 * f['sims_cpu_s'] / s['window'] / max(f['sims_seen'], 1):>11.2f} "
                  f"{f['harness_cpu_s']:>7.2f} {f['machine_busy_cores']:>12.2f} "
                  f"{f['machine_cores_total']:>8.2f} {f.get('loadavg0', '?'):>16}")
        print("  sims = utime+stime of every esp_sim of the session (started after the window opened, "
              "so their start-up is included); harness = umock_station (uevents, modem ioctls); "
              "machine_busy = non-idle jiffies of all CPUs (/proc/stat), of_cores = window × CPUs")
        print()
    print("== udev add -> first SYNC byte at the board, ms (per session: min/median/max over boards) ==")
    print(f"{'session':<12} {'raw':>17} {'net':>17} | {'add->port.added':>16} {'add->job':>14} "
          f"{'open':>11} {'add->1st ioctl':>16} {'reset':>17} {'capture':>14} {'sim_up':>14} "
          f"{'add_call':>14} {'ioctl-ready':>14}")
    for s in ss:
        pb = s["per_board"]
        print(f"{s['name']:<12} {mmm([b.get('raw') for b in pb]):>17} {mmm([b.get('net') for b in pb]):>17} | "
              f"{mmm([b.get('to_port_added') for b in pb]):>16} {mmm([b.get('to_job') for b in pb]):>14} "
              f"{mmm([b.get('open') for b in pb]):>11} {mmm([b.get('to_ioctl') for b in pb]):>16} "
              f"{mmm([b.get('reset') for b in pb]):>17} {mmm([b.get('capture') for b in pb]):>14} "
              f"{mmm([b.get('sim_up') for b in pb]):>14} {mmm([b.get('add_call') for b in pb]):>14} "
              f"{mmm([b.get('ioctl_after_ready') for b in pb]):>14}")
    print(f"  net = raw - {RESET_SLEEPS_MS} ms of sleeps: EN low {EN_LOW_MS} + BOOT hold {BOOT_HOLD_MS} "
          f"(first reset attempt, unix-tight) + boot-output quiet window {CAPTURE_QUIET_MS}; the SYNC "
          f"frame's wire time ({SYNC_WIRE_MS:.2f} ms) is taken off the sim's frame-complete stamp")
    print("  add = start of the harness's add call (umockdev_testbed_add_from_string, which sends the "
          "uevents; add_call = its duration, the uncertainty of 'add', counted against the daemon)")
    print("  reset = first host modem ioctl -> lines released; capture = release -> SYNC byte; "
          "sim_up = add -> the harness's sim ready; ioctl-ready = first modem ioctl - sim ready "
          "(~0: the ioctl was held by the harness until the sim was up)")
    print()
    bursts = [s for s in ss if s["boards"] > 1]
    print("== summary (ranges over runs) ==")

    def rng(xs, fmt="{:.2f}"):
        return fmt.format(min(xs)) + ("" if len(xs) < 2 else "–" + fmt.format(max(xs)))
    if ratios:
        print(f"  wall {bursts[0]['boards']} boards / 1 board: {rng(ratios)} first add -> last end, "
              f"{rng(ratios_slow)} slowest board's own add -> end (target <= 1.1)")
    if bursts:
        print(f"  daemon CPU per board: {rng([s['cpu_pct_board'] for s in bursts])} % of a core "
              f"(target <= 1 %); whole daemon {rng([s['cpu_pct'] for s in bursts], '{:.1f}')} %")
        lp = [b.get("limit_pct") for s in bursts for b in s["per_board"]]
        ls = [b.get("limit_s") for s in bursts for b in s["per_board"]]
        print(f"  physical limit per board: {mmm(ls, '{:.2f}')} s; job time / limit: limit% "
              f"{mmm(lp, '{:.1f}')} (min/median/max over the bursts' boards)")
        print(f"  peak RSS (VmHWM): {rng([s['hwm_mib'] for s in bursts], '{:.1f}')} MiB (target <= 64)")
        nets = [b.get("net") for s in bursts for b in s["per_board"]]
        print(f"  add -> first SYNC byte, {bursts[0]['boards']}-board bursts, all boards: raw "
              f"{mmm([b.get('raw') for s in bursts for b in s['per_board']])}, net {mmm(nets)} ms "
              f"(min/median/max; target <= 50 net)")
    singles_l = list(singles.values())
    if singles_l:
        print(f"  add -> first SYNC byte, single board: raw "
              f"{', '.join('%.0f' % s['per_board'][0]['raw'] for s in singles_l)}, net "
              f"{', '.join('%.0f' % s['per_board'][0]['net'] for s in singles_l)} ms")
    print(f"  compress once: import process {imp_n} compression(s) for {regions} regions "
          f"({', '.join('len=' + x.split('=')[1] if '=' in x else x for x in imp_lines)})"
          f"{'' if imp_loaded else ' (SHIM NOT LOADED)'}; daemon during flashing: "
          f"{', '.join(str(s['deflates']) if s['shim_loaded'] else 'n/a' for s in ss)} "
          f"(per session, {sum(s['boards'] for s in ss)} boards flashed)")
    drift = max(abs(s["drift_ms"]) for s in ss)
    if drift > 2:
        print(f"  warning: realtime-monotonic drift up to {drift:.1f} ms within a session")


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "session":
        print("[bench_daemon] " + session_line(analyse(sys.argv[2])))
    elif len(sys.argv) >= 4 and sys.argv[1] == "table":
        table(sys.argv[2], sys.argv[3:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
