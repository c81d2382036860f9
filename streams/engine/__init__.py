"""The streaming engine: the SLA core run as a Faust worker over Kafka.

`processor` holds everything per partition that is not I/O (decode, timer index, fold) so it
can be tested and benchmarked without a broker; `app` wires it to Faust topics, a table with a
changelog, a ticker and the web endpoints; `cli` is the `escalator run|publish|tail` shell.
"""
