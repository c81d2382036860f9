"""`escalator policy diff OLD NEW`: what a new policy version changes, before it is published.

Compares two compiled policies key by key, as `escalator policy check` prints them: each
policy's match conditions, each severity's targets (target on its clock and calendar, warn_at,
warn_before, pausable), escalation levels (after, to, repeats), calendars (zone, week,
holidays, closures, openings, business day) and the warnings of `policy check` gained or lost.
Pure: two `Policy` values in, a list of `Change` out; the command renders it as a table or
JSON. Durations are spelled as `policy check` spells them (`1h business (0.095bd)`).
"""

from __future__ import annotations

from dataclasses import dataclass

from events.instants import format_duration
from streams.sla.cli import describe_match, describe_week, spelled
from streams.sla.policy import check_policy
from streams.sla.rules import EscalationRule, MetricRule, Policy

METRICS = ("first_response", "resolution", "next_response", "periodic_update")


@dataclass(frozen=True, slots=True)
class Change:
    """One key whose value differs: `old` or `new` is "-" when the key is absent there."""

    section: str
    """`targets`, `escalations`, `matches`, `calendars`, `warnings` or `version`."""
    key: str
    """The key as the file spells it (`severity.2.first_response`; `policies.N.` prefixes a
    policy of a file with several, by name: `premium.severity.1.resolution`)."""
    old: str
    new: str

    def as_json(self) -> dict[str, str]:
        return {"section": self.section, "key": self.key, "old": self.old, "new": self.new}


def _metric(policy: Policy, rule: MetricRule | None) -> str:
    if rule is None:
        return "-"
    parts = [spelled(policy, rule.target, rule.clock, rule.calendar)]
    if rule.pausable:
        parts.append("pausable")
    if rule.warn_at:
        parts.append("warn at " + ", ".join(f"{f:g}" for f in rule.warn_at))
    if rule.warn_before:
        parts.append("warn " + ", ".join(format_duration(x) for x in rule.warn_before) + " before")
    return ", ".join(parts)


def _escalation(policy: Policy, esc: EscalationRule | None) -> str:
    if esc is None:
        return "-"
    text = f"after {spelled(policy, esc.after, esc.clock, esc.calendar)} to {esc.to}"
    if esc.repeat_every:
        times = "until resolved" if esc.max_repeats is None else f"{esc.max_repeats}x"
        text += f", repeats every {spelled(policy, esc.repeat_every, esc.clock, esc.calendar)}"
        text += f" ({times})"
    return text


def _children(policy: Policy) -> dict[str, Policy]:
    return {child.name: child for child in policy.policies} if policy.policies else {"": policy}


def diff_policies(old: Policy, new: Policy) -> list[Change]:
    """Every difference between two policy versions, in file order (see the module doc)."""
    changes: list[Change] = []

    def add(section: str, key: str, before: str, after: str) -> None:
        if before != after:
            changes.append(Change(section, key, before, after))

    add("version", "version", old.version, new.version)
    add("version", "digest", old.digest, new.digest)
    for name in dict.fromkeys([*old.calendars, *new.calendars]):
        a, b = old.calendars.get(name), new.calendars.get(name)
        key = "calendar" if name == "default" else f"calendars.{name}"

        def describe(policy: Policy, cal_name: str) -> dict[str, str]:
            cal = policy.calendars.get(cal_name)
            if cal is None:
                return {}
            return {
                "timezone": cal.timezone,
                "hours": describe_week(cal),
                "holidays": (cal.holidays or "none")
                + (f" ({', '.join(cal.holiday_categories)})" if cal.holiday_categories else ""),
                "closures": str(len(cal.closures) + len(cal.partial_closures))
                + f" + {len(cal.closed_spans)} timed",
                "openings": str(len(cal.openings)),
                "business day": format_duration(cal.day_length),
            }

        if a is None or b is None:
            add("calendars", key, "-" if a is None else "defined", "-" if b is None else "defined")
            continue
        before, after = describe(old, name), describe(new, name)
        for field in before:
            add("calendars", f"{key}.{field}", before[field], after[field])
    old_children, new_children = _children(old), _children(new)
    for name in dict.fromkeys([*old_children, *new_children]):
        pa, pb = old_children.get(name), new_children.get(name)
        prefix = f"{name}." if name else ""
        if pa is None or pb is None:
            add("matches", f"{prefix}policy", "-" if pa is None else "defined",
                "-" if pb is None else "defined")  # fmt: skip
            continue
        if name:
            add("matches", f"{prefix}match", describe_match(pa.match), describe_match(pb.match))
            order_a = [p.name for p in old.policies].index(name)
            order_b = [p.name for p in new.policies].index(name)
            add("matches", f"{prefix}order", str(order_a), str(order_b))
        for level in sorted({*pa.severities, *pb.severities}):
            key = f"{prefix}severity.{level}"
            ra, rb = pa.severities.get(level), pb.severities.get(level)
            if ra is None or rb is None:
                add("targets", key, "-" if ra is None else "defined",
                    "-" if rb is None else "defined")  # fmt: skip
                continue
            for metric in METRICS:
                add("targets", f"{key}.{metric}", _metric(pa, ra.metric(metric)),  # type: ignore[arg-type]
                    _metric(pb, rb.metric(metric)))  # type: ignore[arg-type]  # fmt: skip
            for index in range(max(len(ra.escalations), len(rb.escalations))):
                ea = ra.escalations[index] if index < len(ra.escalations) else None
                eb = rb.escalations[index] if index < len(rb.escalations) else None
                add("escalations", f"{key}.escalations.{index}", _escalation(pa, ea),
                    _escalation(pb, eb))  # fmt: skip
    before_warnings, after_warnings = check_policy(old), check_policy(new)
    for warning in before_warnings:
        if warning not in after_warnings:
            key, _, text = warning.partition(": ")
            changes.append(Change("warnings", key, text, "-"))
    for warning in after_warnings:
        if warning not in before_warnings:
            key, _, text = warning.partition(": ")
            changes.append(Change("warnings", key, "-", text))
    return changes


def format_diff(old: Policy, new: Policy, changes: list[Change]) -> str:
    """The changes as an aligned table, headed by both versions."""
    lines = [
        f"policy {old.name} {old.version} ({old.digest[:19]}) -> "
        f"{new.name} {new.version} ({new.digest[:19]})"
    ]
    if not changes:
        return "\n".join([*lines, "no changes"])
    rows = [("section", "key", "old", "new")] + [(c.section, c.key, c.old, c.new) for c in changes]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(3)]
        lines.append("  ".join([*cells, row[3]]).rstrip())
    return "\n".join(lines)
