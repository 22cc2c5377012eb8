"""The simulated TEEs' state directories: made private, locked, and written whole.

    >>> from attestd.tee import _state
    >>> _state.make_directory(directory, "simulated TDX state")   # directory and parent, 0700
    >>> with _state.locked(directory):                              # one writer at a time
    ...     _state.write_atomic(directory / "registers.json", data, 0o600)

Keys are kept as unencrypted PKCS#8 PEM (:func:`private_key_pem`): the
simulators protect nothing a real TEE would, and say so.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attestd._files import write_atomic as write_atomic  # the state files' writer, re-exported
from attestd.tee.errors import DeviceError


def make_directory(directory: Path, what: str) -> None:
    """Create ``directory`` and its parent 0700, and make ``directory`` 0700 if it was not."""
    try:
        for d in (directory.parent, directory):
            d.mkdir(mode=0o700, exist_ok=True, parents=True)
        directory.chmod(0o700)
    except OSError as e:
        raise DeviceError(f"cannot create {what} in {directory}: {e}") from e


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Serialise access to one state directory across threads and processes."""
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def private_key_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_ec_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The EC key :func:`private_key_pem` wrote to ``path``; another kind is a TypeError."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{path.name} is not an EC private key")
    return key
