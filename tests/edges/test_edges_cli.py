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
