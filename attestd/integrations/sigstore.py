"""Stage attestations as Sigstore bundles: under the agent key offline, or keylessly.

Export wraps the envelopes the agent signed, unchanged, in Sigstore bundles
(v0.3) whose verification material names the agent key. It needs no network
and no sigstore package, and the bundles carry no transparency-log entry::

    attestation = StageAttestation.from_json(Path("train.attestation.json").read_bytes())
    bundles = export_stage_bundles(attestation)
    Path("train.sigstore.json").write_bytes(bundles.provenance)
    Path("agent.pub").write_text(bundles.agent_key_pem)

Keyless signing re-signs the same provenance payload bytes with a short-lived
Fulcio certificate for the caller's OIDC identity and records it in Rekor
(this needs the network and the optional ``sigstore`` extra,
``pip install 'attestd[sigstore]'``; without it, SigstoreNotInstalledError)::

    bundle = sign_keyless(attestation, identity_token=None, staging=False)

Without ``identity_token``, the ambient CI credential is used (GitHub Actions,
GitLab, Buildkite, Google Cloud); with none, NoIdentityError. There is never
an interactive browser flow. docs/sigstore.md says what each bundle proves.

Which stock verifiers accept the agent-key bundle: sigstore-js's
``@sigstore/verify`` does, given the agent key with its tlog and timestamp
thresholds at 0 (nothing was logged or timestamped). sigstore-python does not:
it verifies certificate bundles only. docs/sigstore.md has the table and the
commands; tests/e2e/test_sigstore_verifiers.py runs them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from attestd.errors import AttestdError
from attestd.evidence.canonical import canonical_json
from attestd.evidence.envelope import open_evidence, parse_envelope, verify_envelope
from attestd.evidence.errors import EvidenceError
from attestd.evidence.keys import key_id, load_public_key_pem, public_key_pem
from attestd.evidence.provenance import StageAttestation

if TYPE_CHECKING:
    from sigstore.dsse import Statement as SigstoreStatement
    from sigstore.oidc import IdentityToken

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
"""The Sigstore bundle media type (protobuf-specs v0.3) that export writes."""


class SigstoreExportError(AttestdError):
    """A stage attestation could not be exported or signed as a Sigstore bundle."""

    reason = "sigstore_export_failed"


class NoIdentityError(SigstoreExportError):
    """Keyless signing found no OIDC identity: neither a token given nor an ambient one."""

    reason = "oidc_identity_missing"


class KeylessSigningError(SigstoreExportError):
    """Sigstore (TUF, Fulcio or Rekor) refused or could not be reached."""

    reason = "keyless_signing_failed"


class SigstoreNotInstalledError(SigstoreExportError):
    """Keyless signing was asked for, but the optional ``sigstore`` extra is not installed."""

    reason = "sigstore_not_installed"


_EXTRA_HINT = "pip install 'attestd[sigstore]'"
"""How to install what keyless signing needs (the agent itself never does)."""


def _require_sigstore() -> None:
    """Raise SigstoreNotInstalledError, naming the extra, unless sigstore can be imported."""
    try:
        import sigstore  # noqa: F401
    except ImportError as err:
        raise SigstoreNotInstalledError(
            f"keyless signing needs the sigstore extra: {_EXTRA_HINT}"
        ) from err


# -- export under the agent key ----------------------------------------------------


@dataclass(frozen=True)
class StageBundles:
    """A stage attestation's two envelopes as Sigstore bundles, and the key that signed both."""

    provenance: bytes
    evidence: bytes
    agent_key_id: str
    agent_key_pem: str


def agent_public_key(attestation: StageAttestation) -> ec.EllipticCurvePublicKey:
    """The agent key the attestation's evidence names, once both envelopes verify under it.

    This checks that the agent signed what is exported, nothing more: whether
    the TEE vouches for that key is the verifier's question (appraise / chain).
    """
    try:
        evidence_envelope, statement = open_evidence(attestation.evidence)
        key = load_public_key_pem(statement.predicate.agent_key_pem)
        verify_envelope(evidence_envelope, key)
        verify_envelope(parse_envelope(attestation.provenance), key)
    except EvidenceError as err:
        raise SigstoreExportError(f"not a stage attestation signed by its agent: {err}") from err
    return key


def envelope_bundle(envelope: bytes, public_key: ec.EllipticCurvePublicKey) -> bytes:
    """A Sigstore v0.3 bundle (JSON) of a DSSE envelope signed by ``public_key``.

    ``dsseEnvelope`` holds the envelope's payload, type, signature and keyid
    unchanged (base64 re-encoded in the standard alphabet, as protobuf JSON
    wants). ``verificationMaterial.publicKey.hint`` is the key id; the key
    itself travels out of band (the bundle format has no field for it).
    ``tlogEntries`` is empty: nothing was logged. So a verifier must be told
    to ask for no log entry and no timestamp (sigstore-js: ``tlogThreshold``
    and ``timestampThreshold`` 0; cosign: ``--insecure-ignore-tlog``).
    """
    try:
        parsed = parse_envelope(envelope)
        verify_envelope(parsed, public_key)
    except EvidenceError as err:
        raise SigstoreExportError(f"cannot export the envelope: {err}") from err
    if len(parsed.signatures) != 1:
        # Sigstore verifiers accept exactly one signature per DSSE envelope.
        raise SigstoreExportError(
            f"a Sigstore bundle holds a one-signature envelope; this one has "
            f"{len(parsed.signatures)}"
        )
    (keyid, signature), = parsed.signatures.items()  # fmt: skip
    return canonical_json(
        {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {
                "publicKey": {"hint": key_id(public_key)},
                "tlogEntries": [],
            },
            "dsseEnvelope": {
                "payload": _b64(bytes(parsed.payload)),
                "payloadType": parsed.payload_type,
                "signatures": [{"sig": _b64(bytes.fromhex(signature.signature)), "keyid": keyid}],
            },
        }
    )


def export_stage_bundles(attestation: StageAttestation) -> StageBundles:
    """Both envelopes of ``attestation`` as key-based bundles under its agent key."""
    key = agent_public_key(attestation)
    return StageBundles(
        provenance=envelope_bundle(attestation.provenance, key),
        evidence=envelope_bundle(attestation.evidence, key),
        agent_key_id=key_id(key),
        agent_key_pem=public_key_pem(key),
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- keyless: Fulcio certificate and Rekor entry ------------------------------------


class SigstoreBundle(Protocol):
    def to_json(self) -> str: ...


class DsseSigner(Protocol):
    """What keyless signing needs of ``sigstore.sign.Signer``."""

    def sign_dsse(self, input_: SigstoreStatement) -> SigstoreBundle: ...


class SigningContext(Protocol):
    """What keyless signing needs of ``sigstore.sign.SigningContext``."""

    def signer(
        self, identity_token: IdentityToken, *, cache: bool = True
    ) -> AbstractContextManager[DsseSigner]: ...


def sign_keyless(
    attestation: StageAttestation,
    *,
    identity_token: str | None = None,
    staging: bool = False,
    context: Callable[[bool], SigningContext] | None = None,
    detect: Callable[[], str | None] | None = None,
) -> bytes:
    """The Sigstore bundle (JSON) of the provenance payload, signed for an OIDC identity.

    The payload bytes are those the agent signed, so SHA-256 of the bundle's
    payload is still the evidence nonce. The agent's signature is checked
    first, so no identity vouches for provenance its agent did not sign.
    ``context(staging)`` builds the signing context (default: sigstore's, for
    the production or staging instance); ``detect()`` finds an ambient token
    (default: ``sigstore.oidc.detect_credential``). Both are parameters so
    tests can run offline.
    """
    _require_sigstore()
    agent_public_key(attestation)
    raw_token = identity_token or (detect or detect_ambient_token)()
    if not raw_token:
        raise NoIdentityError(
            "no OIDC identity: pass --identity-token (or SIGSTORE_IDENTITY_TOKEN), or run "
            "in a CI job that grants one (GitHub Actions: permissions id-token: write); "
            "attestctl never opens a browser"
        )
    from sigstore.dsse import Statement
    from sigstore.errors import Error as SigstoreError
    from sigstore.oidc import IdentityToken

    try:
        token = IdentityToken(raw_token)
    except SigstoreError as err:
        raise NoIdentityError(f"unusable identity token: {err}") from err
    try:
        statement = Statement(bytes(parse_envelope(attestation.provenance).payload))
    except SigstoreError as err:
        # e.g. a stage without outputs: in-toto statements for Sigstore need a subject.
        raise SigstoreExportError(f"sigstore refuses the provenance statement: {err}") from err
    build = context or signing_context
    try:
        with build(staging).signer(token, cache=True) as signer:
            bundle = signer.sign_dsse(statement)
    except Exception as err:
        if not _is_service_error(err):
            raise  # a bug, not a refusal: let it show
        raise KeylessSigningError(f"{type(err).__name__}: {err}") from err
    return bundle.to_json().encode("utf-8")


def detect_ambient_token() -> str | None:
    """An ambient CI OIDC token for Sigstore, or None where the environment offers none."""
    _require_sigstore()
    from sigstore.oidc import IdentityError, detect_credential

    try:
        return detect_credential()
    except IdentityError as err:
        # An environment that should grant a token and failed to: say why.
        raise NoIdentityError(f"ambient OIDC credential detection failed: {err}") from err


def signing_context(staging: bool) -> SigningContext:
    """sigstore's signing context for the production (or staging) public-good instance."""
    _require_sigstore()
    from sigstore.models import ClientTrustConfig
    from sigstore.sign import SigningContext as _SigstoreContext

    try:
        config = ClientTrustConfig.staging() if staging else ClientTrustConfig.production()
    except Exception as err:
        if not _is_service_error(err):
            raise
        raise KeylessSigningError(f"cannot load Sigstore's trust root: {err}") from err
    return _SigstoreContext.from_trust_config(config)


_SERVICE_PACKAGES = frozenset({"sigstore", "requests", "urllib3", "tuf"})


def _is_service_error(err: BaseException) -> bool:
    """Whether ``err`` is Sigstore (or the network under it) refusing, rather than a bug.

    sigstore.errors.Error is the public base, but Fulcio's and Rekor's client errors
    (and ExpiredCertificate) live in sigstore's private modules and derive from
    Exception only. Naming them would mean importing ``sigstore._internal``, which
    may change in any release, so they are recognised by the package that defines
    them (or any of their bases): sigstore itself, requests, urllib3 or tuf.
    """
    from sigstore.errors import Error as SigstoreError

    if isinstance(err, SigstoreError):
        return True
    return any(cls.__module__.partition(".")[0] in _SERVICE_PACKAGES for cls in type(err).__mro__)
