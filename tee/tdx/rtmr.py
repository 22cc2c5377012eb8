"""The TDX runtime measurement registers (RTMRs): their size, their number, their extend rule.

    >>> from attestd.tee.tdx import rtmr
    >>> value = rtmr.extend(rtmr.INITIAL_VALUE, hashlib.sha384(b"event").digest())
    >>> rtmr.RUNTIME_LOG_RTMR   # 3: the register attestd's runtime log extends

A TD has four RTMRs of SHA-384 width, each reset to zero when the TD starts
and changed only by extension: ``RTMR' = SHA-384(RTMR || digest)``. attestd's
runtime log uses the same rule for its head, so a log replays to RTMR3. This
module is pure (no I/O, no other attestd imports) so that the evidence
format, the backends, the CCEL replay and the verifier all share it.
"""

from __future__ import annotations

import hashlib

RTMR_SIZE = 48
"""Bytes in one RTMR, and in a digest that extends it (SHA-384)."""

RTMR_COUNT = 4
"""RTMR0..RTMR3."""

RUNTIME_LOG_RTMR = 3
"""The RTMR that carries attestd's runtime log (RTMR0-2 hold firmware, boot loader and kernel)."""

INITIAL_VALUE = bytes(RTMR_SIZE)
"""An RTMR's value when the TD starts: 48 zero bytes."""


def extend(register: bytes, digest: bytes) -> bytes:
    """SHA-384(``register`` || ``digest``): the value of ``register`` after one extension.

    Both must be :data:`RTMR_SIZE` bytes; anything else is a ValueError, since
    an extension by a wrong-sized value can never happen on hardware.
    """
    if len(register) != RTMR_SIZE or len(digest) != RTMR_SIZE:
        raise ValueError(
            f"an RTMR extension takes a {RTMR_SIZE}-byte register and digest, "
            f"not {len(register)} and {len(digest)} bytes"
        )
    return hashlib.sha384(bytes(register) + bytes(digest)).digest()
