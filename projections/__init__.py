"""Read models of SLA state for ops teams: what is about to breach, what has breached, who was
escalated, how we are doing against the SLA.

Layers (the Kafka and HTTP parts are thin shells around pure functions):

- `model`: pure. A ticket row is a function of the core `TicketState` (folded from the
  ticket's events with `streams.sla.fold.handle`, whose emitted events are ignored), the
  ticket's extras (assignee, group, closed time) and the set of SLA events seen for it. The
  sla-events topic is the source of truth for warnings, breaches and met; the fold supplies
  deadlines, pauses and cycles. The row does not depend on how the two topics interleave, so
  a rebuild equals the live tables.
- `store`: applies a batch of one (topic, partition) and stores that partition's next offset
  in the same transaction; SLA events are keyed by event_id (duplicates are no-ops), ticket
  events are deduplicated by the core's `seen` ids; redelivered offsets are skipped.
- `projector`: aiokafka consumer group on both topics; seeks to the DB offsets on assignment;
  `rebuild` replays both topics from the start with manual assignment.
- `schema` / `db`: numbered migrations in portable SQL; SQLite (default) or PostgreSQL.
- `queries`: the questions, for the API (`api`, OpenAPI in `openapi`, wall screen in
  `dashboard.html`) and the CLI (`cli`: `escalator projections ...`, `escalator query ...`).

Times are int microseconds in the tables; `remaining` is computed at query time on each
metric's own clock (business or elapsed). `breaching_within` is a wall-clock window over the
next running deadline.
"""
