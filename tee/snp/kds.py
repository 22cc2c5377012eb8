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

The ARK's CRL comes from a :class:`CrlSource`, tried in this order: an offline
store (``<product>-<vcek|vlek>.crl``), the memory and disk caches (each entry
kept until the CRL's own nextUpdate, like the TDX collateral cache), and the
KDS at ``{kds}/vcek/v1/{product}/crl`` (the ASK chain) or
``{kds}/vlek/v1/{product}/crl`` (the ASVK chain), the distribution points
AMD's intermediates name. Every candidate passes the verifier's ``accept``
(:func:`attestd.tee.snp.verify.check_not_revoked`) before it is served or
kept, so a forged or stale CRL never enters a cache.

    >>> crls = CrlSource(kds_base_url=KDS_BASE_URL, cache_dir=Path("/var/cache/attestd/kds"))
    >>> verify_report(raw, vcek=vcek, options=VerifyOptions(now=now, revocation=crls))
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from attestd._files import (
    FileMissingError,
    FileRefusedError,
    FileTooLargeError,
    read_regular_file,
)
from attestd.tee import _cache
from attestd.tee._http import (
    DiskCache,
    FetchError,
    FetchStatusError,
    FetchTooLargeError,
    Response,
    http_get,
)
from attestd.tee.errors import QuoteVerificationError, TeeError
from attestd.tee.snp.abi import (
    CERT_GUIDS,
    SIGNING_KEY_VLEK,
    TURIN,
    AttestationReport,
    CertChain,
    CertKind,
    TcbVersion,
)
from attestd.tee.snp.verify import (
    TURIN_HWID_SIZE,
    CrlTooLargeError,
    CrlUnavailableError,
    VcekChainInvalidError,
    load_certificate,
)

KDS_BASE_URL = "https://kdsintf.amd.com"
DEFAULT_TIMEOUT_S = 10.0
#: A VCEK is about 1.4 KB; anything far larger is not one.
MAX_CERTIFICATE_BYTES = 64 * 1024
#: AMD's CRLs list only what an ARK signed (a few intermediates): about 1 KB. The bound
#: leaves room for growth and refuses a body that could only be an attack or an error.
MAX_CRL_BYTES = 256 * 1024

# CRLs fetched or read from the disk cache, by URL, each until its nextUpdate: without a
# cache directory the KDS (which rate-limits) is still asked once per CRL, not per report.
_CRL_RESPONSES: _cache.ValidityCache[str, bytes] = _cache.ValidityCache(
    "snp.crl_responses", maxsize=64
)


class VcekUnavailableError(TeeError):
    """No source could provide the VCEK (or VLEK) for a report; the message says what was tried."""

    reason = "vcek_unavailable"


@dataclass(frozen=True, kw_only=True)
class _KdsSource:
    """What the VCEK and CRL sources share: an offline store, a disk cache and AMD's KDS,
    asked only when ``kds_base_url`` is set, within ``timeout_s`` and ``max_bytes``."""

    offline_store: Path | None = None
    cache_dir: Path | None = None
    kds_base_url: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_bytes: int

    def __post_init__(self) -> None:
        if self.kds_base_url is not None:
            scheme = urllib.parse.urlsplit(self.kds_base_url).scheme
            if scheme not in ("https", "http"):
                raise ValueError(f"kds_base_url must be an http(s) URL, not {self.kds_base_url!r}")
        if self.timeout_s <= 0 or self.max_bytes <= 0:
            raise ValueError("timeout_s and max_bytes must be positive")


@dataclass(frozen=True, kw_only=True)
class VcekSource(_KdsSource):
    """Which sources :func:`get_vcek` may use, in its fixed order.

    ``kds_base_url=None`` keeps verification offline; ``cache_dir`` keeps what
    the KDS answered, keyed by URL, so each chip and TCB is fetched once.
    """

    use_certificate_table: bool = True
    max_bytes: int = MAX_CERTIFICATE_BYTES


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
    except FetchError as e:
        raise VcekUnavailableError(_kds_failure(e)) from e


def _kds_failure(error: FetchError) -> str:
    """What went wrong asking the KDS, with a hint where AMD rate-limited us."""
    if isinstance(error, FetchStatusError):
        hint = " (AMD's KDS rate-limits; retry later)" if error.status == 429 else ""
        return f"KDS: {error.message}{hint}"
    return error.message


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


# -- the ARK's CRL ----------------------------------------------------------------------


def _key_path(signing_key: int) -> str:
    return "vlek" if signing_key == SIGNING_KEY_VLEK else "vcek"


def crl_url(product: str, signing_key: int, *, base_url: str = KDS_BASE_URL) -> str:
    """The KDS URL of the ARK's CRL for ``product``'s ASK chain (a VCEK) or ASVK chain (a VLEK)."""
    return f"{base_url.rstrip('/')}/{_key_path(signing_key)}/v1/{product}/crl"


def offline_crl_path(store: Path, product: str, signing_key: int) -> Path:
    """Where an offline store keeps that CRL: ``<product>-<vcek|vlek>.crl``, DER or PEM."""
    return Path(store) / f"{product}-{_key_path(signing_key)}.crl"


def crl_cache_name(url: str) -> str:
    """The disk cache entry for the CRL at ``url`` (JSON with its expiry, unlike a VCEK's)."""
    return f"crl-{hashlib.sha256(url.encode()).hexdigest()}.json"


@dataclass(frozen=True, kw_only=True)
class CrlSource(_KdsSource):
    """Where :func:`attestd.tee.snp.verify.check_not_revoked` gets the ARK's CRL.

        >>> source = CrlSource(offline_store=Path("/etc/attestd/crl"))
        >>> der = source.crl("Milan", SIGNING_KEY_VCEK, now, accept)   # raises its verdict

    ``offline_store`` holds CRLs an operator put there; ``cache_dir`` keeps what
    the KDS answered, each until its nextUpdate; ``kds_base_url=None`` never
    goes online. With none of the three, every call raises ``collateral_unavailable``.
    """

    max_bytes: int = MAX_CRL_BYTES

    def crl(
        self,
        product: str,
        signing_key: int,
        now: datetime,
        accept: Callable[[bytes], datetime],
    ) -> bytes:
        """The CRL's bytes, which ``accept`` took; raises its verdict or ``CrlUnavailableError``.

        An offline file is the operator's choice and is never passed over: if it
        is refused, so is the verification. A cached entry that ``accept``
        refuses (another trusted ARK, say) is a miss and is fetched again.
        """
        what = f"the ARK's CRL for {product}'s {_key_path(signing_key).upper()} chain"
        tried: list[str] = []
        if self.offline_store is not None:
            path = offline_crl_path(self.offline_store, product, signing_key)
            data = self._read_offline(path)
            if data is not None:
                accept(data)
                return data
            tried.append(f"offline store ({path} absent)")
        url = crl_url(product, signing_key, base_url=self.kds_base_url or KDS_BASE_URL)
        remembered = _CRL_RESPONSES.get(url, now)
        if remembered is not None and _accepted(accept, remembered):
            return remembered
        cache = None
        if self.cache_dir is not None:
            cache = DiskCache(self.cache_dir, max_bytes=self.max_bytes)
            cached = cache.load(crl_cache_name(url), url, now)
            if cached is not None:
                expires = _accepted(accept, cached.body)
                if expires is not None:
                    _remember(url, cached.body, now, expires)
                    return cached.body
            tried.append(f"cache ({crl_cache_name(url)} absent, expired or refused)")
        if self.kds_base_url is None:
            tried.append("AMD KDS (no base URL configured)")
            raise CrlUnavailableError(f"no {what}; tried {'; '.join(tried)}")
        response = self._download(url, what)
        expires = accept(response.body)  # raises its verdict: nothing unverified is kept
        if cache is not None:
            cache.store(crl_cache_name(url), url, response, expires=expires)
        _remember(url, response.body, now, expires)
        return response.body

    def _read_offline(self, path: Path) -> bytes | None:
        return _read_crl_file(path, self.max_bytes)

    def _download(self, url: str, what: str) -> Response:
        try:
            return http_get(url, self.timeout_s, self.max_bytes, accept="application/pkix-crl")
        except FetchTooLargeError as e:
            raise CrlTooLargeError(f"{what}: {e.message}") from e
        except FetchError as e:
            raise CrlUnavailableError(f"{what}: {_kds_failure(e)}") from e


@dataclass(frozen=True)
class CrlFile:
    """One CRL file an operator names, used whatever the product and key kind.

        >>> options = VerifyOptions(now, revocation=CrlFile(Path("milan-vcek.crl")))

    What ``attestctl quote verify --crl`` checks against: the file must be the
    ARK's CRL for the report's chain (``accept`` refuses another ARK's), and a
    missing or refused file fails the verification.
    """

    path: Path
    max_bytes: int = MAX_CRL_BYTES

    def crl(
        self,
        product: str,
        signing_key: int,
        now: datetime,
        accept: Callable[[bytes], datetime],
    ) -> bytes:
        """The file's bytes, which ``accept`` took; raises its verdict or CrlUnavailableError."""
        data = _read_crl_file(self.path, self.max_bytes)
        if data is None:
            raise CrlUnavailableError(f"the CRL file {self.path} does not exist")
        accept(data)
        return data


def _read_crl_file(path: Path, max_bytes: int) -> bytes | None:
    """A stored CRL's bytes, or None where there is no file; refusals raise their reason."""
    try:
        return read_regular_file(path, max_bytes, "stored CRL")
    except FileMissingError:
        return None
    except FileTooLargeError as e:
        raise CrlTooLargeError(e.message) from e
    except FileRefusedError as e:
        raise CrlUnavailableError(e.message) from e


def _accepted(accept: Callable[[bytes], datetime], data: bytes) -> datetime | None:
    """``accept(data)``, or None where it refuses: a cached CRL that fails is fetched anew."""
    try:
        return accept(data)
    except QuoteVerificationError:
        return None


def _remember(url: str, data: bytes, now: datetime, expires: datetime) -> None:
    # Served up to, never at, the nextUpdate (ValidityCache's end is inclusive).
    _CRL_RESPONSES.put(url, data, not_before=now, not_after=expires - timedelta(microseconds=1))
