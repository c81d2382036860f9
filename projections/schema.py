"""The read-model schema as numbered migrations, in SQL that SQLite and PostgreSQL both accept.

Instants are BIGINT microseconds since the epoch (as in the SLA core), so comparisons and
indexes behave the same on both databases and no timezone conversion happens in SQL.
"""

from __future__ import annotations

from projections.db import Database

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "read models, SLA events, escalations, consumer offsets",
        [
            """CREATE TABLE tickets (
                ticket_id TEXT PRIMARY KEY,
                status TEXT NOT NULL,
                severity INTEGER NOT NULL,
                customer_id TEXT,
                assignee TEXT,
                group_name TEXT,
                reported_at BIGINT NOT NULL,
                first_response_at BIGINT,
                resolved_at BIGINT,
                closed_at BIGINT,
                cycle INTEGER NOT NULL,
                last_event_at BIGINT NOT NULL,
                fr_state TEXT,
                fr_due_at BIGINT,
                fr_paused_remaining BIGINT,
                fr_clock TEXT,
                res_state TEXT,
                res_due_at BIGINT,
                res_paused_remaining BIGINT,
                res_clock TEXT,
                sla_state TEXT,
                next_due_at BIGINT,
                escalation_level INTEGER NOT NULL,
                fr_elapsed BIGINT,
                fr_business BIGINT,
                res_elapsed BIGINT,
                res_business BIGINT,
                policy_version TEXT NOT NULL,
                state_json TEXT NOT NULL
            )""",
            "CREATE INDEX tickets_next_due ON tickets (next_due_at, ticket_id)",
            "CREATE INDEX tickets_sla_state_due ON tickets (sla_state, next_due_at)",
            "CREATE INDEX tickets_status_due ON tickets (status, next_due_at)",
            "CREATE INDEX tickets_customer ON tickets (customer_id, reported_at)",
            "CREATE INDEX tickets_group ON tickets (group_name, next_due_at)",
            "CREATE INDEX tickets_reported ON tickets (reported_at)",
            """CREATE TABLE sla_events (
                event_id TEXT PRIMARY KEY,
                ticket_id TEXT NOT NULL,
                type TEXT NOT NULL,
                metric TEXT NOT NULL,
                severity INTEGER NOT NULL,
                cycle INTEGER NOT NULL,
                due_at BIGINT NOT NULL,
                at BIGINT NOT NULL,
                level INTEGER,
                target TEXT,
                threshold DOUBLE PRECISION,
                took_seconds DOUBLE PRECISION,
                clock TEXT,
                eta BIGINT,
                policy_name TEXT NOT NULL,
                policy_version TEXT NOT NULL
            )""",
            "CREATE INDEX sla_events_ticket ON sla_events (ticket_id, at)",
            "CREATE INDEX sla_events_type ON sla_events (type, at)",
            "CREATE INDEX sla_events_at ON sla_events (at)",
            """CREATE TABLE escalations (
                event_id TEXT PRIMARY KEY,
                ticket_id TEXT NOT NULL,
                level INTEGER NOT NULL,
                target TEXT NOT NULL,
                severity INTEGER NOT NULL,
                cycle INTEGER NOT NULL,
                escalated_at BIGINT NOT NULL
            )""",
            "CREATE INDEX escalations_at ON escalations (escalated_at)",
            "CREATE INDEX escalations_ticket ON escalations (ticket_id)",
            """CREATE TABLE projector_offsets (
                topic TEXT NOT NULL,
                partition_id INTEGER NOT NULL,
                next_offset BIGINT NOT NULL,
                PRIMARY KEY (topic, partition_id)
            )""",
        ],
    ),
    (
        2,
        "tickets: the policy each ticket runs under (a file may hold several)",
        [
            "ALTER TABLE tickets ADD COLUMN policy_name TEXT",
            "CREATE INDEX tickets_policy ON tickets (policy_name, reported_at)",
        ],
    ),
    (
        3,
        "retracted SLA events",
        [
            # Ids withdrawn by an `sla.retracted` correction: deleted from sla_events and
            # escalations, and never stored again (a redelivered original stays out).
            "CREATE TABLE retracted_events (event_id TEXT PRIMARY KEY, ticket_id TEXT NOT NULL)",
        ],
    ),
    (
        4,
        "tickets: the business calendar that times each metric (a metric may name its own)",
        [
            # NULL on the elapsed clock, and on rows written before this migration until the
            # ticket's next event (queries then use its policy's calendar).
            "ALTER TABLE tickets ADD COLUMN fr_calendar TEXT",
            "ALTER TABLE tickets ADD COLUMN res_calendar TEXT",
        ],
    ),
    (
        5,
        "sla_events: the calendar that timed each event (as its policy reference names it)",
        [
            # `elapsed` for the elapsed clock; NULL for events that name none
            "ALTER TABLE sla_events ADD COLUMN policy_calendar TEXT",
        ],
    ),
    (
        6,
        "every metric of a ticket (next_response, periodic_update, ...); rounds and repeats",
        [
            # A JSON list of every metric the ticket's policy times, each with its state, due
            # instant, time left while paused, clock, calendar and round (model.ticket_row).
            # NULL when the ticket's metrics are only first_response and resolution, and on
            # rows written before this migration (the API then lists them from their columns).
            "ALTER TABLE tickets ADD COLUMN metrics_json TEXT",
            # The outbound fields of rounded metrics, repeated escalations and warnings by
            # lead time; NULL where the event has none.
            "ALTER TABLE sla_events ADD COLUMN round INTEGER",
            "ALTER TABLE sla_events ADD COLUMN repeat INTEGER",
            "ALTER TABLE sla_events ADD COLUMN before_seconds DOUBLE PRECISION",
        ],
    ),
    (
        7,
        "policy_activations: the policy.activated audit records (issue #22), one per rollout "
        "and partition",
        [
            """CREATE TABLE policy_activations (
                event_id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                version TEXT NOT NULL,
                digest TEXT NOT NULL,
                mode TEXT NOT NULL,
                at BIGINT NOT NULL,
                partition_id INTEGER NOT NULL,
                tickets_moved INTEGER NOT NULL,
                tickets_kept INTEGER NOT NULL
            )""",
            "CREATE INDEX policy_activations_at ON policy_activations (at, version)",
        ],
    ),
    (
        8,
        "several agreements on a ticket (issue #23): the agreement of each SLA event, and "
        "attributions (who held the ticket for how much of a metric's counted time)",
        [
            # NULL for events that name no agreement (a file without OLAs: the customer SLA)
            "ALTER TABLE sla_events ADD COLUMN agreement_kind TEXT",
            "ALTER TABLE sla_events ADD COLUMN agreement_name TEXT",
            "ALTER TABLE sla_events ADD COLUMN ownership_group TEXT",
            # One row per group and assignee of an event's `attribution` (sla.met,
            # sla.breached, sla.stopped), in its order (`position`); deleted with a retracted
            # event. `agreement_name` is the policy's name for the customer SLA.
            """CREATE TABLE attributions (
                event_id TEXT NOT NULL,
                position INTEGER NOT NULL,
                ticket_id TEXT NOT NULL,
                type TEXT NOT NULL,
                metric TEXT NOT NULL,
                agreement_kind TEXT NOT NULL,
                agreement_name TEXT NOT NULL,
                at BIGINT NOT NULL,
                group_name TEXT,
                assignee TEXT,
                seconds DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (event_id, position)
            )""",
            "CREATE INDEX attributions_at ON attributions (type, at)",
            "CREATE INDEX attributions_ticket ON attributions (ticket_id, at)",
        ],
    ),
    (
        9,
        "sla_events: the reason, actor and exemption of sla.breach_reason and sla.stop_ended "
        "(issue 24)",
        [
            # NULL on every other event (and on rows written before this migration)
            "ALTER TABLE sla_events ADD COLUMN reason TEXT",
            "ALTER TABLE sla_events ADD COLUMN actor TEXT",
            "ALTER TABLE sla_events ADD COLUMN exempt INTEGER",
        ],
    ),
]

PROJECTION_TABLES = (
    "tickets", "sla_events", "escalations", "projector_offsets", "retracted_events",
    "policy_activations", "attributions",
)  # fmt: skip
"""Every table a rebuild empties, in an order that respects no foreign keys (there are none)."""


def migrate(db: Database) -> int:
    """Apply the migrations not yet applied, each in its own transaction; returns the version."""
    with db.tx():
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
        )
    applied = {row[0] for row in db.query("SELECT version FROM schema_migrations")}
    for version, name, statements in MIGRATIONS:
        if version in applied:
            continue
        with db.tx():
            for statement in statements:
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, name)
            )
    return max((v for v, _, _ in MIGRATIONS), default=0)


def truncate(db: Database) -> None:
    """Empty every projection table (offsets too): the start of a rebuild."""
    with db.tx():
        for table in PROJECTION_TABLES:
            db.execute(f"DELETE FROM {table}")
