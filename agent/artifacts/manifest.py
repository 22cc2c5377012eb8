"""A model's manifest as model_signing writes it, and its subject digest.

    m = measure(path, config=HashingConfig(algorithm="blake3"))
    m.manifest.resources[0]      # Resource(name='config.json', algorithm='blake3', digest='…')
    m.manifest.subject_digest    # SHA-256 hex, the in-toto subject model_signing signs
    m.manifest.to_json()         # the in-toto Statement model_signing signs, as JSON

Resource names are paths relative to the model (``.`` when the model is one
file); with shard serialization a resource is ``path:start:end`` (start
included, end excluded). Resources are ordered by path compared component by
component, then by start offset. The subject digest is SHA-256 over the raw
digest bytes of the resources in that order, whatever the resources' algorithm.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE: Final = "https://model_signing/signature/v1.0"


@dataclass(frozen=True, order=True)
class Resource:
    """One manifest entry: a file or a shard of one, and its digest."""

    name: str
    algorithm: str
    digest: str
    """Lowercase hex."""


@dataclass(frozen=True)
class Manifest:
    """model_signing's manifest of a model: name, serialization and resources."""

    model_name: str
    serialization: Mapping[str, Any]
    resources: tuple[Resource, ...]

    @property
    def subject_digest(self) -> str:
        """SHA-256 hex over the resources' raw digests, in manifest order."""
        return subject_digest(bytes.fromhex(r.digest) for r in self.resources)

    def statement(self) -> dict[str, Any]:
        """The in-toto Statement v1 model_signing signs for this manifest."""
        return {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": self.model_name, "digest": {"sha256": self.subject_digest}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "serialization": dict(self.serialization),
                "resources": [
                    {"name": r.name, "algorithm": r.algorithm, "digest": r.digest}
                    for r in self.resources
                ],
            },
        }

    def to_json(self) -> bytes:
        """:meth:`statement` as indented UTF-8 JSON."""
        return json.dumps(self.statement(), indent=2, ensure_ascii=False).encode()


def subject_digest(raw_digests: Iterable[bytes]) -> str:
    """SHA-256 hex of the concatenated raw digests (of no digests: SHA-256 of nothing)."""
    hasher = hashlib.sha256()
    for raw in raw_digests:
        hasher.update(raw)
    return hasher.hexdigest()
