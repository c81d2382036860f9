"""The fold's entry points under their old module name, for `streams.sla.replay` and
`streams.engine.processor` only, until those import `streams.sla.fold` (issue #21: the
timer driver shared by both is being rewritten at the same time). Nothing else imports this.
"""

from __future__ import annotations

from streams.sla.fold import advance, handle

__all__ = ["advance", "handle"]
