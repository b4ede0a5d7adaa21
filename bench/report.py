"""BENCHMARKS.md: the figures of one suite run as a table, written between two markers so that
the hand-written analysis around them is kept."""

import re
from pathlib import Path

START = "<!-- bench:figures:start (written by `python -m bench`; edit outside) -->"
END = "<!-- bench:figures:end -->"

# key, what, target, is the target met (figures -> bool or None)
ROWS = [
    ("booking_p99", "Booking request p99, {clients} clients at once (each booking about once a "
     "second), SMTP server taking 2 s a message", "≤ 50 ms", lambda r: r["ours"]["median"] <= 50),
    ("pickup_p50", "Enqueue → task start p50, single tasks to an idle clinic", "≤ 2 ms",
     lambda r: r["ours"]["median"] <= 2),
    ("pickup_p99", "Enqueue → task start p99, same run", "≤ 5 ms, faster than the peer",
     lambda r: r["ours"]["median"] <= 5 and (r["x"] is None or r["x"]["median"] > 1)),
    ("noop", "No-op tasks per second through the real queue, the monitor recording each run",
     "ahead of the peer", lambda r: r["x"] is None or r["x"]["median"] > 1),
    ("confirmation", "Booking → confirmation accepted by the SMTP server, p50", "≤ 150 ms",
     lambda r: r["ours"]["median"] <= 150),
    ("reminders", "{n} due reminders delivered to the SMTP server (smtplib's send_message)",
     "≥ 3× peer", lambda r: r["x"] is None or r["x"]["median"] >= 3),
    ("sweep_due", "Advance-reminder sweep, 5 minutes' worth due, at {big} appointments",
     "≤ 20 ms, ≤ 1.5× at {small}",
     lambda r: r["ours"]["median"] <= 20 and r["ratio"]["median"] <= 1.5),
    ("sweep_idle", "Advance-reminder sweep, nothing new due, at {big} appointments",
     "≤ 20 ms, ≤ 1.5× at {small}",
     lambda r: r["ours"]["median"] <= 20 and r["ratio"]["median"] <= 1.5),
    ("reports", "Monthly reports for {doctors} doctors ({visits} visits that month)", "≤ 5 s",
     lambda r: r["ours"]["median"] <= 5),
    ("dashboard_fresh", "Admin figures at {big} appointments, fresh", "≤ 200 ms",
     lambda r: r["ours"]["median"] <= 200),
    ("dashboard_cached", "Admin figures, cached", "≤ 1 ms", lambda r: r["ours"]["median"] <= 1),
    ("export", "One patient's {rows}-visit CSV export", "≤ 1 s, memory flat",
     lambda r: r["ours"]["median"] <= 1),
    ("wrk_patient", "Patient's appointments page (wrk, 32 connections)", "≥ 500 pages/s",
     lambda r: r["ours"]["median"] >= 500),
    ("wrk_dashboard", "Admin dashboard, cached (wrk, 32 connections)", "≥ 500 pages/s",
     lambda r: r["ours"]["median"] >= 500),
    ("start", "`python run.py` start to first page ({big} appointments)", "≤ 2 s",
     lambda r: r["ours"]["median"] <= 2),
    ("rss_idle", "Memory (RSS) at idle, a second after the start", "≤ 80 MB",
     lambda r: r["ours"]["median"] * 1.048576 <= 80),
    ("rss_jobs", "Memory (RSS) at idle, once the first scheduler tick's jobs have run", "≤ 80 MB",
     lambda r: r["ours"]["median"] * 1.048576 <= 80),
    ("rss_after", "Memory (RSS) after the whole suite", "≤ 150 MB",
     lambda r: r["ours"]["median"] * 1.048576 <= 150),
]


def _num(value, unit):
    if value is None:
        return "–"
    if unit in ("ms",) and value < 10:
        return f"{value:.2f}"
    if unit == "s" and value < 10:
        return f"{value:.3f}"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def figure(f, unit):
    if not f:
        return "–"
    text = f"**{_num(f['median'], unit)}** {unit}"
    if f.get("n", 1) > 1:
        text += f" ({_num(f['min'], unit)}–{_num(f['max'], unit)})"
    return text


def times(f, words=True):
    """``2.0× faster (1.8–2.2)`` for a ratio of our speed to the peer's; below 1, ``slower``."""
    if not f:
        return "–"
    m, lo, hi = f["median"], f["min"], f["max"]
    slower = words and m < 1
    if slower:
        m, lo, hi = 1 / m, 1 / hi, 1 / lo
    text = f"{m:.1f}×"
    if f.get("n", 1) > 1:
        text += f" ({lo:.1f}–{hi:.1f})"
    if words:
        text += " slower" if slower else " faster"
    return text


def _fill(text, result):
    rows = result["rows"]
    values = {"big": f"{result['appointments']:,}", "small": f"{result['small']:,}",
              "n": f"{result['params']['reminders']:,}",
              "clients": rows.get("booking_p99", {}).get("clients", "?"),
              "doctors": rows.get("reports", {}).get("doctors", "?"),
              "visits": f"{rows.get('reports', {}).get('visits') or 0:,}",
              "rows": f"{rows.get('export', {}).get('rows') or 0:,}"}
    return text.format(**values)


def table(result):
    rows = result["rows"]
    lines = ["| what | target | clinic | Celery + Redis | clinic is | met |",
             "| --- | --- | --- | --- | --- | --- |"]
    for key, what, target, met in ROWS:
        row = rows.get(key)
        if row is None or row.get("ours") is None:
            reason = result["skipped"].get(key, "not measured in this run")
            lines.append(f"| {_fill(what, result)} | {_fill(target, result)} | pending: "
                         f"{reason} | | | |")
            continue
        unit = row["unit"]
        peer = figure(row.get("peer"), unit) if row.get("peer") else "–"
        if key.startswith("sweep"):
            peer = f"at {result['small']:,}: {figure(row['small'], unit)}"
            x = f"{times(row['ratio'], words=False)} its time at {result['small']:,}"
        else:
            x = times(row.get("x"))
        ok = met(row)
        lines.append(f"| {_fill(what, result)} | {_fill(target, result)} | "
                     f"{figure(row['ours'], unit)} | {peer} | {x} | "
                     f"{'yes' if ok else '**no**'} |")
    return "\n".join(lines)


def details(result):
    rows, limits = result["rows"], result["limits"]
    out = []
    if limits.get("smtp"):
        cpu = limits.get("smtp_cpu_ms")
        out.append(f"- The SMTP sink's own ceiling (a reminder's {limits.get('smtp_bytes', 0):,} "
                   f"bytes from two client processes, pipelined, nothing else): "
                   f"{figure(limits['smtp'], 'emails/s')}"
                   + (f"; the sink's CPU {figure(cpu, 'ms')} a message" if cpu else "") + ".")
    if limits.get("sqlite"):
        out.append(f"- SQLite single-row commits on this disk (WAL, synchronous=NORMAL): "
                   f"{figure(limits['sqlite'], 'commits/s')}.")
    stock = rows.get("stock_huey")
    if stock:
        out.append(f"- Stock SqliteHuey (no wake-up, synchronous=FULL), workers at its default "
                   f"longest poll ({stock['max_delay']:g} s), {stock['samples']} single tasks: "
                   f"pickup p50 {stock['p50_ms']:,.0f} ms, worst {stock['max_ms']:,.0f} ms; "
                   f"{stock['noop_rate']:,.0f} no-op tasks/s (one run, for context).")
    nm = rows.get("no_monitor")
    if nm:
        out.append(f"- The same queue with the jobs monitor (clinic/jobs/runs.py) disconnected "
                   f"from Huey's signals (one run, for context): pickup p50 {nm['p50_ms']:.2f} ms, "
                   f"p99 {nm['p99_ms']:.2f} ms; {nm['noop_rate']:,.0f} no-op tasks/s.")
    b = rows.get("booking_saturated")
    if b and b.get("ours"):
        out.append(f"- Bookings with no pauses ({b['clients']} clients, each booking again as soon "
                   f"as answered; one run, for context): p50 {figure(b['p50'], 'ms')}, p99 "
                   f"{figure(b['ours'], 'ms')}, slowest {figure(b['max'], 'ms')}, "
                   f"{b['bookings']:,} bookings, {b['errors']} errors.")
    b = rows.get("booking_p99")
    if b and b.get("ours"):
        out.append(f"- Bookings: {b['bookings']:,} made by {b['clients']} clients over the runs "
                   f"({b['errors']} errors); p50 {figure(b['p50'], 'ms')}, slowest "
                   f"{figure(b['max'], 'ms')}; every confirmation reached the SMTP server "
                   f"afterwards: {'yes' if b['drained'] else 'no'}.")
    for key in ("sweep_due", "sweep_idle"):
        s = rows.get(key)
        if s and s.get("written") and key == "sweep_due":
            out.append(f"- Sweep with 5 minutes' worth due: it wrote "
                       f"{s['written']['median']:.0f} reminders (sent or skipped) a run.")
    e = rows.get("export")
    if e and e.get("ours"):
        out.append(f"- Export: peak traced Python memory {e['peak_mb']:.2f} MiB for "
                   f"{e['rows']:,} visits, {e['light_peak_mb']:.2f} MiB for {e['light_rows']:,}.")
    r = rows.get("reports")
    if r and r.get("ours"):
        out.append(f"- Monthly reports for {r['month']}: {r['sent']} reports written with their "
                   f"emails queued in the outbox.")
    ps = rows.get("peer_start")
    if ps and ps.get("ours"):
        out.append(f"- The Celery worker's start, until it ran its first task: "
                   f"{figure(ps['ours'], 's')}.")
    for key, reason in result["skipped"].items():
        if key not in dict((k, 1) for k, *_ in ROWS):
            out.append(f"- {key}: {reason}")
    for key, note in result.get("notes", {}).items():
        out.append(f"- {key}: {note}")
    return "\n".join(out)


def section(result):
    m = result["machine"]
    p = result["params"]
    return "\n".join([
        START,
        f"Measured {result['date']} on {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"{m['system']}. {_quiet(result)}",
        "",
        f"Command: `{result['command']}`. Each figure: median of {p['runs']} run(s), (min–max). "
        f"The peer: {result['peer']}.",
        "",
        table(result),
        "",
        details(result),
        END,
    ])


BUSY = 0.10  # of all CPUs, used by other work just before the suite: its figures are not clean


def _quiet(result):
    """How quiet the machine was. The CPUs' use over a few seconds just before the start says
    whether other work was running; load averages trail (a run a minute earlier still shows)
    and the one after counts the suite's own processes, so they are given but not judged."""
    busy = result.get("busy_before")
    loads = (f"Load average (1, 5, 15 min) before: {_load(result['load_before'])}; after "
             f"(the suite's own work included): {_load(result['load_after'])}.")
    if busy is None:
        return loads
    said = (f"Just before the start, other work kept {busy:.0%} of the CPUs busy"
            + (": **these figures are not clean.**" if busy > BUSY else " (quiet)."))
    return f"{said} {loads}"


def _load(values):
    return ", ".join(f"{v:.2f}" for v in values)


def write(path, result):
    """Replace the figures between the markers in ``path`` (or write a new file)."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    new = section(result)
    if START in text and END in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: new, text,
                      flags=re.S)
    else:
        text = (text.rstrip() + "\n\n" if text else "# Benchmarks\n\n") + new + "\n"
    path.write_text(text)
