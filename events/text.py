"""Strings of the contract: printable and bounded.

PostgreSQL text cannot hold NUL (U+0000), a terminal obeys control characters, and CR/LF split
log lines and e-mail headers. So no string of the contract (ids, names, tags, attributes,
`source`, `schema_version`) may contain a Unicode control character (general category Cc:
U+0000-U+001F, U+007F-U+009F): it is rejected at decode with the field named, by every shell
that decodes (ingest, worker, replay, projector), and the published JSON Schemas say the same
with a `pattern`. Other characters (spaces, `/`, `?`, `#`, any script) are allowed.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import Field

PRINTABLE_PATTERN: Final = r"^[^\u0000-\u001f\u007f-\u009f]*$"
"""No control character, in a syntax Rust's regex (pydantic-core), Python's `re` and ECMA 262
(JSON Schema) read alike."""
CONTROL_RULE: Final = "must not contain control characters (U+0000-U+001F, U+007F-U+009F)"
"""The reason given for a string that breaks PRINTABLE_PATTERN."""
MAX_TEXT: Final = 256
"""Most characters (code points) of an id, name, tag, attribute key or value, or `source`."""

Printable = Annotated[str, Field(pattern=PRINTABLE_PATTERN)]
"""A string without control characters (any length)."""

_CONTROL = re.compile("[\u0000-\u001f\u007f-\u009f]")


def has_control(text: str) -> bool:
    """Whether `text` holds a control character (see the module docstring)."""
    return _CONTROL.search(text) is not None


def escape_controls(text: str) -> str:
    """`text` with each control character shown as a visible escape (`\\x00`, `\\x1b`,
    `\\x85`), for terminals: what reaches one from stored data never moves its cursor."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
