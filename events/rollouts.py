"""Policy rollouts on the wire (issue #22): the policy topic's records and the audit event.

- `PolicyRollout`: one record per version on the compacted policy topic (key: the version
  label), written by `escalator policy publish` and read by every worker before it processes
  input and while it runs. It carries the policy file's text, so a worker needs no file.
- `PolicyActivated` (`policy.activated`): the audit record a worker writes to the SLA topic
  when a partition's watermark passes a rollout's instant, once per rollout and partition
  (in the partition's transaction, so a crash neither drops nor repeats it), with the
  partition's tickets moved to the version and kept on their own. Ids and counts only.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from events.ids import _uuid5
from events.outbound import MAX_COUNT, Id, Timestamp
from events.text import Printable

RolloutMode = Literal["new-tickets", "open-tickets"]
"""`new-tickets`: tickets opened at or after the instant use the version, open tickets finish
on theirs; `open-tickets`: every open ticket moves to it at the instant as well."""
ROLLOUT_MODES: Final[tuple[RolloutMode, ...]] = ("new-tickets", "open-tickets")
Digest = Annotated[
    str,
    Field(
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="sha256: and the hex SHA-256 of the policy file's content (every key, "
        "as canonical JSON): the version's identity.",
    ),
]
MAX_POLICY_BYTES: Final = 512 * 1024
"""A policy file's text on the topic, at most (the largest shipped example is 4 KiB)."""


class PolicyRollout(BaseModel):
    """A policy version and how it takes effect: the policy topic's record (key: `version`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Id = Field(description="The file's `version` key, or its default hash.")
    digest: Digest
    name: Id = Field(description="The policy file's `name`.")
    mode: RolloutMode
    at: Timestamp = Field(
        description="The instant it takes effect: an event-time watermark on the event "
        "clock, a wall-clock instant on the wall clock (compared with event time)."
    )
    published_at: Timestamp = Field(description="When `escalator policy publish` wrote it.")
    source: Printable = Field(max_length=1024, description="The file name it was read from.")
    text: str = Field(max_length=MAX_POLICY_BYTES, description="The policy file, as TOML.")


class PolicyActivated(BaseModel):
    """`policy.activated`: a rollout took effect on one partition of the SLA topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["policy.activated"] = "policy.activated"
    event_id: Id = Field(description="Deterministic: a UUIDv5 of version, digest, partition.")
    name: Id = Field(description="The policy file's `name`.")
    version: Id
    digest: Digest
    mode: RolloutMode
    at: Timestamp = Field(description="The rollout's instant.")
    partition: int = Field(ge=0, le=MAX_COUNT, description="The input (and SLA) partition.")
    tickets_moved: int = Field(
        ge=0, le=MAX_COUNT, description="Open tickets of the partition moved to the version."
    )
    tickets_kept: int = Field(
        ge=0,
        le=MAX_COUNT,
        description="Open tickets of the partition that stay on the version that attached "
        "them (new-tickets mode, or a version that cannot time them).",
    )


def activation_id(version: str, digest: str, partition: int) -> str:
    """The `policy.activated` event id: the same from every worker and after any restart."""
    return _uuid5(f"policy.activated\x1f{version}\x1f{digest}\x1f{partition}".encode())
