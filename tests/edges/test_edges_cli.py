"""`escalator ingest` and `escalator notify` refuse to start without their secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def escalator(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATOR_")}
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args],
        cwd=REPO,
        env={**clean, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_ingest_without_any_source_secret_exits_2_naming_the_variables() -> None:
    result = escalator("ingest", "--broker", "127.0.0.1:1", env={})
    assert result.returncode == 2
    assert "ESCALATOR_INGEST_TOKEN" in result.stderr
    assert "ESCALATOR_ZENDESK_SECRET" in result.stderr


def test_notify_names_a_missing_channel_secret_and_never_prints_a_set_one(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[channels.a]\nkind = "webhook"\nurl = "http://127.0.0.1:1/"\nsecret_env = "A_SECRET"\n'
        '[channels.b]\nkind = "pagerduty"\nrouting_key_env = "B_KEY"\n'
        '[[rules]]\nname = "all"\nchannels = ["a", "b"]\n'
    )
    result = escalator("notify", "--rules", str(rules), env={"A_SECRET": "very-secret-value"})
    assert result.returncode == 2
    assert "B_KEY" in result.stderr and "A_SECRET" not in result.stderr
    assert "very-secret-value" not in result.stderr + result.stdout


def test_notify_rules_error_names_file_and_key(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[channels.a]\nkind = "webhook"\nurl = "http://x"\n[[rules]]\nname = "r"\n')
    result = escalator("notify", "--rules", str(rules), env={})
    assert result.returncode == 2
    assert str(rules) in result.stderr
    assert "channels.a.webhook.secret_env: Field required" in result.stderr
    assert "rules.0.channels: Field required" in result.stderr


def test_notify_refuses_at_start_up_what_would_deliver_nothing(tmp_path: Path) -> None:
    """#19 item 11: each of these was accepted, then every event consumed and none delivered."""
    hook = '[channels.a]\nkind = "webhook"\nurl = "{url}"\nsecret_env = "S"\n{extra}\n'
    rule = '[[rules]]\nname = "r"\nchannels = ["a"]\nmatch = {{ {match} }}\n'
    cases = [
        (hook.format(url="not a url", extra="") + rule.format(match=""), "channels.a.webhook.url"),
        (hook.format(url="http://127.0.0.1:1/", extra="timeout = 1e9") + rule.format(match=""),
         "channels.a.webhook.timeout"),
        ("rules = []\n" + hook.format(url="http://127.0.0.1:1/", extra=""), "rules: List"),
        (hook.format(url="http://127.0.0.1:1/", extra="")
         + rule.format(match='type = "ticket.escalate"'), "rules.0.match.type"),
        (hook.format(url="http://127.0.0.1:1/", extra="") + rule.format(match='severity = "one"'),
         "rules.0.match.severity"),
    ]  # fmt: skip
    for text, key in cases:
        rules = tmp_path / "rules.toml"
        rules.write_text(text)
        result = escalator("notify", "--rules", str(rules), env={"S": "s"})
        assert result.returncode == 2, text
        assert f"escalator notify: {rules}: " in result.stderr and key in result.stderr, text
