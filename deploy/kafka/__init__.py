"""Maven project that resolves the local Kafka broker\x27s jars (see deploy/kafka_local.py)."""
