"""`escalator ingest`: HTTP in front of `ticket-events` (contract events and vendor webhooks)."""
