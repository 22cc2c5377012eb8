"""Every TEE failure is its own exception type, with its reason fixed on the class."""

from __future__ import annotations

import pytest

from attestd.tee.errors import (
    CertificateExpiredError,
    QuoteVerificationError,
    TeeError,
    UntrustedRootError,
)
from attestd.tee.snp import verify as snp_verify
from attestd.tee.tdx import collateral, dcap
from attestd.tee.tdx import verify as tdx_verify


def _subclasses(base: type[TeeError]) -> list[type[TeeError]]:
    found: list[type[TeeError]] = []
    for sub in base.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (UntrustedRootError, "untrusted_root"),
        (CertificateExpiredError, "certificate_expired"),
        (tdx_verify.PckChainInvalidError, "pck_chain_invalid"),
        (tdx_verify.QeReportSignatureInvalidError, "qe_report_signature_invalid"),
        (tdx_verify.AttestationKeyBindingInvalidError, "attestation_key_binding_invalid"),
        (tdx_verify.QuoteSignatureInvalidError, "quote_signature_invalid"),
        (snp_verify.VcekChainInvalidError, "vcek_chain_invalid"),
        (snp_verify.ReportSignatureInvalidError, "report_signature_invalid"),
        (snp_verify.VcekExtensionsInvalidError, "vcek_extensions_invalid"),
        (snp_verify.ProductMismatchError, "product_mismatch"),
        (snp_verify.SigningKeyMismatchError, "signing_key_mismatch"),
        (snp_verify.TcbMismatchError, "tcb_mismatch"),
        (snp_verify.ChipIdMismatchError, "chip_id_mismatch"),
        (dcap.DcapTcbRevokedError, "tcb_revoked"),
        (collateral.CollateralUnavailableError, "collateral_unavailable"),
        (collateral.CollateralMalformedError, "collateral_malformed"),
        (collateral.CollateralTooLargeError, "collateral_too_large"),
        (collateral.CollateralExpiredError, "collateral_expired"),
    ],
)
def test_each_failure_has_a_stable_class_level_reason(error: type[TeeError], reason: str) -> None:
    assert error.reason == reason
    assert error("what happened").reason == reason
    assert error("what happened").message == "what happened"


def test_the_base_classes_still_catch_their_failures() -> None:
    with pytest.raises(QuoteVerificationError):
        raise snp_verify.TcbMismatchError("tcb")
    with pytest.raises(dcap.DcapVerificationError):
        raise dcap.DcapUntrustedRootError("root")
    with pytest.raises(collateral.CollateralError):
        raise collateral.CollateralExpiredError("old")


def test_no_verification_or_collateral_error_takes_its_reason_per_instance() -> None:
    with pytest.raises(TypeError):
        QuoteVerificationError("x", reason="other")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        collateral.CollateralError("x", reason="other")  # type: ignore[call-arg]
    for error in _subclasses(QuoteVerificationError) + _subclasses(collateral.CollateralError):
        assert "reason" in vars(error), f"{error.__name__} inherits its reason"
