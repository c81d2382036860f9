"""The table of every setting of every service, from each service's own settings model.

The settings themselves are one configuration model on the ground floor (base.settings: the
same flag and environment names everywhere); each service declares its own beside its code.
`python -m deploy.settings` prints the table of every setting of every service that
docs/operations.md carries; `python -m deploy.settings --update docs/operations.md` rewrites it
there (a test compares them).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from base.settings import DEPRECATED_FLAGS, Settings, env_names, flag
from projections.settings import ProjectionsSettings, QuerySettings, RebuildSettings
from streams.engine.settings import ClientSettings, EngineSettings, PolicyPublishSettings
from streams.ingest.settings import IngestSettings
from streams.notify.settings import NotifySettings

SECRETS: dict[str, str] = {
    "ESCALATOR_API_TOKEN": "bearer token the API, dashboard data and metrics require "
    "(projections serve; at least 16 characters)",
    "ESCALATOR_INGEST_TOKEN": "bearer token for POST /v1/events (ingest)",
    "ESCALATOR_ZENDESK_SECRET": "Zendesk webhook signing secret (ingest)",
    "ESCALATOR_JSM_SECRET": "Jira webhook secret, HMAC-SHA256 (ingest)",
    "ESCALATOR_ZAMMAD_SECRET": "Zammad webhook HMAC token (ingest)",
}
"""Secrets: read from the environment only (never a flag, never logged); name -> what."""


SERVICES: dict[str, type[Settings]] = {
    "run": EngineSettings,
    "projections serve": ProjectionsSettings,
    "projections rebuild": RebuildSettings,
    "publish, tail": ClientSettings,
    "policy publish": PolicyPublishSettings,
    "query": QuerySettings,
    "ingest": IngestSettings,
    "notify": NotifySettings,
}
"""Every command's settings model, for the settings table (services add themselves here)."""


# ---------------------------------------------------------------------- settings table


def rows() -> Iterator[tuple[str, str, str, str]]:
    """(flag, environment, default, commands) for every setting of every service."""
    seen: dict[str, tuple[str, str, dict[str, list[str]], set[str]]] = {}
    for command, model in SERVICES.items():
        for name, field in model.model_fields.items():
            names = env_names(field)
            if not names:
                continue
            env_text = " / ".join(f"`{n}`" for n in names[:1]) + "".join(
                f" (or `{n}`, deprecated)" for n in names[1:]
            )
            default = "" if field.default is None else f"`{field.default}`"
            if name not in seen:
                seen[name] = (env_text, field.description or "", {}, set())
            seen[name][2].setdefault(default, []).append(command)
            seen[name][3].add(command)
    for name, (env_text, description, defaults, commands) in seen.items():
        old = [o for o, n in DEPRECATED_FLAGS.items() if n == flag(name)]
        flag_text = f"`{flag(name)}`" + "".join(f" (or `{o}`, deprecated)" for o in old)
        ordered = [c for c in SERVICES if c in commands]
        default_text = (
            next(iter(defaults))
            if len(defaults) == 1
            else ", ".join(f"{value} ({', '.join(where)})" for value, where in defaults.items())
        )
        yield flag_text, env_text, default_text, f"{description} ({', '.join(ordered)})"


def markdown_table() -> str:
    lines = ["| flag | environment | default | what (commands) |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows()]
    lines += [f"| (none: secret) | `{name}` | | {what} |" for name, what in SECRETS.items()]
    return "\n".join(lines)


def update_readme(path: str) -> None:
    """Replace the settings table in the Markdown page at `path` by the current one."""
    readme = Path(path)
    text = readme.read_text(encoding="utf-8")
    start = text.index(markdown_table().splitlines()[0])
    end = text.find("\n\n", start)
    end = len(text) if end < 0 else end
    readme.write_text(text[:start] + markdown_table() + text[end:], encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--update"]:
        update_readme(sys.argv[2] if len(sys.argv) > 2 else "docs/operations.md")
    else:
        print(markdown_table())
