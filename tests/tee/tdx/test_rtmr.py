"""The RTMR rule is written once; the log head, the backends and the CCEL replay share it."""

from __future__ import annotations

import hashlib

import pytest

from attestd.evidence import INITIAL_LOG_HEAD, LOG_HEAD_SIZE, extend_head
from attestd.tee.tdx import rtmr


def test_extend_is_sha384_of_register_then_digest() -> None:
    register = bytes(range(48))
    digest = hashlib.sha384(b"event").digest()
    assert rtmr.extend(register, digest) == hashlib.sha384(register + digest).digest()
    assert rtmr.extend(register, digest) != rtmr.extend(digest, register)


@pytest.mark.parametrize(("register", "digest"), [(bytes(47), bytes(48)), (bytes(48), bytes(32))])
def test_extend_refuses_values_that_are_not_48_bytes(register: bytes, digest: bytes) -> None:
    with pytest.raises(ValueError, match="48-byte"):
        rtmr.extend(register, digest)


def test_the_runtime_log_head_is_an_rtmr() -> None:
    digest = hashlib.sha384(b"x").digest()
    assert LOG_HEAD_SIZE == rtmr.RTMR_SIZE == 48
    assert INITIAL_LOG_HEAD == rtmr.INITIAL_VALUE == bytes(48)
    assert extend_head(INITIAL_LOG_HEAD, digest) == rtmr.extend(rtmr.INITIAL_VALUE, digest)


def test_the_runtime_log_register_is_rtmr3() -> None:
    assert rtmr.RUNTIME_LOG_RTMR == 3
    assert rtmr.RUNTIME_LOG_RTMR in range(rtmr.RTMR_COUNT)
