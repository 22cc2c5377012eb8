"""DCAP appraisal: the vector affirms while its collateral is current; each refusal names itself."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dcap_qvl
import pytest

from attestd.tee.errors import QuoteFormatError, QuoteVerificationError
from attestd.tee.tdx import _simulated_pki as pki
from attestd.tee.tdx.collateral import Collateral
from attestd.tee.tdx.dcap import (
    TCB_STATUSES,
    DcapOptions,
    DcapResult,
    DcapVerificationError,
    normalise_status,
    reason_for,
    verify_with_collateral,
)
from attestd.tee.tdx.simulated import SimulatedTdxBackend

from .conftest import VECTORS_NOW

EXPIRED_NOW = datetime(2026, 11, 23, tzinfo=UTC)  # the vector's CRLs expired in April 2026
TCB_INFO_EXPIRED_NOW = datetime(2025, 8, 1, tzinfo=UTC)  # its TCB info in July 2025


@pytest.fixture(scope="module")
def vector(vectors_dir: Path) -> tuple[bytes, Collateral]:
    tdx = vectors_dir / "tdx"
    raw = (tdx / "dcapqvl_quote_v4.bin").read_bytes()
    return raw, Collateral.from_json((tdx / "dcapqvl_quote_v4.collateral.json").read_bytes())


def reason_of(raw: bytes, collateral: Collateral, options: DcapOptions) -> str:
    with pytest.raises(DcapVerificationError) as e:
        verify_with_collateral(raw, collateral, options)
    assert isinstance(e.value, QuoteVerificationError)
    return e.value.reason


def test_real_quote_is_up_to_date_while_its_collateral_is_current(
    vector: tuple[bytes, Collateral],
) -> None:
    raw, collateral = vector
    expected = DcapResult("UpToDate", ())
    assert verify_with_collateral(raw, collateral, DcapOptions(VECTORS_NOW)) == expected
    assert verify_with_collateral(raw, collateral.to_dcap(), DcapOptions(VECTORS_NOW)) == expected


@pytest.mark.parametrize("now", [EXPIRED_NOW, TCB_INFO_EXPIRED_NOW], ids=["crl", "tcb_info"])
def test_real_quote_is_refused_once_its_collateral_expired(
    vector: tuple[bytes, Collateral], now: datetime
) -> None:
    raw, collateral = vector
    assert reason_of(raw, collateral, DcapOptions(now)) == "collateral_expired"


def test_collateral_issued_after_now_is_not_yet_valid(vector: tuple[bytes, Collateral]) -> None:
    raw, collateral = vector
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert reason_of(raw, collateral, DcapOptions(now)) == "collateral_not_yet_valid"


def test_real_quote_is_untrusted_under_a_simulated_root(
    vector: tuple[bytes, Collateral], simulated: SimulatedTdxBackend
) -> None:
    raw, collateral = vector
    options = DcapOptions(VECTORS_NOW, simulated.trust_root())
    assert reason_of(raw, collateral, options) == "untrusted_root"


def test_a_changed_quote_body_breaks_the_quote_signature(vector: tuple[bytes, Collateral]) -> None:
    raw, collateral = vector
    changed = bytearray(raw)
    changed[0x100] ^= 1  # inside the TD report
    assert (
        reason_of(bytes(changed), collateral, DcapOptions(VECTORS_NOW)) == "quote_signature_invalid"
    )


def test_a_changed_tcb_info_breaks_its_signature(vector: tuple[bytes, Collateral]) -> None:
    raw, collateral = vector
    document = collateral.to_mapping()
    document["tcb_info"] = document["tcb_info"].replace("UpToDate", "Revoked", 1)
    forged = Collateral.from_mapping(document)
    assert reason_of(raw, forged, DcapOptions(VECTORS_NOW)) == "collateral_signature_invalid"


def test_a_revoked_tcb_level_is_refused(simulated: SimulatedTdxBackend) -> None:
    platform = pki.load(simulated.state_directory)
    issued = pki.issue_collateral(
        platform,
        issue_date=pki.NOT_VALID_BEFORE,
        next_update=pki.NOT_VALID_AFTER,
        tcb_status="Revoked",
    )
    options = DcapOptions(VECTORS_NOW, simulated.trust_root())
    raw = simulated.get_quote(bytes(64))
    assert reason_of(raw, Collateral.from_mapping(issued), options) == "tcb_revoked"


def test_collateral_of_another_root_is_untrusted(
    vector: tuple[bytes, Collateral], simulated: SimulatedTdxBackend
) -> None:
    raw, _ = vector
    simulated_collateral = Collateral.from_json(simulated.collateral_json())
    assert reason_of(raw, simulated_collateral, DcapOptions(VECTORS_NOW)) == "untrusted_root"


def test_collateral_for_another_fmspc_is_a_mismatch(simulated: SimulatedTdxBackend) -> None:
    other = dataclasses.replace(pki.PLATFORM_TCB, fmspc=bytes.fromhex("00806F050000"))
    issued = pki.issue_collateral(
        pki.load(simulated.state_directory),
        issue_date=pki.NOT_VALID_BEFORE,
        next_update=pki.NOT_VALID_AFTER,
        tcb=other,
    )
    options = DcapOptions(VECTORS_NOW, simulated.trust_root())
    raw = simulated.get_quote(bytes(64))
    assert reason_of(raw, Collateral.from_mapping(issued), options) == "collateral_mismatch"


def test_malformed_quote_is_a_format_error(vector: tuple[bytes, Collateral]) -> None:
    raw, collateral = vector
    with pytest.raises(QuoteFormatError):
        verify_with_collateral(raw[:100], collateral, DcapOptions(VECTORS_NOW))


def test_options_need_an_aware_clock_and_a_known_root() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        DcapOptions(datetime(2025, 6, 23))
    with pytest.raises(ValueError, match="root"):
        DcapOptions(VECTORS_NOW, "amd")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("UpToDate", "UpToDate"),
        ("OK", "UpToDate"),
        ("SW_HARDENING_NEEDED", "SWHardeningNeeded"),
        ("CONFIGURATION_AND_SW_HARDENING_NEEDED", "ConfigurationAndSWHardeningNeeded"),
        ("OUT_OF_DATE", "OutOfDate"),
        ("OutOfDateConfigurationNeeded", "OutOfDateConfigurationNeeded"),
        ("REVOKED", "Revoked"),
    ],
)
def test_statuses_are_normalised_to_intels_spelling(given: str, expected: str) -> None:
    assert normalise_status(given) == expected
    assert expected in TCB_STATUSES


def test_an_unknown_status_is_not_guessed() -> None:
    with pytest.raises(ValueError, match="unknown TCB status"):
        normalise_status("Unknown")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            "Verification failed: CrlExpired { time: UnixTime(1), next_update: UnixTime(0) }",
            "collateral_expired",
        ),
        ("Verification failed: TCBInfo expired", "collateral_expired"),
        ("Verification failed: TCB status is invalid: Revoked", "tcb_revoked"),
        ("Verification failed: ISV enclave report signature is invalid", "quote_signature_invalid"),
        (
            "Failed to parse root CA CRL Caused by: InvalidCrlSignatureForPublicKey",
            "untrusted_root",
        ),
        ("Verification failed: Fmspc mismatch", "collateral_mismatch"),
        ("Verification failed: something new", "dcap_verification_failed"),
    ],
)
def test_dcap_qvl_messages_map_to_reasons(message: str, reason: str) -> None:
    assert reason_for(message) == reason


def test_the_clock_is_the_callers(vector: tuple[bytes, Collateral]) -> None:
    """The same inputs at two injected moments: only `now` decides."""
    raw, collateral = vector
    verify_with_collateral(raw, collateral, DcapOptions(VECTORS_NOW + timedelta(days=10)))
    with pytest.raises(DcapVerificationError):
        verify_with_collateral(raw, collateral, DcapOptions(VECTORS_NOW + timedelta(days=400)))
    assert (
        dcap_qvl.verify(raw, collateral.to_dcap(), int(VECTORS_NOW.timestamp())).status
        == "UpToDate"
    )


def test_every_dcap_reason_has_its_own_error_type() -> None:
    from attestd.tee.tdx import dcap

    reasons = {reason for _, reason in dcap._REASONS} | {dcap.DCAP_VERIFICATION_FAILED}
    for reason in reasons:
        error = dcap._ERROR_BY_REASON[reason]
        assert issubclass(error, dcap.DcapVerificationError)
        assert error.reason == error("x").reason == reason
    assert dcap.error_for("TCB status is invalid: Revoked") is dcap.DcapTcbRevokedError
    assert dcap.error_for("something new") is dcap.DcapVerificationError
