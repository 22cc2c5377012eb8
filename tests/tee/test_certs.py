"""tee/_certs.py: one builder, shaped per PKI by a Profile."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.tee._certs import SIGNING, Profile, issue, name
from attestd.tee.tdx import _simulated_pki as tdx_pki

VALID = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC))


def _chain(profile: Profile) -> tuple[x509.Certificate, x509.Certificate]:
    root_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    root = issue(
        profile,
        name("root", "org"),
        root_key.public_key(),
        None,
        root_key,
        valid=VALID,
        ca=True,
        path_length=0,
    )
    leaf = issue(profile, name("leaf"), leaf_key.public_key(), root, root_key, valid=VALID)
    return root, leaf


def _types(cert: x509.Certificate) -> set[type[x509.ExtensionType]]:
    return {type(e.value) for e in cert.extensions}


def test_a_plain_profile_constrains_every_certificate_and_marks_only_cas_for_signing() -> None:
    root, leaf = _chain(SIGNING)
    assert root.issuer == root.subject and leaf.issuer == root.subject
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert _types(leaf) == {x509.BasicConstraints}
    leaf.verify_directly_issued_by(root)


def test_profiles_add_key_usage_and_identifiers_or_leave_leaves_bare() -> None:
    _, intel_leaf = _chain(Profile(leaf_key_usage=True, key_identifiers=True))
    assert _types(intel_leaf) == {
        x509.BasicConstraints,
        x509.KeyUsage,
        x509.SubjectKeyIdentifier,
        x509.AuthorityKeyIdentifier,
    }
    assert intel_leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    _, amd_leaf = _chain(Profile(hash_algorithm=hashes.SHA384(), leaf_basic_constraints=False))
    assert _types(amd_leaf) == set()
    assert isinstance(amd_leaf.signature_hash_algorithm, hashes.SHA384)


def test_the_sgx_extension_decodes_to_the_platforms_tcb() -> None:
    tcb = tdx_pki.PLATFORM_TCB
    der = tdx_pki.sgx_extension_der(tcb)
    decoded = asn1.decode_der(tdx_pki._SgxExtension, der)
    assert decoded.fmspc.value == tcb.fmspc and decoded.ppid.value == tcb.ppid
    assert decoded.fmspc.oid.dotted_string == f"{tdx_pki.SGX_EXTENSION_OID}.4"
    components = [c.value for c in decoded.tcb.value]
    assert components == [*tcb.cpu_svn, tcb.pce_svn, tcb.cpu_svn]
    assert bytes(decoded.sgx_type.value.tag_bytes) == b"\x0a"  # ENUMERATED
    assert [flag.value for flag in decoded.configuration.value] == [True, True, True]
