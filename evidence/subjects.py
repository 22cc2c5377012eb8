"""Which subjects a statement names: its artifacts, or the agent when there are none.

An in-toto Statement v1 must name at least one subject; the reference
validators (``in_toto_attestation``, the Go ``v1`` package) refuse an empty
list. Evidence from an agent that has measured nothing, and the provenance of
a stage with no outputs, have no artifact to name, so they name the agent
itself: its evidence key, whose digest is the SHA-256 of the key's DER
SubjectPublicKeyInfo (exactly the hex of its key id)::

    subjects = statement_subjects(artifacts, key_id(public_key))
    # artifacts non-empty → the artifacts; empty → (agent_subject(key_id(public_key)),)

The agent subject is an ordinary subject everywhere: it is hashed into the
binding's subjects digest, so the quote vouches for it like any artifact. A
verifier checks that it names the evidence's own key (:func:`agent_subject_link`)
and leaves it out wherever artifacts are meant (:func:`artifact_subjects`).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Protocol, TypeVar

from attestd.evidence.binding import BrokenLink, Subject
from attestd.evidence.errors import EvidenceError
from attestd.evidence.keys import KEY_ID_PATTERN

AGENT_SUBJECT_PREFIX = "attestd:agent/"
"""Names starting with this are reserved for the agent subject; no artifact may use them."""


class AgentSubjectError(EvidenceError):
    """An agent subject that is not the agent's key, or one where artifacts are named."""

    reason = "agent_subject_mismatch"


AGENT_SUBJECT_MISMATCH = AgentSubjectError.reason
"""The statement's agent subject is forged, misplaced, or names another key."""


class Named(Protocol):
    """Anything a statement may list as a subject: a name and its JSON form."""

    @property
    def name(self) -> str: ...

    def to_json(self) -> dict[str, object]: ...


_A = TypeVar("_A", bound=Named)


def agent_subject(agent_key_id: str) -> Subject:
    """The subject naming the agent whose key id is ``agent_key_id`` (``sha256:<hex>``)."""
    if not KEY_ID_PATTERN.fullmatch(agent_key_id):
        raise AgentSubjectError(f"{agent_key_id[:80]!r} is not a key id (sha256:<64 hex>)")
    return Subject(AGENT_SUBJECT_PREFIX + agent_key_id, {"sha256": agent_key_id[len("sha256:") :]})


def is_agent_subject(subject: Named) -> bool:
    """Whether ``subject`` uses the reserved agent-subject name (forged or not)."""
    return subject.name.startswith(AGENT_SUBJECT_PREFIX)


def statement_subjects(artifacts: Sequence[_A], agent_key_id: str) -> list[_A | Subject]:
    """The subjects a statement names: ``artifacts``, or the agent subject when there are none.

    This is the one place the rule lives; the agent's evidence and stage
    provenance both call it. An artifact whose name takes the reserved
    prefix is an AgentSubjectError: a verifier could not tell it from the agent.
    """
    for artifact in artifacts:
        if is_agent_subject(artifact):
            raise AgentSubjectError(
                f"artifact {artifact.name[:120]!r} uses the reserved prefix "
                f"{AGENT_SUBJECT_PREFIX!r}"
            )
    if artifacts:
        return list(artifacts)
    return [agent_subject(agent_key_id)]


def artifact_subjects(subjects: Sequence[_A]) -> list[_A]:
    """The subjects that are artifacts: ``subjects`` without the agent subject."""
    return [s for s in subjects if not is_agent_subject(s)]


def agent_subject_link(subjects: Sequence[Subject], agent_key_id: str) -> BrokenLink | None:
    """``None`` if ``subjects`` follow :func:`statement_subjects` for the agent ``agent_key_id``.

    Artifacts alone hold; the agent subject must be the only subject and name
    this key, with exactly the key's digest. Anything else under the reserved
    prefix is a forged agent subject.
    """
    claimed = [s for s in subjects if is_agent_subject(s)]
    if not claimed:
        return None
    if len(subjects) != 1:
        return BrokenLink(
            AGENT_SUBJECT_MISMATCH,
            f"an agent subject is named beside {len(subjects) - len(claimed)} artifacts; "
            "the agent is a subject only when there is no artifact",
        )
    expected = agent_subject(agent_key_id)
    actual = claimed[0]
    same_name = hmac.compare_digest(actual.name.encode(), expected.name.encode())
    if not same_name or dict(actual.digest) != dict(expected.digest):
        return BrokenLink(
            AGENT_SUBJECT_MISMATCH,
            f"the agent subject {actual.name[:120]!r} with digest {dict(actual.digest)} is not "
            f"the evidence's agent key {agent_key_id}",
        )
    return None
