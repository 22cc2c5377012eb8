"""Valid evidence values to start tests from, and the worked example of the format document."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ec

from attestd.evidence import (
    Binding,
    EvidencePredicate,
    RuntimeEvent,
    Statement,
    Subject,
    TeeClaims,
    canonical_json,
    encode_event,
    event_digest,
    extend_head,
    key_id,
    public_key_pem,
    replay,
    subjects_digest,
)
from attestd.evidence.binding import leaf_bytes, report_data_for_root
from attestd.evidence.merkle import inclusion_proof, leaf_hash, tree_root
from attestd.evidence.runtime_log_format import INITIAL_LOG_HEAD, Caller

# The document's example key: a fixed scalar, so every value below is reproducible.
EXAMPLE_KEY_SCALAR = int.from_bytes(hashlib.sha256(b"attestd example agent key").digest()) % (
    0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
)


def example_key() -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(EXAMPLE_KEY_SCALAR, ec.SECP256R1())


def example_subjects() -> tuple[Subject, ...]:
    # Given out of order on purpose: the digest sorts by name.
    return (
        Subject("model/weights.safetensors", {"sha256": hashlib.sha256(b"weights").hexdigest()}),
        Subject("data/train.jsonl", {"sha256": hashlib.sha256(b"train").hexdigest()}),
    )


def example_log() -> tuple[RuntimeEvent, ...]:
    return (
        RuntimeEvent(0, "pipeline", "stage.start", b"train", "2026-11-23T10:00:00.000000Z"),
        RuntimeEvent(
            1, "model", "load", b"model/weights.safetensors", "2026-11-23T10:00:01.500000Z"
        ),
    )


def example_binding() -> Binding:
    return Binding(
        nonce=bytes(range(32)),
        subjects_digest=subjects_digest(example_subjects()),
        log_head=replay(example_log()),
        agent_key_id=key_id(example_key().public_key()),
        issued_at=datetime(2026, 11, 23, 10, 0, 2, tzinfo=UTC),
    )


def example_values() -> dict[str, str]:
    """Every value the worked example in docs/evidence-format.md shows, by block name."""
    key = example_key().public_key()
    log = example_log()
    head1 = extend_head(INITIAL_LOG_HEAD, event_digest(log[0]))
    called = dataclasses.replace(log[0], caller=Caller(pid=4242, uid=1000, gid=100))
    binding = example_binding()
    ordered = sorted(example_subjects(), key=lambda s: s.name)
    return {
        "agent-public-key": public_key_pem(key).strip(),
        "agent-key-id": key_id(key),
        "subjects-jcs": canonical_json([s.to_json() for s in ordered]).decode(),
        "subjects-digest": subjects_digest(example_subjects()),
        "event0-encoding": encode_event(log[0]).decode(),
        "event0-digest": event_digest(log[0]).hex(),
        "event0-with-caller-encoding": encode_event(called).decode(),
        "event0-with-caller-digest": event_digest(called).hex(),
        "head-after-event0": head1.hex(),
        "event1-digest": event_digest(log[1]).hex(),
        "head-after-event1": replay(log).hex(),
        "binding-jcs": canonical_json(binding.to_json()).decode(),
        **example_batch_values(binding),
    }


def example_batch_bindings() -> list[Binding]:
    """The worked example's batch of three: the example binding is leaf 1.

    The neighbours differ only in their nonces (bytes 0x20.. and 0x40..).
    """
    binding = example_binding()
    before = dataclasses.replace(binding, nonce=bytes(range(0x20, 0x40)))
    after = dataclasses.replace(binding, nonce=bytes(range(0x40, 0x60)))
    return [before, binding, after]


def example_batch_values(binding: Binding) -> dict[str, str]:
    """The batch part of the worked example, computed by the Merkle rules of section 8."""
    leaves = [leaf_bytes(b) for b in example_batch_bindings()]
    proof = inclusion_proof(leaves, 1)
    root = tree_root(leaves)
    return {
        "batch-leaf-hash": leaf_hash(leaf_bytes(binding)).hex(),
        "batch-audit-path": "\n".join(h.hex() for h in proof.audit_path),
        "batch-root": root.hex(),
        "report-data": report_data_for_root(root).hex(),
    }


def make_statement(
    key: ec.EllipticCurvePrivateKey | None = None,
    *,
    tee: str = "tdx",
    log_length: int = 3,
) -> Statement:
    """A consistent statement: subjects, log and key all match the binding."""
    key = key or example_key()
    subjects = example_subjects()
    log = tuple(
        RuntimeEvent(i, "pipeline", f"stage.{i}", b"step %d" % i, "2026-11-23T10:00:00.000000Z")
        for i in range(log_length)
    )
    binding = Binding(
        nonce=b"\x42" * 32,
        subjects_digest=subjects_digest(subjects),
        log_head=replay(log),
        agent_key_id=key_id(key.public_key()),
        issued_at=datetime(2026, 11, 23, 10, 0, 2, 123456, tzinfo=UTC),
    )
    root = "attestd-simulated-tdx-root" if tee == "tdx" else "attestd-simulated-ark"
    predicate = EvidencePredicate(
        binding=binding,
        tee=TeeClaims(tee, True, root, "simulated"),
        quote=b"\x04\x00\x02\x00" + bytes(60),
        runtime_log=log,
        agent_key_pem=public_key_pem(key.public_key()),
        agent_version="0.1.0",
        host={"hostname": "node-1", "kernel": "6.8.0", "cpus": 16},
        certificates=(b"\x30\x82\x01\x00",) if tee == "sev-snp" else (),
    )
    return Statement(subjects, predicate)
