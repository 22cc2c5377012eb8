"""The ``attestd.artifact`` events: how the agent logs a measurement and reads it back.

    content = measurement_content(measurement)   # logged as (ARTIFACT_DOMAIN, ARTIFACT_OPERATION)
    measurement = measurement_from_content(event)  # back again; RuntimeLogCorruptError if damaged
    artifact = subject_measurement(event)          # MeasuredArtifact if a subject, or None

Only the agent writes this domain (pipelines may not: attestd.agent.service
reserves the ``attestd.`` prefix), so an event here that does not read back is
damage to the log, not a caller's mistake.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from attestd.agent.artifacts import Measurement
from attestd.agent.errors import RuntimeLogCorruptError
from attestd.evidence import RuntimeEvent, canonical_json

ARTIFACT_DOMAIN = "attestd.artifact"
ARTIFACT_OPERATION = "measured"
"""A measurement on the CPU (sha256): its artifact may be an evidence subject."""
GPU_ARTIFACT_OPERATION = "measured-gpu"
"""A BLAKE3 measurement on the GPU: logged, but never a subject (subjects carry sha256)."""


@dataclass(frozen=True)
class MeasuredArtifact:
    """A measurement and the sequence of the runtime-log event that records it."""

    measurement: Measurement
    log_sequence: int


def measurement_content(m: Measurement) -> bytes:
    """The content of an ``attestd.artifact`` event: what was measured, as canonical JSON."""
    return canonical_json(
        {
            "name": m.name,
            "kind": m.kind,
            "digest": dict(m.digest),
            "sizeBytes": m.size_bytes,
            "fileCount": m.file_count,
        }
    )


def measurement_from_content(event: RuntimeEvent) -> Measurement:
    """The measurement an ``attestd.artifact`` event of our own log records."""
    try:
        data = json.loads(event.content)
        return Measurement(
            name=str(data["name"]),
            kind=data["kind"],
            digest={str(k): str(v) for k, v in dict(data["digest"]).items()},
            size_bytes=int(data["sizeBytes"]),
            file_count=int(data["fileCount"]),
        )
    except (ValueError, TypeError, KeyError) as err:
        # Only the agent writes this domain, so damage here is damage to the log.
        raise RuntimeLogCorruptError(
            f"runtime log event {event.sequence}: unreadable artifact measurement ({err!r})"
        ) from err


def subject_measurement(event: RuntimeEvent) -> MeasuredArtifact | None:
    """The artifact ``event`` measured, if it may become an evidence subject; else ``None``.

    Only CPU measurements qualify: GPU ones (``measured-gpu``) carry BLAKE3 alone,
    and other domains measure nothing.
    """
    if event.domain != ARTIFACT_DOMAIN or event.operation != ARTIFACT_OPERATION:
        return None
    return MeasuredArtifact(measurement_from_content(event), event.sequence)
