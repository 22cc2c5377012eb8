"""The simulated AMD PKI: ARK → ASK → VCEK (and ARK → ASVK → VLEK), shaped like AMD's, NOT AMD.

Like AMD's: RSA-4096 ARK and ASK, every certificate signed with RSA-PSS
(SHA-384, MGF1-SHA-384, salt 48), an ECDSA P-384 VCEK carrying AMD's KDS
extensions (product name, boot loader/TEE/SNP/microcode SPLs, hwID), so the
same verifier code runs over it. Unlike AMD's: the ARK is generated per state
directory, so nothing it signs chains to AMD, and the VCEK has a positive
serial. The VLEK half (an ASVK under the same ARK, and a VLEK that carries a
csp_id instead of a hwID, as AMD issues to cloud providers) is made only when
asked for, by :func:`with_vlek`, so a platform that signs with its VCEK pays
for no third RSA key. Like AMD's KDS, the simulated ARK issues a CRL
(:func:`issue_crl`, RSA-PSS like everything it signs), one per key kind
(whether or not a VLEK was made, as the KDS serves both), kept by
:func:`save` in ``crl/`` as a CRL store (``Milan-vcek.crl``,
``Milan-vlek.crl``): a policy with ``snp.crl_store`` pointing there checks
revocation offline. Keys are unencrypted PKCS#8 PEM, 0600, in a 0700 directory: the
simulator protects nothing a real TEE would, and says so.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from attestd.tee._certs import Profile, issue, name
from attestd.tee._state import load_ec_private_key, private_key_pem, write_atomic
from attestd.tee.errors import DeviceError, QuoteVerificationError
from attestd.tee.snp import verify
from attestd.tee.snp.abi import MILAN, SIGNING_KEY_VCEK, SIGNING_KEY_VLEK, TcbVersion

PRODUCT = MILAN
PRODUCT_NAME = "Milan-B0"
#: The TCB the simulated firmware runs and its VCEK certifies (Milan layout).
TCB = TcbVersion(bootloader=4, tee=0, snp=22, microcode=213)

ARK_NAME = "attestd Simulated ARK-Milan \u2014 NOT AMD"
ASK_NAME = "attestd Simulated SEV-Milan \u2014 NOT AMD"
VCEK_NAME = "attestd Simulated SEV-VCEK \u2014 NOT AMD"
ASVK_NAME = "attestd Simulated SEV-VLEK-Milan \u2014 NOT AMD"
VLEK_NAME = "attestd Simulated SEV-VLEK \u2014 NOT AMD"
#: The cloud provider a simulated VLEK names in its csp_id extension.
CSP_ID = "attestd-simulated-csp"
ORGANIZATION = "attestd (simulated)"

# A fixed window, like AMD's long-lived roots, so one `now` serves both
# simulated and recorded real reports in tests.
NOT_VALID_BEFORE = datetime(2024, 1, 1, tzinfo=UTC)
NOT_VALID_AFTER = datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)

_AMD_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_STEMS = ("ark", "ask", "vcek")
#: The CRL store inside the state directory, laid out as ``attestd.tee.snp.kds`` reads one.
CRL_SUBDIR = "crl"


@dataclass(frozen=True)
class SimulatedVlek:
    """The VLEK half of a simulated platform: the ASVK (under the ARK) and the VLEK it signed."""

    asvk_key: rsa.RSAPrivateKey
    asvk: x509.Certificate
    vlek_key: ec.EllipticCurvePrivateKey
    vlek: x509.Certificate


@dataclass(frozen=True)
class SimulatedPki:
    """The keys and certificates of one simulated AMD platform; ``vlek`` only once made."""

    ark_key: rsa.RSAPrivateKey
    ark: x509.Certificate
    ask_key: rsa.RSAPrivateKey
    ask: x509.Certificate
    vcek_key: ec.EllipticCurvePrivateKey
    vcek: x509.Certificate
    vlek: SimulatedVlek | None = None

    @property
    def chip_id(self) -> bytes:
        """The 64-byte CHIP_ID the VCEK's hwID names."""
        hwid = verify.vcek_extensions(self.vcek).hwid
        assert hwid is not None
        return hwid


#: AMD's shape: SHA-384 with RSA-PSS, and no constraints or key usage on the VCEK.
_AMD = Profile(hash_algorithm=hashes.SHA384(), rsa_padding=_AMD_PSS, leaf_basic_constraints=False)


def _amd_extensions(
    chip_id: bytes | None, csp_id: str | None = None
) -> list[x509.UnrecognizedExtension]:
    """AMD's KDS extensions: DER INTEGER SPLs, an IA5String product name, and the raw
    hwID (a VCEK) or the IA5String csp_id (a VLEK)."""
    spls = [
        (verify.OID_STRUCT_VERSION, 0),
        (verify.OID_BL_SPL, TCB.bootloader),
        (verify.OID_TEE_SPL, TCB.tee),
        *((x509.ObjectIdentifier(f"1.3.6.1.4.1.3704.1.3.{i}"), 0) for i in range(4, 8)),
        (verify.OID_SNP_SPL, TCB.snp),
        (verify.OID_UCODE_SPL, TCB.microcode),
    ]
    values = [(oid, asn1.encode_der(spl)) for oid, spl in spls]
    values.insert(1, (verify.OID_PRODUCT_NAME, asn1.encode_der(asn1.IA5String(PRODUCT_NAME))))
    if chip_id is not None:
        # The hwID is raw, without an OCTET STRING tag, as AMD's KDS serves it.
        values.append((verify.OID_HWID, chip_id))
    if csp_id is not None:
        values.append((verify.OID_CSP_ID, asn1.encode_der(asn1.IA5String(csp_id))))
    return [x509.UnrecognizedExtension(oid, value) for oid, value in values]


def _certificate(
    subject: str,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    issuer: x509.Certificate | None,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    is_ca: bool,
    extra: list[x509.UnrecognizedExtension] | None = None,
) -> x509.Certificate:
    return issue(
        _AMD,
        name(subject, ORGANIZATION),
        public_key,
        issuer,
        issuer_key,
        valid=(NOT_VALID_BEFORE, NOT_VALID_AFTER),
        ca=is_ca,
        path_length=None if issuer is None else 0,
        extensions=extra or (),
    )


def generate() -> SimulatedPki:
    """A fresh simulated platform with a random CHIP_ID. Slow: two RSA-4096 keys."""
    ark_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    ark = _certificate(ARK_NAME, ark_key.public_key(), None, ark_key, is_ca=True)
    ask_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    ask = _certificate(ASK_NAME, ask_key.public_key(), ark, ark_key, is_ca=True)
    vcek_key = ec.generate_private_key(ec.SECP384R1())
    extensions = _amd_extensions(secrets.token_bytes(64))
    vcek = _certificate(VCEK_NAME, vcek_key.public_key(), ask, ask_key, False, extensions)
    return SimulatedPki(ark_key, ark, ask_key, ask, vcek_key, vcek)


def with_vlek(pki: SimulatedPki) -> SimulatedPki:
    """``pki`` with a VLEK half (made now unless it has one). Slow: one RSA-4096 key.

    The ASVK is signed by the platform's ARK, as AMD's ASVK is by AMD's ARK; the
    VLEK certifies the same TCB as the VCEK and names the simulated cloud
    provider instead of the chip.
    """
    if pki.vlek is not None:
        return pki
    asvk_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    asvk = _certificate(ASVK_NAME, asvk_key.public_key(), pki.ark, pki.ark_key, is_ca=True)
    vlek_key = ec.generate_private_key(ec.SECP384R1())
    extensions = _amd_extensions(None, CSP_ID)
    vlek = _certificate(VLEK_NAME, vlek_key.public_key(), asvk, asvk_key, False, extensions)
    return replace(pki, vlek=SimulatedVlek(asvk_key, asvk, vlek_key, vlek))


def issue_crl(
    ark: x509.Certificate,
    ark_key: rsa.RSAPrivateKey,
    *,
    revoked: Iterable[int] = (),
    this_update: datetime = NOT_VALID_BEFORE,
    next_update: datetime = NOT_VALID_AFTER,
) -> bytes:
    """A DER CRL issued by ``ark`` and signed by ``ark_key`` (RSA-PSS, SHA-384, salt 48),
    listing the serials ``revoked``: the shape of AMD's KDS CRLs.

        >>> der = issue_crl(pki.ark, pki.ark_key, revoked=[pki.ask.serial_number])

    The defaults, an empty list valid as long as the simulated certificates,
    are what :func:`save` keeps; tests pass another key, dates or serials.
    """
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ark.subject)
        .last_update(this_update)
        .next_update(next_update)
    )
    for serial in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(this_update)
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(ark_key, hashes.SHA384(), rsa_padding=_AMD_PSS)
    return crl.public_bytes(serialization.Encoding.DER)


def crl_store(directory: Path) -> Path:
    """The CRL store :func:`save` fills in a simulated platform's ``directory``."""
    return directory / CRL_SUBDIR


def _save_crl(pki: SimulatedPki, directory: Path, signing_key: int) -> None:
    # Named as kds.offline_crl_path names them (kds imports verify; this module must not
    # import kds, which the backend does not need).
    kind = "vlek" if signing_key == SIGNING_KEY_VLEK else "vcek"
    store = crl_store(directory)
    store.mkdir(mode=0o700, exist_ok=True)
    write_atomic(store / f"{PRODUCT}-{kind}.crl", issue_crl(pki.ark, pki.ark_key), 0o644)


def save(pki: SimulatedPki, directory: Path) -> None:
    """Write every key (0600) and certificate; the caller makes ``directory`` 0700."""
    pairs = {"ark": (pki.ark_key, pki.ark), "ask": (pki.ask_key, pki.ask)}
    for stem, (key, cert) in pairs.items():
        write_atomic(directory / f"{stem}.key.pem", private_key_pem(key), 0o600)
        write_atomic(directory / f"{stem}.pem", _cert_pem(cert), 0o644)
    write_atomic(directory / "vcek.pem", _cert_pem(pki.vcek), 0o644)
    _save_crl(pki, directory, SIGNING_KEY_VCEK)
    _save_crl(pki, directory, SIGNING_KEY_VLEK)
    # Written last: its presence is what `exists` tests, so a crash mid-way regenerates all.
    write_atomic(directory / "vcek.key.pem", private_key_pem(pki.vcek_key), 0o600)
    if pki.vlek is not None:
        save_vlek(pki.vlek, directory)


def save_vlek(vlek: SimulatedVlek, directory: Path) -> None:
    """Write the VLEK half next to the rest; ``vlek.key.pem`` last, as ``vcek.key.pem``.

    The ARK's CRL for the VLEK chain was written by :func:`save`, with the other.
    """
    write_atomic(directory / "asvk.key.pem", private_key_pem(vlek.asvk_key), 0o600)
    write_atomic(directory / "asvk.pem", _cert_pem(vlek.asvk), 0o644)
    write_atomic(directory / "vlek.pem", _cert_pem(vlek.vlek), 0o644)
    write_atomic(directory / "vlek.key.pem", private_key_pem(vlek.vlek_key), 0o600)


def exists(directory: Path) -> bool:
    return (directory / "vcek.key.pem").exists()


def load(directory: Path) -> SimulatedPki:
    """Read what :func:`save` wrote; a missing or damaged file is a DeviceError."""
    try:
        certs = {
            stem: x509.load_pem_x509_certificate((directory / f"{stem}.pem").read_bytes())
            for stem in _STEMS
        }
        ark_key = _load_rsa_key(directory / "ark.key.pem")
        ask_key = _load_rsa_key(directory / "ask.key.pem")
        vcek_key = load_ec_private_key(directory / "vcek.key.pem")
        vlek = _load_vlek(directory)
        pki = SimulatedPki(
            ark_key, certs["ark"], ask_key, certs["ask"], vcek_key, certs["vcek"], vlek
        )
        pki.chip_id  # noqa: B018 - a VCEK without a hwID is damage, found now
        if vlek is not None and verify.vcek_extensions(vlek.vlek).csp_id is None:
            raise ValueError("the VLEK has no csp_id")
    except (OSError, ValueError, TypeError, AssertionError, QuoteVerificationError) as e:
        raise DeviceError(f"simulated SEV-SNP PKI in {directory} is unreadable: {e}") from e
    return pki


def _load_vlek(directory: Path) -> SimulatedVlek | None:
    """The VLEK half when :func:`save_vlek` finished writing it, else None."""
    if not (directory / "vlek.key.pem").exists():
        return None
    return SimulatedVlek(
        asvk_key=_load_rsa_key(directory / "asvk.key.pem"),
        asvk=x509.load_pem_x509_certificate((directory / "asvk.pem").read_bytes()),
        vlek_key=load_ec_private_key(directory / "vlek.key.pem"),
        vlek=x509.load_pem_x509_certificate((directory / "vlek.pem").read_bytes()),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _load_rsa_key(path: Path) -> rsa.RSAPrivateKey:
    # These keys are the simulator's own, written by `save`; re-checking a
    # 4096-bit key's consistency on every open would cost most of a second.
    key = serialization.load_pem_private_key(
        path.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True
    )
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError(f"{path.name} is not an RSA private key")
    return key
