"""The in-toto Statement v1 that carries attestd evidence.

Subjects are the attested artifacts; the predicate holds the binding, the
hardware quote, the runtime log, the agent key and a description of the host::

    statement = Statement(tuple(subjects), EvidencePredicate(binding, tee, quote, ...))
    payload = canonical_json(statement.to_json())
    assert parse_statement(payload) == statement
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from attestd.evidence import _json
from attestd.evidence.binding import BatchMembership, Binding, Subject
from attestd.evidence.canonical import canonical_json
from attestd.evidence.errors import EvidenceFormatError
from attestd.evidence.keys import (
    KEY_ID_PATTERN,
    MAX_PUBLIC_KEY_PEM_CHARS,
    pem_key_id,
)
from attestd.evidence.runtime_log_format import (
    LOG_START,
    LogCheckpoint,
    RuntimeEvent,
    event_from_json,
    event_to_json,
)
from attestd.tee import _cache

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
"""The in-toto ``_type`` of every statement."""

EVIDENCE_PREDICATE_TYPE = "https://attestd.dev/evidence/v1"
"""The ``predicateType`` of attestd evidence; docs/evidence-format.md defines it."""

MAX_QUOTE_BYTES = 64 * 1024
"""Largest quote or report (a TDX quote with its PCK chain is about 5 KiB)."""

MAX_CERTIFICATES = 8
MAX_CERTIFICATE_BYTES = 16 * 1024
MAX_RUNTIME_LOG_EVENTS = 65_536
"""Most events one statement may carry; the envelope's size bound applies as well."""

MAX_CCEL_BYTES = 4 * 1024 * 1024
"""Largest CC event log carried (firmware logs are tens of KiB; the ACPI area is at most 4 MiB)."""
MAX_COLLATERAL_JSON_BYTES = 256 * 1024

MAX_SUBJECTS = 4096
MAX_HOST_JSON_BYTES = 64 * 1024
MAX_LABEL_LENGTH = 256

_STATEMENT_FIELDS = ("_type", "subject", "predicateType", "predicate")
_PREDICATE_FIELDS = (
    "binding", "batch", "tee", "quote", "certificates", "collateral", "ccel", "runtimeLog",
    "agent", "host",
)  # fmt: skip
_CCEL_FIELDS = ("table", "log")
_TEE_FIELDS = ("type", "simulated", "rootOfTrust", "backend")
_AGENT_FIELDS = ("keyId", "publicKey", "version")

TEE_TYPES = ("tdx", "sev-snp")
"""The values of ``predicate.tee.type``: the TEE families evidence can come from."""


class DescribesTee(Protocol):
    """Anything that describes a TEE as evidence needs it (the TEE layer's ``TeeDescription``)."""

    @property
    def tee(self) -> str: ...
    @property
    def simulated(self) -> bool: ...
    @property
    def root_of_trust(self) -> str: ...
    @property
    def backend(self) -> str: ...


@dataclass(frozen=True)
class TeeClaims:
    """What the agent's TEE backend says about itself (``predicate.tee``).

    ``tee`` is one of :data:`TEE_TYPES`, spelled as on the wire; the agent and
    the verifier convert to and from the TEE layer's own types at their edges.
    ``root_of_trust`` names the root the quote chains to, so that simulated
    evidence can never pass for hardware evidence.
    """

    tee: str
    simulated: bool
    root_of_trust: str
    backend: str

    @classmethod
    def of(cls, description: DescribesTee) -> TeeClaims:
        """The claims of a TEE description, its type as the plain string evidence carries."""
        return cls(
            str(description.tee),
            description.simulated,
            description.root_of_trust,
            description.backend,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "type": str(self.tee),
            "simulated": self.simulated,
            "rootOfTrust": self.root_of_trust,
            "backend": self.backend,
        }

    @classmethod
    def from_json(cls, obj: object, path: str) -> TeeClaims:
        members = _json.obj(obj, path, fields=_TEE_FIELDS)
        kind = _json.string(members["type"], f"{path}.type", max_len=16)
        if kind not in TEE_TYPES:
            _json.fail(f"{path}.type", f"{kind!r} is not one of {', '.join(TEE_TYPES)}")
        simulated = _json.boolean(members["simulated"], f"{path}.simulated")
        root = _json.string(
            members["rootOfTrust"], f"{path}.rootOfTrust", min_len=1, max_len=MAX_LABEL_LENGTH
        )
        backend = _json.string(
            members["backend"], f"{path}.backend", min_len=1, max_len=MAX_LABEL_LENGTH
        )
        return cls(kind, simulated, root, backend)


@dataclass(frozen=True)
class EvidencePredicate:
    """The ``predicate`` of an evidence statement.

    ``quote`` is the TEE's raw quote (TDX) or attestation report (SNP);
    ``certificates`` holds DER certificates the quote needs and does not embed
    (the SNP VCEK chain), possibly none. ``collateral`` is the TDX DCAP
    collateral (dcap-qvl's QuoteCollateralV3 JSON object) when the agent ships
    it, and ``ccel`` the CC event log (ACPI table and log area) when the
    machine has one; both are ``null`` in JSON otherwise. ``batch`` places
    the binding in the Merkle tree whose root the quote carries; left out, it
    is the batch of one (:meth:`BatchMembership.alone`). ``log_start`` is the
    checkpoint ``runtime_log`` follows (``logStart``; the beginning, and then
    no member, by default): the log carries the events after it only.
    """

    binding: Binding
    tee: TeeClaims
    quote: bytes
    runtime_log: tuple[RuntimeEvent, ...]
    agent_key_pem: str
    agent_version: str
    host: Mapping[str, object]
    certificates: tuple[bytes, ...] = field(default=())
    collateral: Mapping[str, object] | None = None
    ccel: CcelBlob | None = None
    batch: BatchMembership | None = None
    log_start: LogCheckpoint = LOG_START

    def __post_init__(self) -> None:
        if self.batch is None:
            # Frozen: the one place a default that depends on another field is filled in.
            object.__setattr__(self, "batch", BatchMembership.alone(self.binding))

    @property
    def membership(self) -> BatchMembership:
        """The binding's place in its batch (never None once constructed)."""
        assert self.batch is not None  # filled in by __post_init__
        return self.batch

    def to_json(self) -> dict[str, object]:
        document: dict[str, object] = {
            "binding": self.binding.to_json(),
            "batch": self.membership.to_json(),
            "tee": self.tee.to_json(),
            "quote": _json.b64_encode(self.quote),
            "certificates": [_json.b64_encode(c) for c in self.certificates],
            "collateral": dict(self.collateral) if self.collateral is not None else None,
            "ccel": self.ccel.to_json() if self.ccel is not None else None,
            "runtimeLog": [event_to_json(e) for e in self.runtime_log],
            "agent": {
                "keyId": pem_key_id(self.agent_key_pem),
                "publicKey": self.agent_key_pem,
                "version": self.agent_version,
            },
            "host": dict(self.host),
        }
        if not self.log_start.is_start:
            # Absent from the beginning, so evidence carrying the whole log is unchanged.
            document["logStart"] = self.log_start.to_json()
        return document

    @classmethod
    def from_json(cls, obj: object, path: str = "$") -> EvidencePredicate:
        members = _json.obj(obj, path)
        # Exactly the listed members, plus the optional "logStart".
        _json.obj(
            {k: v for k, v in members.items() if k != "logStart"}, path, fields=_PREDICATE_FIELDS
        )
        log_start = (
            LogCheckpoint.from_json(members["logStart"], f"{path}.logStart")
            if "logStart" in members
            else LOG_START
        )
        binding = Binding.from_json(members["binding"], f"{path}.binding")
        batch = BatchMembership.from_json(members["batch"], f"{path}.batch")
        tee = TeeClaims.from_json(members["tee"], f"{path}.tee")
        quote = _json.b64_bytes(members["quote"], f"{path}.quote", max_size=MAX_QUOTE_BYTES)
        if not quote:
            _json.fail(f"{path}.quote", "quote is empty")
        certs = _json.array(
            members["certificates"], f"{path}.certificates", max_len=MAX_CERTIFICATES
        )
        certificates = tuple(
            _json.b64_bytes(c, f"{path}.certificates[{i}]", max_size=MAX_CERTIFICATE_BYTES)
            for i, c in enumerate(certs)
        )
        log = _json.array(
            members["runtimeLog"], f"{path}.runtimeLog", max_len=MAX_RUNTIME_LOG_EVENTS
        )
        events = tuple(event_from_json(e, f"{path}.runtimeLog[{i}]") for i, e in enumerate(log))
        pem, version = _agent_from_json(members["agent"], f"{path}.agent")
        host = _json.obj(members["host"], f"{path}.host")
        size = _jcs_size(host, f"{path}.host")
        if size > MAX_HOST_JSON_BYTES:
            _json.fail(f"{path}.host", f"{size} bytes of JSON, more than {MAX_HOST_JSON_BYTES}")
        collateral = _collateral_from_json(members["collateral"], f"{path}.collateral")
        ccel = CcelBlob.from_json(members["ccel"], f"{path}.ccel")
        return cls(
            binding,
            tee,
            quote,
            events,
            pem,
            version,
            dict(host),
            certificates,
            collateral,
            ccel,
            batch,
            log_start,
        )


@dataclass(frozen=True)
class CcelBlob:
    """The CC event log as the firmware left it: the ACPI CCEL table and the log area."""

    table: bytes
    log: bytes

    def to_json(self) -> dict[str, object]:
        return {"table": _json.b64_encode(self.table), "log": _json.b64_encode(self.log)}

    @classmethod
    def from_json(cls, obj: object, path: str) -> CcelBlob | None:
        if obj is None:
            return None
        members = _json.obj(obj, path, fields=_CCEL_FIELDS)
        return cls(
            table=_json.b64_bytes(members["table"], f"{path}.table", max_size=4096),
            log=_json.b64_bytes(members["log"], f"{path}.log", max_size=MAX_CCEL_BYTES),
        )


# JCS sizes of objects whose members are all strings, by content: a platform's collateral
# and a host's description come in every piece of its evidence, and their size is all that
# is asked here. Keys are at most the largest collateral allowed; bounded LRU.
_JCS_SIZES: _cache.ValidityCache[tuple[tuple[str, object], ...], int] = _cache.ValidityCache(
    "evidence.jcs_sizes", maxsize=64
)


def _jcs_size(members: Mapping[str, object], path: str) -> int:
    """The length of ``canonical_json(members)``; EvidenceFormatError (at ``path``) if none."""
    key = tuple(members.items())
    # Hashable, and JCS depends on them alone; a key too large is not worth keeping.
    texts = [v for _, v in key if type(v) is str]
    cacheable = len(texts) == len(key) and (
        sum(len(k) for k, _ in key) + sum(map(len, texts)) <= MAX_COLLATERAL_JSON_BYTES
    )
    start, end = _cache.ALWAYS
    size = _JCS_SIZES.get(key, start) if cacheable else None
    if size is None:
        try:
            size = len(canonical_json(members))
        except EvidenceFormatError as exc:
            raise EvidenceFormatError(exc.message, path=path) from exc
        if cacheable:
            _JCS_SIZES.put(key, size, not_before=start, not_after=end)
    return size


def _collateral_from_json(obj: object, path: str) -> Mapping[str, object] | None:
    if obj is None:
        return None
    members = _json.obj(obj, path)
    size = _jcs_size(members, path)
    if size > MAX_COLLATERAL_JSON_BYTES:
        _json.fail(path, f"{size} bytes of JSON, more than {MAX_COLLATERAL_JSON_BYTES}")
    return dict(members)


def _agent_from_json(obj: object, path: str) -> tuple[str, str]:
    members = _json.obj(obj, path, fields=_AGENT_FIELDS)
    claimed = _json.string(members["keyId"], f"{path}.keyId", max_len=71, pattern=KEY_ID_PATTERN)
    pem = _json.string(members["publicKey"], f"{path}.publicKey", max_len=MAX_PUBLIC_KEY_PEM_CHARS)
    try:
        actual = pem_key_id(pem)
    except EvidenceFormatError as exc:
        raise EvidenceFormatError(exc.message, path=f"{path}.publicKey") from exc
    if claimed != actual:
        _json.fail(f"{path}.keyId", f"{claimed} is not the id of publicKey ({actual})")
    version = _json.string(
        members["version"], f"{path}.version", min_len=1, max_len=MAX_LABEL_LENGTH
    )
    return pem, version


@dataclass(frozen=True)
class Statement:
    """An in-toto Statement v1 whose predicate is an EvidencePredicate."""

    subjects: tuple[Subject, ...]
    predicate: EvidencePredicate

    def to_json(self) -> dict[str, object]:
        return {
            "_type": STATEMENT_TYPE,
            "subject": [s.to_json() for s in self.subjects],
            "predicateType": EVIDENCE_PREDICATE_TYPE,
            "predicate": self.predicate.to_json(),
        }

    @classmethod
    def from_json(cls, obj: object) -> Statement:
        members = _json.obj(obj, "$", fields=_STATEMENT_FIELDS)
        if members["_type"] != STATEMENT_TYPE:
            _json.fail("$._type", f"expected {STATEMENT_TYPE!r}")
        if members["predicateType"] != EVIDENCE_PREDICATE_TYPE:
            _json.fail("$.predicateType", f"expected {EVIDENCE_PREDICATE_TYPE!r}")
        raw = _json.array(members["subject"], "$.subject", max_len=MAX_SUBJECTS)
        if not raw:
            # in-toto Statement v1 requires a subject; attestd names its agent when no artifact.
            _json.fail("$.subject", "a statement names at least one subject")
        subjects = tuple(Subject.from_json(s, f"$.subject[{i}]") for i, s in enumerate(raw))
        seen: set[str] = set()
        for i, subject in enumerate(subjects):
            if subject.name in seen:
                _json.fail(f"$.subject[{i}].name", f"{subject.name!r} appears more than once")
            seen.add(subject.name)
        return cls(subjects, EvidencePredicate.from_json(members["predicate"], "$.predicate"))


MAX_STATEMENT_BYTES = 12 * 1024 * 1024
"""Largest statement payload parse_statement reads (the envelope adds base64)."""


def parse_statement(payload: bytes) -> Statement:
    """Strictly parse a statement from JSON bytes (an envelope's payload)."""
    return Statement.from_json(
        _json.loads(payload, what="statement", max_bytes=MAX_STATEMENT_BYTES)
    )


class StatementTemplate:
    """The JCS bytes of statements that share all but their subjects, binding and batch.

    A batch's statements carry the same quote, runtime log, collateral and
    host; JCS of those is computed once, and each statement's own members are
    spliced in. The bytes equal ``canonical_json(statement.to_json())``
    exactly (JCS is the concatenation of its members' encodings in key order)::

        template = StatementTemplate(shared_predicate)
        payload = template.encode(subjects, binding, batch)
    """

    _SLOTS = ("subject", "binding", "batch")

    def __init__(self, shared: EvidencePredicate) -> None:
        token = secrets.token_hex(16)
        marks = {slot: f"attestd-slot-{slot}-{token}" for slot in self._SLOTS}
        document = Statement((), shared).to_json()
        # The predicate as the statement just encoded it: encoding it again (the quote's
        # base64, every log event, the key id from the PEM) would repeat all of it.
        encoded_predicate = document["predicate"]
        assert isinstance(encoded_predicate, dict)  # EvidencePredicate.to_json's dict
        predicate = dict(encoded_predicate)
        predicate["binding"] = marks["binding"]
        predicate["batch"] = marks["batch"]
        document["subject"] = marks["subject"]
        document["predicate"] = predicate
        encoded = canonical_json(document)
        found: list[tuple[int, str, bytes]] = []
        for slot, mark in marks.items():
            quoted = canonical_json(mark)
            if encoded.count(quoted) != 1:  # a random token: never, but never silently
                raise EvidenceFormatError(f"the statement template's {slot} slot is ambiguous")
            found.append((encoded.index(quoted), slot, quoted))
        found.sort()
        self._pieces: list[bytes] = []
        self._order: list[str] = []
        at = 0
        for position, slot, quoted in found:
            self._pieces.append(encoded[at:position])
            self._order.append(slot)
            at = position + len(quoted)
        self._pieces.append(encoded[at:])

    def encode(
        self, subjects: Sequence[Subject], binding: Binding, batch: BatchMembership
    ) -> bytes:
        """``canonical_json(Statement(subjects, shared with binding and batch).to_json())``."""
        values = {
            "subject": canonical_json([s.to_json() for s in subjects]),
            "binding": canonical_json(binding.to_json()),
            "batch": canonical_json(batch.to_json()),
        }
        out = [self._pieces[0]]
        for slot, piece in zip(self._order, self._pieces[1:], strict=True):
            out += (values[slot], piece)
        return b"".join(out)
