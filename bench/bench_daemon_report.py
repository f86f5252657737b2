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
                         "seconds": float(p[6] or 0)})
    ev = events(d, f)
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
    return {"name": os.path.basename(d), "run": f["run"], "boards": f["boards"], "wall": wall,
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
    return (f"{s['name']}: {s['passed']}/{s['boards']} passed, wall {s['wall']:.2f} s, "
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
    print(f"{'session':<12} {'boards':>6} {'passed':>6} {'wall_s':>7} {'ratio':>6} {'jobspan_s':>9} "
          f"{'job_s min/med/max':>18} {'cpu_s':>6} {'cpu%/board':>10} {'VmHWM_MiB':>9} {'deflate':>7} "
          f"{'flash_ok':>8}")
    singles = {s["run"]: s for s in ss if s["boards"] == 1}
    ratios = []
    for s in ss:
        ratio = ""
        if s["boards"] > 1 and s["run"] in singles:
            rv = s["wall"] / singles[s["run"]]["wall"]
            ratios.append(rv)
            ratio = f"{rv:.2f}"
        print(f"{s['name']:<12} {s['boards']:>6} {s['passed']:>6} {s['wall']:>7.2f} {ratio:>6} "
              f"{s['span']:>9.2f} {mmm(s['job_s'], '{:.2f}'):>18} {s['cpu_s']:>6.2f} "
              f"{s['cpu_pct_board']:>10.2f} {s['hwm_mib']:>9.1f} "
              f"{(str(s['deflates']) if s['shim_loaded'] else 'n/a'):>7} "
              f"{sum(b['flash_ok'] for b in s['per_board']):>5}/{len(s['per_board']):<2}")
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
        print(f"  wall {bursts[0]['boards']} boards / 1 board: {rng(ratios)} (target <= 1.15)")
    if bursts:
        print(f"  daemon CPU per board: {rng([s['cpu_pct_board'] for s in bursts])} % of a core "
              f"(target <= 2 %); whole daemon {rng([s['cpu_pct'] for s in bursts], '{:.1f}')} %")
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
