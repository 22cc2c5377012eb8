"""Where a report's VCEK comes from: the evidence, an offline store, or AMD's KDS.

    >>> from attestd.tee.snp.kds import VcekSource, get_vcek
    >>> source = VcekSource(offline_store=Path("/etc/attestd/vcek"),
    ...                     kds_base_url=KDS_BASE_URL, cache_dir=Path("/var/cache/attestd/kds"))
    >>> vcek = get_vcek(report, "Milan", source, certificate_table=auxblob)

Sources are tried in a fixed order: the certificate table that came with the
report, the offline store (``<chip_id hex>-<reported_tcb as 16 hex>.der``), the
disk cache, and AMD's Key Distribution Service, which is asked only when a base
URL is configured. Where a certificate comes from does not matter for trust:
:func:`attestd.tee.snp.verify.verify_report` checks it up to a trusted ARK and
against the report's chip and TCB.

A VLEK (the report's SIGNING_KEY says so) is never on AMD's KDS: AMD gives it
to the cloud provider, who loads it into the host. It comes from the host's
certificate table (the VLEK GUID) or from the offline store, and when neither
has it the error says so rather than asking the KDS. The KDS URL follows AMD's VCEK specification
(publication 57230) as go-sev-guest's ``kds`` builds it; Turin identifies a chip
by the first 8 bytes of CHIP_ID and adds ``fmcSPL``.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from attestd._files import FileMissingError, FileRefusedError, read_regular_file
from attestd.tee._http import DiskCache, FetchError, FetchStatusError, Response, http_get
from attestd.tee.errors import TeeError
from attestd.tee.snp.abi import (
    CERT_GUIDS,
    SIGNING_KEY_VLEK,
    TURIN,
    AttestationReport,
    CertChain,
    CertKind,
    TcbVersion,
)
from attestd.tee.snp.verify import TURIN_HWID_SIZE, VcekChainInvalidError, load_certificate

KDS_BASE_URL = "https://kdsintf.amd.com"
DEFAULT_TIMEOUT_S = 10.0
#: A VCEK is about 1.4 KB; anything far larger is not one.
MAX_CERTIFICATE_BYTES = 64 * 1024


class VcekUnavailableError(TeeError):
    """No source could provide the VCEK (or VLEK) for a report; the message says what was tried."""

    reason = "vcek_unavailable"


@dataclass(frozen=True)
class VcekSource:
    """Which sources :func:`get_vcek` may use, in its fixed order.

    ``kds_base_url=None`` keeps verification offline; ``cache_dir`` keeps what
    the KDS answered, keyed by URL, so each chip and TCB is fetched once.
    """

    use_certificate_table: bool = True
    offline_store: Path | None = None
    cache_dir: Path | None = None
    kds_base_url: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_bytes: int = MAX_CERTIFICATE_BYTES

    def __post_init__(self) -> None:
        if self.kds_base_url is not None:
            scheme = urllib.parse.urlsplit(self.kds_base_url).scheme
            if scheme not in ("https", "http"):
                raise ValueError(f"kds_base_url must be an http(s) URL, not {self.kds_base_url!r}")
        if self.timeout_s <= 0 or self.max_bytes <= 0:
            raise ValueError("timeout_s and max_bytes must be positive")


def vcek_url(
    product: str, chip_id: bytes, reported_tcb: int, *, base_url: str = KDS_BASE_URL
) -> str:
    """The KDS URL of the VCEK for this chip at this reported TCB."""
    tcb = TcbVersion.decode(reported_tcb, product)
    spls = {
        "blSPL": tcb.bootloader,
        "teeSPL": tcb.tee,
        "snpSPL": tcb.snp,
        "ucodeSPL": tcb.microcode,
    }
    hwid = chip_id
    if product == TURIN:
        hwid = chip_id[:TURIN_HWID_SIZE]
        spls = {"fmcSPL": tcb.fmc or 0, **spls}
    query = "&".join(f"{k}={v}" for k, v in spls.items())
    return f"{base_url.rstrip('/')}/vcek/v1/{product}/{hwid.hex()}?{query}"


def offline_path(store: Path, chip_id: bytes, reported_tcb: int) -> Path:
    """Where an offline store keeps the VCEK of this chip at this TCB."""
    return Path(store) / f"{chip_id.hex()}-{reported_tcb:016x}.der"


def cache_path(cache_dir: Path, url: str) -> Path:
    """The cache file for ``url``: its SHA-256, so any URL makes a safe file name."""
    return Path(cache_dir) / f"{hashlib.sha256(url.encode()).hexdigest()}.der"


def get_vcek(
    report: AttestationReport,
    product: str,
    source: VcekSource,
    *,
    certificate_table: bytes | None = None,
) -> x509.Certificate:
    """The VCEK (or VLEK) for ``report`` from the first source that has it.

    The table's entry is the one the report's SIGNING_KEY names (VCEK or VLEK).
    """
    tried: list[str] = []
    kind = "VLEK" if report.signing_key == SIGNING_KEY_VLEK else "VCEK"
    if source.use_certificate_table and certificate_table:
        signer = CertChain.from_raw_table(certificate_table, report.signing_key).signer
        if signer is not None:
            return _certificate(signer, f"the certificate table's {kind}")
        tried.append(f"the certificate table (no {kind} entry)")
    if source.offline_store is not None:
        path = offline_path(source.offline_store, report.chip_id, report.reported_tcb)
        data = _read_stored(path, source.max_bytes)
        if data is not None:
            return _certificate(data, str(path))
        tried.append(f"offline store ({path} absent)")
    refuse_vlek(report, tried)
    if source.kds_base_url is None and source.cache_dir is None:
        tried.append("AMD KDS (no base URL configured)")
        raise VcekUnavailableError(f"no VCEK for this report; tried {'; '.join(tried)}")
    url = vcek_url(
        product, report.chip_id, report.reported_tcb, base_url=source.kds_base_url or KDS_BASE_URL
    )
    return fetch_vcek(url, source, tried=tried)


def refuse_vlek(report: AttestationReport, tried: list[str] | None = None) -> None:
    """Raise VcekUnavailableError, saying where a VLEK comes from, if a VLEK signed ``report``.

    Called before any KDS lookup: AMD's KDS serves VCEKs (and the ASVK chain),
    never a VLEK, so asking it would only fail less clearly.
    """
    if report.signing_key != SIGNING_KEY_VLEK:
        return
    looked = f" (tried {'; '.join(tried)})" if tried else ""
    raise VcekUnavailableError(
        "the report is signed by a VLEK, which AMD's KDS does not serve: a VLEK comes only "
        f"from the host's certificate table (GUID {CERT_GUIDS[CertKind.VLEK]}) or an offline "
        f"store{looked}"
    )


def fetch_vcek(url: str, source: VcekSource, *, tried: list[str] | None = None) -> x509.Certificate:
    """The certificate at ``url``, from the cache when there, else fetched and cached."""
    tried = list(tried or [])
    # A VCEK's URL names its chip and TCB, so a cached one never goes stale: body only.
    cache = None
    if source.cache_dir is not None:
        cache = DiskCache(source.cache_dir, max_bytes=source.max_bytes, body_only=True)
        name = cache_path(source.cache_dir, url).name
        cached = cache.load(name, url)
        if cached is not None:
            try:
                return load_certificate(cached.body)
            except ValueError:
                pass  # a damaged cache entry is refetched and replaced
        tried.append(f"cache ({name} absent or damaged)")
    if source.kds_base_url is None:
        tried.append("AMD KDS (no base URL configured)")
        raise VcekUnavailableError(f"no VCEK for this report; tried {'; '.join(tried)}")
    response = _download(url, source)
    cert = _certificate(response.body, url)
    if cache is not None:
        cache.store(cache_path(cache.directory, url).name, url, response)
    return cert


def _download(url: str, source: VcekSource) -> Response:
    try:
        return http_get(url, source.timeout_s, source.max_bytes, accept="application/pkix-cert")
    except FetchStatusError as e:
        hint = " (AMD's KDS rate-limits; retry later)" if e.status == 429 else ""
        raise VcekUnavailableError(f"KDS: {e.message}{hint}") from e
    except FetchError as e:
        raise VcekUnavailableError(e.message) from e


def _certificate(data: bytes, origin: str) -> x509.Certificate:
    try:
        return load_certificate(data)
    except ValueError as e:
        raise VcekChainInvalidError(f"{origin} is not a certificate: {e}") from e


def _read_stored(path: Path, max_bytes: int) -> bytes | None:
    """An offline store's file; None when absent. A FIFO or oversize file is refused."""
    try:
        return read_regular_file(path, max_bytes, "stored VCEK")
    except FileMissingError:
        return None
    except FileRefusedError as e:
        raise VcekUnavailableError(e.message) from e
