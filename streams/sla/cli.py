"""`escalator policy check` and `escalator replay`: the SLA core from a terminal."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable
from typing import IO, Any

import orjson

from base.durations import parse_delay
from events.instants import DAY, HOUR, format_duration, parse_instant
from streams.sla.backtest import backtest, format_table
from streams.sla.clocks import BusinessCalendar
from streams.sla.policy import WEEKDAYS, PolicyError, check_policy, load_policy
from streams.sla.replay import Replayer
from streams.sla.rules import Match, Policy


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    policy = commands.add_parser("policy")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_commands.add_parser("check", help="validate a policy and print its targets")
    check.add_argument("file", nargs="?", help="policy TOML (default: the shipped Clevr policy)")
    check.set_defaults(func=_policy_check)
    diff = policy_commands.add_parser(
        "diff", help="what a new policy version changes: targets, calendars, matches, warnings"
    )
    diff.add_argument("old", help="the current policy TOML")
    diff.add_argument("new", help="the proposed policy TOML")
    diff.add_argument("--format", choices=("table", "json"), default="table")
    diff.set_defaults(func=_policy_diff)
    from streams.engine.cli import register_policy_publish  # the Kafka part, imported lazily

    register_policy_publish(policy_commands)

    replay = commands.add_parser(
        "replay",
        description="Reads JSONL ticket events and writes the SLA events they cause as JSONL "
        "to stdout, in firing order. Invalid lines are reported on stderr and skipped.",
    )
    replay.add_argument("--input", "-i", default="-", help="JSONL file, or - for stdin")
    replay.add_argument("--policy", "-p", help="policy TOML (default: the shipped Clevr policy)")
    replay.add_argument(
        "--until", help="advance the clock to this RFC 3339 time at the end (default: last event)"
    )
    replay.add_argument(
        "--max-delay",
        default="15m",
        help="bounded out-of-orderness: how far (event time) lines of different tickets may "
        "come out of time order and still give the time-ordered result; later lines are "
        "corrected (sla.retracted). A duration such as 15m, 2h or 0 (default: 15m)",
    )
    replay.add_argument(
        "--format",
        choices=("jsonl", "table"),
        default="jsonl",
        help="jsonl: the outbound events (default); table: one aligned line per event, for people",
    )
    replay.set_defaults(func=_replay)


def add_backtest_parser(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
) -> argparse.ArgumentParser:
    """The `backtest` sub-command's parser (its history flags are `deploy.backtest`'s: it
    also reads the projections database and the ticket topic)."""
    backtest: argparse.ArgumentParser = commands.add_parser(
        "backtest",
        description="Runs the history through the SLA core under both policies and reports, "
        "per policy, severity and metric, met and breached counts under each and the "
        "difference, the tickets whose outcome changes, and escalations gained or lost.",
    )
    backtest.add_argument("--policy", "-p", help="current policy (default: the shipped one)")
    backtest.add_argument("--against", "-a", required=True, help="proposed policy TOML")
    backtest.add_argument("--until", help="advance both clocks to this RFC 3339 time at the end")
    backtest.add_argument("--format", choices=("table", "json"), default="table")
    return backtest


def _fail(message: str) -> int:
    print(f"escalator: {message}", file=sys.stderr)
    return 2


def _policy_check(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        return _fail(str(exc))
    print(describe_policy(policy))
    for warning in check_policy(policy):
        print(f"warning: {warning}")
    return 0


def _policy_diff(args: argparse.Namespace) -> int:
    from streams.sla.policy_diff import diff_policies, format_diff

    try:
        old, new = load_policy(args.old), load_policy(args.new)
    except PolicyError as exc:
        return _fail(str(exc))
    changes = diff_policies(old, new)
    if args.format == "json":
        body = {
            "old": {"name": old.name, "version": old.version, "digest": old.digest},
            "new": {"name": new.name, "version": new.version, "digest": new.digest},
            "changes": [change.as_json() for change in changes],
        }
        sys.stdout.buffer.write(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(format_diff(old, new, changes))
    return 0


def describe_policy(policy: Policy) -> str:
    """The effective targets as a table, durations spelled out as business or elapsed time."""
    lines = [f"policy {policy.name} (version {policy.version})"]
    for name, cal in policy.calendars.items():
        label = "calendar" if len(policy.calendars) == 1 else f"calendar {name}"
        closures = len(cal.closures) + len(cal.partial_closures) + len(cal.closed_spans)
        openings = f"; extra openings: {len(cal.openings)}" if cal.openings else ""
        kinds = cal.holiday_categories
        categories = f" ({', '.join(kinds)})" if cal.holidays and kinds else ""
        lines.append(
            f"{label}: {describe_week(cal)} {cal.timezone}"
            f"; holidays: {cal.holidays or 'none'}{categories}; closures: {closures}{openings}"
            f"; 1 business day = {format_duration(cal.day_length)}"
        )
    for child in policy.policies or [policy]:
        lines.append("")
        if policy.policies:
            lines.append(f"policy {child.name}: {describe_match(child.match)}")
        lines += _targets(child)
        lines += _more_targets(child)
    for ola in policy.olas:
        rule = ola.ownership
        where = describe_match(ola.match)
        if ola.severities:
            where += f"; severity in {', '.join(str(s) for s in sorted(ola.severities))}"
        text = f"group ownership {spelled(policy, rule.target, rule.clock, rule.calendar)}"
        text += ", pausable" if rule.pausable else ""
        if rule.warn_at:
            text += ", warn at " + ", ".join(f"{f:g}" for f in rule.warn_at)
        if rule.warn_before:
            leads = ", ".join(format_duration(lead) for lead in rule.warn_before)
            text += f", warn {leads} before the breach"
        lines += ["", f"ola {ola.name}: {where}", f"  {text}"]
    if policy.attribution:
        lines += ["", "attribution: met, breached and stopped events say who held the ticket"]
    return "\n".join(lines)


def describe_match(match: Match) -> str:
    """``customer in C-1, C-2; tags any of vip; attributes.tier in gold`` or ``every ticket``."""
    parts = [
        f"{label} {'any of' if label == 'tags' else 'in'} {', '.join(sorted(values))}"
        for label, values in (
            ("customer", match.customers),
            ("group", match.groups),
            ("channel", match.channels),
            ("tags", match.tags),
        )
        if values
    ]
    parts += [f"{name} in {', '.join(sorted(v))}" for name, v in sorted(match.attributes.items())]
    return "; ".join(parts) or "every ticket"


def _targets(policy: Policy) -> list[str]:
    """The effective targets of one policy as table rows."""
    lines: list[str] = []
    header = ("severity", "first response", "resolution", "warn at", "pausable", "escalations")
    rows = [header]
    for level in sorted(policy.severities):
        rules = policy.severities[level]

        def target(rule: Any) -> str:
            return "-" if rule is None else spelled(policy, rule.target, rule.clock, rule.calendar)

        res = rules.resolution
        rows.append(
            (
                str(level),
                target(rules.first_response),
                target(res),
                ", ".join(f"{f:g}" for f in res.warn_at) if res and res.warn_at else "-",
                ("yes" if res.pausable else "no") if res else "-",
                "; ".join(
                    f"L{e.level} {e.to} after {spelled(policy, e.after, e.clock, e.calendar)}"
                    for e in rules.escalations
                )
                or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines += [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return lines


def spelled(policy: Policy, amount: int, clock: str, calendar: str) -> str:
    """A duration on a clock: `30m elapsed`, `2d elapsed`; business time in hours with the
    business days of that calendar's length (a day is not 24 hours there: 48h on a 12-hour
    calendar is `48h business (4bd)`, never `2d`), and the calendar's name when the file has
    more than one (`2h business warsaw (0.25bd)`)."""
    if clock != "business":
        return f"{format_duration(amount)} {clock}"
    hours, rest = divmod(amount, HOUR)
    where = "" if len(policy.calendars) == 1 else f" {calendar}"
    days = amount / policy.calendars[calendar].day_length
    return f"{hours}h{format_duration(rest) if rest else ''} business{where} ({days:.3g}bd)"


def _more_targets(policy: Policy) -> list[str]:
    """One line per severity that uses next_response, periodic_update, warn_before or
    repeating escalations (nothing for a policy that uses none of them)."""
    lines: list[str] = []
    for level in sorted(policy.severities):
        rules = policy.severities[level]
        parts: list[str] = []
        for rule in rules.clocked:
            label = rule.metric.replace("_", " ")
            text = ""
            if rule.rounds:
                every = "every " if rule.metric == "periodic_update" else ""
                text = f"{label} {every}{spelled(policy, rule.target, rule.clock, rule.calendar)}"
                text += ", pausable" if rule.pausable else ""
                if rule.warn_at:
                    text += ", warn at " + ", ".join(f"{f:g}" for f in rule.warn_at)
            if rule.warn_before:
                leads = ", ".join(format_duration(lead) for lead in rule.warn_before)
                text = f"{text or label}, warn {leads} before the breach"
            if text:
                parts.append(text)
        for esc in rules.escalations:
            if esc.repeat_every:
                times = "until resolved" if esc.max_repeats is None else f"{esc.max_repeats}x"
                every = spelled(policy, esc.repeat_every, esc.clock, esc.calendar)
                parts.append(f"L{esc.level} repeats every {every} ({times})")
        if parts:
            lines.append(f"  severity {level}: " + "; ".join(parts))
    return lines


def _wall(offset: int) -> str:
    hours, minutes = divmod(offset // 60_000_000, 60)
    return f"{hours:02d}:{minutes:02d}"


def describe_week(cal: BusinessCalendar) -> str:
    """``mon, tue, wed, thu, fri 08:00-18:30`` when every open day has the same hours, else
    each day's (``mon 09:00-12:00,13:00-17:00; ...``); a night shift reads ``22:00-06:00``."""

    def hours(day: int) -> str:
        return ",".join(f"{_wall(start)}-{_wall(end % DAY or DAY)}" for start, end in cal.week[day])

    open_days = [day for day in range(7) if cal.week[day]]
    if all(cal.week[day] == cal.week[open_days[0]] for day in open_days):
        if len(open_days) == 7 and cal.week[0] == ((0, DAY),):
            return "24x7"
        return f"{', '.join(WEEKDAYS[day] for day in open_days)} {hours(open_days[0])}"
    return "; ".join(f"{WEEKDAYS[day]} {hours(day)}" for day in open_days)


def _json_line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def _table_line(record: dict[str, Any]) -> bytes:
    """at, ticket, type, metric, due, then what is particular to the type."""
    extra = {
        "sla.warning": lambda r: f"threshold={r['threshold']:g}",
        "sla.met": lambda r: f"took={format_duration(round(r['took_seconds'] * 1e6))} {r['clock']}",
        "ticket.escalated": lambda r: f"level={r['level']} to={r['to']}",
        "customer.notification_required": lambda r: f"eta={r['eta']}",
        "sla.retracted": lambda r: f"retracts={r['retracted_type']} {r['retracts']}",
    }.get(record["type"], lambda r: "")(record)
    text = (
        f"{record['at']}  {record['ticket_id']:<8} sev{record['severity']}  "
        f"{record['type']:<31} {record['metric']:<15} due {record['due_at']}  {extra}"
    )
    return text.rstrip().encode() + b"\n"


def quiet_gc() -> None:
    """Tune the garbage collector for a long fold over many live ticket states.

    The core allocates a few short-lived containers per event and frees them by reference
    counting; with the default thresholds the collector still walks the live ticket states
    over and over (about 6% of replay time, measured with bench_replay.py). Objects alive now
    are frozen out of its view and young collections run 50x less often. Cycles are still
    collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)


GC_THRESHOLD = 35_000
"""Allocations between young-generation collections (Python's default is 700)."""


def run_backtest(args: argparse.Namespace, read: Callable[[], list[bytes]]) -> int:
    """`escalator backtest` once its history source is chosen: `read` returns the JSONL lines
    (OSError or ValueError: a message naming the source)."""
    try:
        current = load_policy(args.policy)
        proposed = load_policy(args.against)
        until = parse_instant(args.until) if args.until else None
    except PolicyError as exc:
        return _fail(str(exc))
    except ValueError as exc:
        return _fail(f"--until: {exc}")
    try:
        lines = read()
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    quiet_gc()
    report = backtest(lines, current, proposed, until)
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(format_table(report))
    return 0


def _replay(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.policy)
        until = parse_instant(args.until) if args.until else None
    except PolicyError as exc:
        return _fail(str(exc))
    except ValueError as exc:
        return _fail(f"--until: {exc}")
    try:
        max_delay = parse_delay(args.max_delay)
    except ValueError as exc:
        return _fail(f"--max-delay: {exc}")
    try:
        source: IO[bytes] = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115
    except OSError as exc:
        return _fail(f"--input: cannot read {args.input}: {exc.strerror}")

    def invalid(line: int, reason: str) -> None:
        print(f"line {line}: {reason}", file=sys.stderr)

    quiet_gc()
    replayer = Replayer(policy, max_delay)
    out = sys.stdout.buffer
    line = _table_line if args.format == "table" else _json_line
    batch: list[bytes] = []
    with source:
        for record in replayer.run(source, until, invalid):
            batch.append(line(record))
            if len(batch) >= 1024:
                out.write(b"".join(batch))
                batch.clear()
    out.write(b"".join(batch))
    out.flush()
    c = replayer.counts
    print(
        f"replay: {c.events + c.invalid} lines, {c.emitted} SLA events, {c.invalid} invalid, "
        f"{c.rejected} rejected, {c.duplicates} duplicates, "
        f"{len(replayer.tickets)} tickets in state"
        + (f", {c.late} late ({c.retracted} retracted)" if c.late or c.retracted else "")
        + (f", {c.beyond_horizon} beyond the correction horizon" if c.beyond_horizon else ""),
        file=sys.stderr,
    )
    return 0
