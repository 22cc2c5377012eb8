"""Closing a chain with an OpenSSF model signing (OMS) signature.

    from attestd.verifier.oms import OmsClosing, verify_oms_bundle

    closing = OmsClosing(Path("model.sig"), public_key=Path("publisher.pub"))
    signed = verify_oms_bundle(closing)      # OmsSignatureError if it does not verify
    signed.sha256                            # the digest of the signed model

The bundle is a Sigstore bundle made by ``model_signing`` (the ``oms`` extra)
with an elliptic-curve key or a certificate. Once its signature verifies, the
signed in-toto statement names one subject: the model, whose sha256 is the
digest of its manifest. attestd hashes a model directory to that same digest,
so the chain's last stage's output and the signature speak about the same bytes
when the two digests are equal (``close_chain``); the model files themselves
are not needed.

``model_signing`` is imported only here and only when a bundle is verified; if
it is missing, :class:`OmsUnavailableError` says which extra to install.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from attestd._files import FileRefusedError, FileTooLargeError, read_regular_file
from attestd.evidence.provenance import StageArtifact
from attestd.verifier.checks import Outcome, failed, passed
from attestd.verifier.errors import VerifierError

_SHA256 = re.compile(r"[0-9a-f]{64}")

#: The largest bundle read. A model_signing bundle carries the manifest: one
#: digest per model file, about a hundred bytes each, so this fits 500,000 files.
MAX_BUNDLE_BYTES = 64 << 20
#: The largest public key or certificate file read.
MAX_KEY_FILE_BYTES = 1 << 20


class OmsError(VerifierError):
    """A problem with the OMS closing of a chain."""

    reason = "oms_error"


class OmsUnavailableError(OmsError):
    """``model_signing`` is not installed."""

    reason = "oms_unavailable"


class OmsInputError(OmsError):
    """The bundle, key or certificate file cannot be read."""

    reason = "oms_unreadable"


class OmsInputTooLargeError(OmsInputError):
    """The bundle, key or certificate file is larger than attestd reads."""

    reason = "oms_input_too_large"


class OmsSignatureError(OmsError):
    """The bundle does not verify under the key or certificates given."""

    reason = "oms_signature_invalid"


@dataclass(frozen=True)
class OmsClosing:
    """What to verify a final product's OMS signature with.

    Exactly one of ``public_key`` (a PEM public key) and ``certificates``
    (PEM certificates: the signing certificate's chain to a trusted root) is
    given. ``artifact`` names the last stage's output the signature must
    match; left out, it is the only output, or the one whose last path
    component is the signed model's name.
    """

    bundle: Path
    public_key: Path | None = None
    certificates: tuple[Path, ...] = field(default=())
    artifact: str | None = None


@dataclass(frozen=True)
class OmsSignature:
    """A verified OMS signature: the model's name and its manifest digest."""

    model_name: str
    sha256: str
    files: int

    def to_json(self) -> dict[str, object]:
        return {"modelName": self.model_name, "sha256": self.sha256, "files": self.files}


def verify_oms_bundle(closing: OmsClosing) -> OmsSignature:
    """Verify ``closing.bundle``'s signature and return what it signs.

    :class:`OmsSignatureError` if the signature, the key or the signed
    statement is wrong; :class:`OmsInputError` if a file cannot be read;
    :class:`OmsUnavailableError` without ``model_signing``.
    """
    if (closing.public_key is None) == (not closing.certificates):
        raise OmsInputError("give either a public key or certificates to verify the OMS bundle")
    with _bounded_copies(closing) as copies:
        verifier, signature = _load(copies, shown=closing.bundle)
        try:
            # model_signing prints warnings about old bundle formats; keep stdout for results.
            with contextlib.redirect_stdout(sys.stderr):
                verifier.verify(signature)
        except Exception as err:  # model_signing raises ValueError, InvalidSignature and others
            raise OmsSignatureError(
                f"{closing.bundle}: {type(err).__name__}: {err}".rstrip(": ")
            ) from err
    # The signature verified, so the statement in the bundle is the one that was signed.
    return _signed_subject(signature.bundle.dsse_envelope.payload, closing.bundle)


@contextlib.contextmanager
def _bounded_copies(closing: OmsClosing) -> Iterator[OmsClosing]:
    """``closing`` with each file read once, within its bound, into a private copy.

    model_signing reads whatever a path holds, however large; it is handed
    copies of bytes that were read within :data:`MAX_BUNDLE_BYTES` or
    :data:`MAX_KEY_FILE_BYTES`, so a file that grows after the check is never read.
    """
    with tempfile.TemporaryDirectory(prefix="attestd-oms-") as private:

        def copy(path: Path, limit: int, what: str, name: str) -> Path:
            try:
                data = read_regular_file(path, limit, what)
            except FileTooLargeError as err:
                raise OmsInputTooLargeError(str(err)) from err
            except FileRefusedError as err:
                raise OmsInputError(str(err)) from err
            target = Path(private) / name
            target.write_bytes(data)
            return target

        bundle = copy(closing.bundle, MAX_BUNDLE_BYTES, "OMS bundle", "bundle.sig")
        key = (
            copy(closing.public_key, MAX_KEY_FILE_BYTES, "OMS public key", "key.pem")
            if closing.public_key is not None
            else None
        )
        certificates = tuple(
            copy(path, MAX_KEY_FILE_BYTES, "OMS certificate", f"certificate-{i}.pem")
            for i, path in enumerate(closing.certificates)
        )
        yield OmsClosing(bundle, key, certificates, closing.artifact)


def _load(closing: OmsClosing, *, shown: Path) -> tuple[Any, Any]:
    """model_signing's verifier and signature for ``closing``; messages name ``shown``."""
    try:
        from model_signing._signing import sign_certificate, sign_ec_key, sign_sigstore_pb
    except ImportError as err:
        raise OmsUnavailableError(
            "verifying an OMS signature needs model_signing: pip install 'attestd[oms]'"
        ) from err
    try:
        signature = sign_sigstore_pb.Signature.read(closing.bundle)
    except Exception as err:  # malformed JSON or not a bundle
        raise OmsSignatureError(f"{shown} is not a model_signing bundle: {err}") from err
    try:
        if closing.public_key is not None:
            verifier: Any = sign_ec_key.Verifier(closing.public_key)
        else:
            verifier = sign_certificate.Verifier(list(closing.certificates))
    except (ValueError, TypeError) as err:
        raise OmsInputError(f"cannot load the OMS verification key: {err}") from err
    return verifier, signature


def _signed_subject(payload: bytes, bundle: Path) -> OmsSignature:
    try:
        statement = json.loads(payload)
        (subject,) = statement["subject"]
        name = str(subject["name"])
        digest = str(subject["digest"]["sha256"]).lower()
        files = len(statement["predicate"]["resources"])
    except (ValueError, KeyError, TypeError) as err:
        raise OmsSignatureError(f"{bundle}: the signed statement has no single subject") from err
    if not _SHA256.fullmatch(digest):
        raise OmsSignatureError(f"{bundle}: the signed subject's sha256 is not 64 hex digits")
    return OmsSignature(name, digest, files)


def close_chain(
    signed: OmsSignature, outputs: Sequence[StageArtifact], artifact: str | None
) -> Outcome:
    """Whether the signed model is the last stage's output (``oms_digest_mismatch`` if not)."""
    chosen = _choose(signed, outputs, artifact)
    if isinstance(chosen, Outcome):
        return chosen
    if chosen.sha256 != signed.sha256:
        return failed(
            "oms_digest_mismatch",
            f"the OMS signature signs {signed.model_name!r} with sha256 {signed.sha256}; "
            f"the last stage produced {chosen.name} with sha256 {chosen.sha256}",
        )
    return passed(f"the OMS signature signs {chosen.name} (sha256 {signed.sha256})")


def _choose(
    signed: OmsSignature, outputs: Sequence[StageArtifact], artifact: str | None
) -> StageArtifact | Outcome:
    if artifact is not None:
        named = [o for o in outputs if o.name == artifact]
        if not named:
            return failed("oms_digest_mismatch", f"the last stage has no output {artifact!r}")
        return named[0]
    if len(outputs) == 1:
        return outputs[0]
    by_name = [o for o in outputs if PurePosixPath(o.name).name == signed.model_name]
    if len(by_name) == 1:
        return by_name[0]
    return failed(
        "oms_digest_mismatch",
        f"cannot tell which of the last stage's {len(outputs)} outputs the signature of "
        f"{signed.model_name!r} is for; name it (--oms-artifact)",
    )
