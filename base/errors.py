"""The root of the project's own exceptions, so a caller (and the command line) can catch every
error Escalator raises on purpose with one `except`, and tell it from a bug."""

from __future__ import annotations


class EscalatorError(Exception):
    """An error Escalator raises on purpose: bad input, configuration, or an unavailable
    service. Subclasses also derive from the built-in type they always were (`ValueError`,
    `RuntimeError`), so existing `except ValueError` callers keep working."""
