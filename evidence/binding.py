"""The binding: the small object whose hash the hardware quote carries.

A batch of bindings is hashed into an RFC 9162 Merkle tree
(:mod:`attestd.evidence.merkle`, leaf = JCS of one binding), and
``report_data = SHA-512(BATCH_ROOT_TAG || root)`` is 64 bytes, exactly the
REPORTDATA of a TDX quote and an SNP report. Each binding names its verifier's
nonce, the digest of the statement's subjects, the runtime-log head and the
agent key, so the quote vouches for all four through the root::

    binding = Binding(nonce, subjects_digest(subjects), replay(log), key_id(pub), now)
    quote = backend.get_quote(report_data_for(binding))          # a batch of one
    quote = backend.get_quote(report_data_for_root(root))        # a batch of many

A verifier checks each link the quote cannot see for itself, by name::

    broken = subjects_link(binding, statement.subjects)   # None, or BrokenLink(reason, detail)
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from attestd.evidence import _json, merkle
from attestd.evidence.canonical import canonical_json
from attestd.evidence.errors import (
    AgentKeyMismatchError,
    EvidenceError,
    EvidenceFormatError,
    NonceError,
    SubjectsMismatchError,
)
from attestd.evidence.keys import KEY_ID_PATTERN, pem_key_id
from attestd.evidence.runtime_log_format import (
    LOG_HEAD_SIZE,
    LOG_START,
    LogCheckpoint,
    RuntimeEvent,
    event_digest,
    extend_head,
    format_rfc3339,
    parse_rfc3339,
    replay_from,
)
from attestd.tee import _cache

MIN_NONCE_BYTES = 16
"""Shortest nonce a verifier may send: 128 bits, so guessing one is hopeless."""

MAX_NONCE_BYTES = 64
"""Longest nonce accepted; the nonce is hashed, so more buys nothing."""

REPORT_DATA_BYTES = 64
"""Size of report_data, equal to TDX and SNP REPORTDATA."""

MAX_SUBJECT_NAME_LENGTH = 4096
MAX_SUBJECT_DIGESTS = 16
MAX_DIGEST_HEX_LENGTH = 256

_ALGORITHM = re.compile(r"[A-Za-z0-9_-]{1,32}")
_ISSUED_AT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_BINDING_FIELDS = ("nonce", "subjectsDigest", "runtimeLogHead", "agentKeyId", "issuedAt")


def validate_nonce(nonce: bytes) -> None:
    """A nonce is bytes, MIN_NONCE_BYTES..MAX_NONCE_BYTES long (NonceError otherwise)."""
    if not isinstance(nonce, bytes):
        raise NonceError(f"nonce must be bytes, not {type(nonce).__name__}")
    if not MIN_NONCE_BYTES <= len(nonce) <= MAX_NONCE_BYTES:
        raise NonceError(
            f"nonce is {len(nonce)} bytes; it must be {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} "
            "bytes of fresh randomness"
        )


@dataclass(frozen=True)
class Subject:
    """An artifact the statement speaks about: a name and its digests.

    ``digest`` maps an algorithm (``sha256``, ``blake3``) to lowercase hex;
    ``sha256`` is always present.
    """

    name: str
    digest: Mapping[str, str]

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "digest": dict(self.digest)}

    @classmethod
    def from_json(cls, obj: object, path: str = "$") -> Subject:
        # Evidence names the same artifacts every time: a subject is read once per exact
        # JSON values (bounded; only subjects that parsed are kept). Each caller gets its
        # own digest dict, so that no change to one can reach the cache.
        key = _subject_key(obj)
        if key is None:
            return cls._from_json(obj, path)
        start, end = _cache.ALWAYS
        subject = _SUBJECTS.get(key, start)
        if subject is None:
            subject = cls._from_json(obj, path)
            _SUBJECTS.put(key, subject, not_before=start, not_after=end)
        return cls(subject.name, dict(subject.digest))

    @classmethod
    def _from_json(cls, obj: object, path: str) -> Subject:
        members = _json.obj(obj, path, fields=("name", "digest"))
        name = _json.string(
            members["name"], f"{path}.name", min_len=1, max_len=MAX_SUBJECT_NAME_LENGTH
        )
        digests = _json.obj(members["digest"], f"{path}.digest")
        if "sha256" not in digests:
            _json.fail(f"{path}.digest.sha256", "required member is missing")
        if len(digests) > MAX_SUBJECT_DIGESTS:
            _json.fail(f"{path}.digest", f"more than {MAX_SUBJECT_DIGESTS} algorithms")
        out: dict[str, str] = {}
        for algorithm, value in digests.items():
            where = f"{path}.digest.{algorithm}"
            if not _ALGORITHM.fullmatch(algorithm):
                _json.fail(where, "algorithm names are 1..32 of [A-Za-z0-9_-]")
            size = 32 if algorithm == "sha256" else None
            raw = _json.hex_bytes(value, where, size=size, max_size=MAX_DIGEST_HEX_LENGTH // 2)
            if not raw:
                _json.fail(where, "digest is empty")
            out[algorithm] = raw.hex()
        return cls(name, out)


_SUBJECTS: _cache.ValidityCache[tuple[object, ...], Subject] = _cache.ValidityCache(
    "evidence.subjects", maxsize=4096
)
_CACHED_SUBJECT_CHARS = 1024


def _subject_key(obj: object) -> tuple[object, ...] | None:
    """A subject object's exact values (str only), or None where it may not be cached."""
    if type(obj) is not dict or len(obj) != 2:
        return None
    name, digest = obj.get("name"), obj.get("digest")
    if type(name) is not str or type(digest) is not dict:
        return None
    items = tuple(digest.items())
    chars = len(name)
    for algorithm, value in items:
        if type(value) is not str:
            return None
        chars += len(algorithm) + len(value)
    if chars > _CACHED_SUBJECT_CHARS:
        return None
    return (name, items)


def subjects_digest(subjects: Sequence[Subject]) -> str:
    """Lowercase hex SHA-256 of JCS of the subjects' JSON, sorted by name.

    Names sort by Unicode code point (the same order as their UTF-8 bytes), so
    the order the agent was asked in does not matter. A repeated name is an
    EvidenceFormatError: two digests for one name would be ambiguous.
    """
    key = _subjects_key(subjects)
    start, end = _cache.ALWAYS
    if key is not None:
        cached = _SUBJECTS_DIGESTS.get(key, start)
        if cached is not None:
            return cached
    ordered = sorted(subjects, key=lambda s: s.name)
    for before, after in itertools.pairwise(ordered):
        if before.name == after.name:
            raise EvidenceFormatError(f"subject {before.name!r} appears more than once")
    digest = hashlib.sha256(canonical_json([s.to_json() for s in ordered])).hexdigest()
    if key is not None:
        _SUBJECTS_DIGESTS.put(key, digest, not_before=start, not_after=end)
    return digest


# An agent attests the same artifacts in every piece of evidence: their digest is remembered
# by the exact names and digests (str only, so no two keys compare equal by accident), for
# lists of up to _CACHED_SUBJECTS whose names and digests total at most _CACHED_KEY_CHARS
# (so the whole cache stays within a few MiB). Only computed digests are kept. Bounded LRU.
_CACHED_SUBJECTS = 64
_CACHED_KEY_CHARS = 8192
_SUBJECTS_DIGESTS: _cache.ValidityCache[tuple[object, ...], str] = _cache.ValidityCache(
    "evidence.subjects_digests", maxsize=1024
)


def _subjects_key(subjects: Sequence[Subject]) -> tuple[object, ...] | None:
    if len(subjects) > _CACHED_SUBJECTS:
        return None
    key: list[object] = []
    chars = 0
    for subject in subjects:
        if type(subject) is not Subject or type(subject.name) is not str:
            return None
        name = subject.name
        items = tuple(subject.digest.items())
        chars += len(name)
        for algorithm, value in items:
            if type(algorithm) is not str or type(value) is not str:
                return None
            chars += len(algorithm) + len(value)
        if chars > _CACHED_KEY_CHARS:
            return None
        key.append((name, items))
    return tuple(key)


@dataclass(frozen=True)
class Binding:
    """What report_data commits to. Its JSON form is canonical: parse, re-emit, same bytes."""

    nonce: bytes
    subjects_digest: str
    log_head: bytes
    agent_key_id: str
    issued_at: datetime

    def to_json(self) -> dict[str, object]:
        return {
            "nonce": self.nonce.hex(),
            "subjectsDigest": {"sha256": self.subjects_digest},
            "runtimeLogHead": {"sha384": self.log_head.hex()},
            "agentKeyId": self.agent_key_id,
            "issuedAt": format_rfc3339(self.issued_at),
        }

    @classmethod
    def from_json(cls, obj: object, path: str = "$") -> Binding:
        members = _json.obj(obj, path, fields=_BINDING_FIELDS)
        nonce = _json.hex_bytes(members["nonce"], f"{path}.nonce", max_size=MAX_NONCE_BYTES)
        try:
            validate_nonce(nonce)
        except NonceError as exc:
            raise NonceError(exc.message, path=f"{path}.nonce") from exc
        sd = _json.obj(members["subjectsDigest"], f"{path}.subjectsDigest", fields=("sha256",))
        digest = _json.hex_bytes(sd["sha256"], f"{path}.subjectsDigest.sha256", size=32)
        lh = _json.obj(members["runtimeLogHead"], f"{path}.runtimeLogHead", fields=("sha384",))
        head = _json.hex_bytes(lh["sha384"], f"{path}.runtimeLogHead.sha384", size=LOG_HEAD_SIZE)
        key = _json.string(
            members["agentKeyId"], f"{path}.agentKeyId", max_len=71, pattern=KEY_ID_PATTERN
        )
        issued = _json.string(
            members["issuedAt"], f"{path}.issuedAt", max_len=27, pattern=_ISSUED_AT
        )
        try:
            issued_at = parse_rfc3339(issued)
        except EvidenceFormatError as exc:
            raise EvidenceFormatError(exc.message, path=f"{path}.issuedAt") from exc
        return cls(nonce, digest.hex(), head, key, issued_at)


BATCH_ROOT_TAG = b"attestd-evidence-batch-root-v1\x00"
"""Domain tag hashed before a batch root, so report_data can never be read as another hash."""


_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
# JCS of a binding whose strings need no escaping: members in code-point order, no spaces.
_LEAF_TEMPLATE = (
    '{"agentKeyId":"%s","issuedAt":"%s","nonce":"%s",'
    '"runtimeLogHead":{"sha384":"%s"},"subjectsDigest":{"sha256":"%s"}}'
)


def leaf_bytes(binding: Binding) -> bytes:
    """A binding's Merkle leaf: JCS of its JSON form."""
    key, digest = binding.agent_key_id, binding.subjects_digest
    if (
        type(key) is str
        and type(digest) is str
        and KEY_ID_PATTERN.fullmatch(key)
        and _HEX_SHA256.fullmatch(digest)
    ):
        # Every string is then hex, a key id or an RFC 3339 time: plain ASCII that JCS
        # writes as it is, so the template gives canonical_json's bytes without its walk.
        issued = format_rfc3339(binding.issued_at)
        if issued.isascii() and issued.isprintable() and '"' not in issued and "\\" not in issued:
            values = (key, issued, binding.nonce.hex(), binding.log_head.hex(), digest)
            return (_LEAF_TEMPLATE % values).encode("ascii")
    return canonical_json(binding.to_json())


def report_data_for_root(root: bytes) -> bytes:
    """``SHA-512(BATCH_ROOT_TAG || root)``: the 64 bytes placed in TDX/SNP REPORTDATA.

    The one report_data rule: ``root`` is the RFC 9162 root over the batch's
    leaves (:func:`leaf_bytes`), a tree of one for a lone request.
    """
    if len(root) != merkle.HASH_SIZE:
        raise EvidenceFormatError(f"a batch root is {merkle.HASH_SIZE} bytes, not {len(root)}")
    return hashlib.sha512(BATCH_ROOT_TAG + root).digest()


def report_data_for(binding: Binding) -> bytes:
    """report_data of a batch of one: :func:`report_data_for_root` of that binding's leaf hash."""
    return report_data_for_root(merkle.tree_root([leaf_bytes(binding)]))


# -- the links the binding names ---------------------------------------------------------

AGENT_KEY_MISMATCH = AgentKeyMismatchError.reason
"""The agent key carried is not the one the binding names."""

SUBJECTS_MISMATCH = SubjectsMismatchError.reason
"""The subjects do not hash to the binding's subjects digest."""

LOG_HEAD_MISMATCH = "runtime_log_mismatch"
"""The runtime log does not replay (to the binding's head, or to a quoted register)."""


@dataclass(frozen=True)
class BrokenLink:
    """A binding link that does not hold: a stable ``reason`` and a sentence for people."""

    reason: str
    detail: str


def agent_key_link(binding: Binding, agent_key_pem: str) -> BrokenLink | None:
    """``None`` if ``agent_key_pem`` is the key the binding names.

    A PEM that is not a P-256 public key raises EvidenceFormatError: that is
    malformed evidence, not a broken link.
    """
    actual = pem_key_id(agent_key_pem)
    named = binding.agent_key_id
    if not hmac.compare_digest(actual.encode(), named.encode()):
        return BrokenLink(
            AGENT_KEY_MISMATCH, f"the statement's agent key is {actual}, the binding names {named}"
        )
    return None


def subjects_link(binding: Binding, subjects: Sequence[Subject]) -> BrokenLink | None:
    """``None`` if ``subjects`` hash to the binding's subjects digest."""
    actual = subjects_digest(subjects)
    bound = binding.subjects_digest
    if not hmac.compare_digest(actual.encode(), bound.encode()):
        return BrokenLink(
            SUBJECTS_MISMATCH, f"the subjects hash to {actual}, the binding says {bound}"
        )
    return None


def log_head_link(
    binding: Binding, events: Sequence[RuntimeEvent], start: LogCheckpoint = LOG_START
) -> BrokenLink | None:
    """``None`` if ``events``, replayed from ``start``, reach the binding's runtime-log head.

    ``start`` is the checkpoint the evidence's log begins at (``logStart``,
    the beginning when absent). A log that does not replay at all (a gap in
    sequences) is a broken link too. Whether the head is also a quoted
    register (TDX RTMR3) is the TEE's check.
    """
    try:
        head = replay_from(start, events)
    except EvidenceError as err:
        return BrokenLink(LOG_HEAD_MISMATCH, err.message)
    if not hmac.compare_digest(head, binding.log_head):
        return BrokenLink(
            LOG_HEAD_MISMATCH,
            f"{len(events)} events replay to {head.hex()}, "
            f"the binding's head is {binding.log_head.hex()}",
        )
    return None


def replays_through_head(
    binding: Binding,
    events: Sequence[RuntimeEvent],
    start: LogCheckpoint = LOG_START,
    *,
    register: tuple[str, bytes] | None = None,
) -> BrokenLink | None:
    """``None`` if some prefix of ``events`` (possibly none or all), from ``start``, reaches
    the binding's head, and the whole log reaches ``register`` (its name and quoted value).

    On TDX the agent snapshots the head when it cuts a batch, then carries
    the log up to the RTMR3 value actually quoted, which may include events
    recorded while the quote was in flight; the whole log must then replay to
    the quoted register, and the binding's head must lie on the way. Each
    event is digested once for both.
    """
    try:
        heads = _heads(start, events)  # sequences without gaps, or a broken link
    except EvidenceError as err:
        return BrokenLink(LOG_HEAD_MISMATCH, err.message)
    if not any(hmac.compare_digest(head, binding.log_head) for head in heads):
        return BrokenLink(
            LOG_HEAD_MISMATCH,
            f"no prefix of the {len(events)} events replays to the binding's head "
            f"{binding.log_head.hex()}",
        )
    if register is not None:
        name, value = register
        if not hmac.compare_digest(heads[-1], value):
            return BrokenLink(
                LOG_HEAD_MISMATCH,
                f"{len(events)} events replay to {heads[-1].hex()}, the quote's {name} is "
                f"{value.hex()}",
            )
    return None


def _heads(start: LogCheckpoint, events: Sequence[RuntimeEvent]) -> list[bytes]:
    """Every head :func:`replay_from` passes through, ``start.head`` first: one digest per event.

    Fails exactly as :func:`replay_from` does (it is called to name a gap in sequences).
    """
    heads = [start.head]
    for offset, event in enumerate(events):
        if event.sequence != start.length + offset:
            replay_from(start, events)  # raises LogReplayError naming this position
        heads.append(extend_head(heads[-1], event_digest(event)))
    return heads


# -- the batch: leaf -> inclusion proof -> root ------------------------------------------


@dataclass(frozen=True)
class BatchMembership:
    """A binding's place in its batch (``predicate.batch``): the root and the inclusion proof."""

    root: bytes
    proof: merkle.InclusionProof

    @classmethod
    def alone(cls, binding: Binding) -> BatchMembership:
        """The membership of a batch of one: the root is the leaf hash, the path is empty."""
        return cls(merkle.tree_root([leaf_bytes(binding)]), merkle.InclusionProof(0, 1, ()))

    def to_json(self) -> dict[str, object]:
        return {
            "root": self.root.hex(),
            "leafIndex": self.proof.leaf_index,
            "treeSize": self.proof.tree_size,
            "auditPath": [h.hex() for h in self.proof.audit_path],
        }

    @classmethod
    def from_json(cls, obj: object, path: str) -> BatchMembership:
        members = _json.obj(obj, path, fields=_BATCH_FIELDS)
        root = _json.hex_bytes(members["root"], f"{path}.root", size=merkle.HASH_SIZE)
        # Ranges only: an index or size that does not fit the path is a named appraisal
        # failure (batch_leaf_index_invalid, batch_tree_size_invalid), not malformed JSON.
        index = _json.integer(members["leafIndex"], f"{path}.leafIndex")
        size = _json.integer(
            members["treeSize"], f"{path}.treeSize", minimum=1, maximum=merkle.MAX_TREE_SIZE
        )
        raw = _json.array(members["auditPath"], f"{path}.auditPath", max_len=merkle.MAX_AUDIT_PATH)
        audit = tuple(
            _json.hex_bytes(h, f"{path}.auditPath[{i}]", size=merkle.HASH_SIZE)
            for i, h in enumerate(raw)
        )
        return cls(root, merkle.InclusionProof(index, size, audit))


_BATCH_FIELDS = ("root", "leafIndex", "treeSize", "auditPath")


def batch_link(binding: Binding, batch: BatchMembership) -> BrokenLink | None:
    """``None`` if the binding's leaf and the inclusion proof climb to the batch's root.

    Whether the root is the one the quote carries is :func:`report_data_for_root`'s
    comparison, made by the caller with the verified quote.
    """
    try:
        merkle.verify_inclusion(leaf_bytes(binding), batch.proof, batch.root)
    except merkle.MerkleProofError as err:
        return BrokenLink(err.reason, err.message)
    return None
