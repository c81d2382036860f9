"""Backtesting a policy change: one history replayed under the current and a proposed policy.

A support manager tries a contract change on last quarter's tickets without touching live
data: both runs are the embedded replay (`streams.sla.replay`), so they are exactly what the
engine would have emitted. The comparison counts, per policy, severity and metric, the tickets
met and breached under each policy and the difference; lists the tickets whose outcome
changes; and the escalations gained or lost.

An outcome is per ticket, metric and resolution cycle: `met` (an `sla.met`), `breached` (an
`sla.breached`), or `-` (still running at the end, or stopped without a reply).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from events.instants import Micros
from streams.sla.replay import Replayer
from streams.sla.rules import Policy

Outcomes = dict[tuple[str, str, int], tuple[str, int, str, str]]
"""(ticket, metric, cycle) -> (policy name, severity, metric, `met` or `breached`). An OLA's
outcome is its agreement's (`ola l1`), and its key's metric names the ownership cycle
(`group_ownership l1@2`): each cycle has its own outcome."""

Escalation = tuple[str, int, int, str]
"""(ticket, cycle, level, to)."""

Skipped = list[dict[str, Any]]
"""Input lines a run skipped: ``{"line": N, "reason": ...}`` (invalid, or rejected by the
policy, e.g. a severity it does not define)."""


def _run(
    lines: Iterable[bytes], policy: Policy, until: Micros | None
) -> tuple[Outcomes, set[Escalation], Skipped]:
    """Outcomes and escalations as they stand at the end: an event withdrawn by an
    `sla.retracted` correction (a late input line) no longer counts."""
    outcomes: Outcomes = {}
    escalations: set[Escalation] = set()
    outcome_of: dict[str, tuple[str, str, int]] = {}  # event id -> the outcome it set
    escalation_of: dict[str, Escalation] = {}
    skipped: Skipped = []

    def skip(line: int, reason: str) -> None:
        skipped.append({"line": line, "reason": reason})

    for record in Replayer(policy).records(lines, until, skip):
        metric = record["metric"]
        name = record["policy"]["name"]
        key = (record["ticket_id"], metric, record["cycle"])
        agreement = record.get("agreement")
        if agreement is not None and agreement["kind"] == "ola":
            name = f"ola {agreement['name']}"
            key = (key[0], f"{metric} {agreement['name']}@{record.get('round', 0)}", key[2])
        if record["type"] == "sla.met" or record["type"] == "sla.breached":
            outcome = "met" if record["type"] == "sla.met" else "breached"
            outcomes[key] = (name, record["severity"], metric, outcome)
            outcome_of[record["event_id"]] = key
        elif record["type"] == "ticket.escalated":
            escalation = (record["ticket_id"], record["cycle"], record["level"], record["to"])
            escalations.add(escalation)
            escalation_of[record["event_id"]] = escalation
        elif record["type"] == "sla.retracted":
            withdrawn = outcome_of.pop(record["retracts"], None)
            if withdrawn is not None:
                outcomes.pop(withdrawn, None)
            escalations.discard(escalation_of.pop(record["retracts"], ("", 0, 0, "")))
    return outcomes, escalations, skipped


def backtest(
    lines: list[bytes], current: Policy, proposed: Policy, until: Micros | None = None
) -> dict[str, Any]:
    """The comparison as a JSON-ready dict: `summary` rows (policy, severity, metric, met and
    breached under each, differences), `changed` tickets, `escalations_gained`/`_lost`, and
    the input lines each run `skipped` (a line one policy rejects and the other runs, such as a
    severity only one defines, explains outcomes that look like changes)."""
    before, escalated_before, skipped_before = _run(lines, current, until)
    after, escalated_after, skipped_after = _run(lines, proposed, until)
    counts: Counter[tuple[str, int, str, str, str]] = Counter()
    for side, outcomes in (("current", before), ("proposed", after)):
        for name, severity, metric, outcome in outcomes.values():
            counts[(name, severity, metric, side, outcome)] += 1
    rows = sorted({(name, sev, metric) for name, sev, metric, _, _ in counts})
    summary = []
    for name, severity, metric in rows:
        cells = {
            f"{outcome}_{side}": counts[(name, severity, metric, side, outcome)]
            for side in ("current", "proposed")
            for outcome in ("met", "breached")
        }
        summary.append(
            {
                "policy": name,
                "severity": severity,
                "metric": metric,
                **cells,
                "met_difference": cells["met_proposed"] - cells["met_current"],
                "breached_difference": cells["breached_proposed"] - cells["breached_current"],
            }
        )
    changed = [
        {
            "ticket_id": ticket,
            "metric": metric,
            "cycle": cycle,
            "current": before[key][3] if key in before else "-",
            "proposed": after[key][3] if key in after else "-",
        }
        for key in sorted(before.keys() | after.keys())
        for ticket, metric, cycle in [key]
        if (before.get(key) or ("", 0, "", "-"))[3] != (after.get(key) or ("", 0, "", "-"))[3]
    ]

    def listed(found: set[Escalation]) -> list[dict[str, Any]]:
        return [
            {"ticket_id": t, "cycle": c, "level": level, "to": to}
            for t, c, level, to in sorted(found)
        ]

    return {
        "current": {"name": current.name, "version": current.version},
        "proposed": {"name": proposed.name, "version": proposed.version},
        "summary": summary,
        "changed": changed,
        "escalations_gained": listed(escalated_after - escalated_before),
        "escalations_lost": listed(escalated_before - escalated_after),
        "skipped": {"current": skipped_before, "proposed": skipped_after},
    }


def format_table(report: dict[str, Any]) -> str:
    """The report for people: the summary table, then the changes."""
    header = ("policy", "sev", "metric", "met", "", "", "breached", "", "")
    sub = ("", "", "", "current", "proposed", "diff", "current", "proposed", "diff")
    rows: list[tuple[str, ...]] = [header, sub]
    for r in report["summary"]:
        rows.append(
            (
                r["policy"],
                str(r["severity"]),
                r["metric"],
                str(r["met_current"]),
                str(r["met_proposed"]),
                f"{r['met_difference']:+d}",
                str(r["breached_current"]),
                str(r["breached_proposed"]),
                f"{r['breached_difference']:+d}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    cur, new = report["current"], report["proposed"]
    lines = [
        f"current: {cur['name']} ({cur['version']})  proposed: {new['name']} ({new['version']})",
        "",
        *("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows),
        "",
        f"tickets whose outcome changes: {len(report['changed'])}",
        *(
            f"  {c['ticket_id']}  {c['metric']}  cycle {c['cycle']}: "
            f"{c['current']} -> {c['proposed']}"
            for c in report["changed"]
        ),
    ]
    for label in ("gained", "lost"):
        found = report[f"escalations_{label}"]
        lines.append(f"escalations {label}: {len(found)}")
        lines += [f"  {e['ticket_id']}  level {e['level']} to {e['to']}" for e in found]
    skipped = report["skipped"]
    both = [s for s in skipped["current"] if s in skipped["proposed"]]
    lines.append(
        f"lines skipped (invalid or rejected): {len(skipped['current'])} current, "
        f"{len(skipped['proposed'])} proposed"
    )
    for side in ("current", "proposed"):
        lines += [
            f"  line {s['line']} ({side} only): {s['reason']}"
            for s in skipped[side]
            if s not in both
        ]
    return "\n".join(lines)
