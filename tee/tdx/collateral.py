"""Where DCAP collateral comes from: a file, a PCCS or Intel's PCS, or the evidence itself.

    >>> from attestd.tee.tdx.collateral import FileCollateralSource, PccsCollateralSource
    >>> source = FileCollateralSource(Path("collateral/"))          # <FMSPC>.json files
    >>> source = PccsCollateralSource("https://pccs.example:8081", cache_dir, timeout=10)
    >>> collateral = source.collateral_for(parse_quote(raw), now)   # raises CollateralError
    >>> verify_with_collateral(raw, collateral, DcapOptions(now=now))

Collateral is Intel's TCB info and QE identity (each with its signature and
issuer chain), the root CA CRL, and the PCK CRL with its issuer chain; the
JSON form is dcap-qvl's ``QuoteCollateralV3`` (CRLs and signatures in hex).
Sources only fetch and parse: whether the collateral is signed, current and
names the quote's TCB is decided by :mod:`attestd.tee.tdx.dcap`. Every failure
is a :class:`CollateralError` with a stable ``reason``:

- ``collateral_unavailable``: nothing for this quote (missing file, HTTP 404 or
  5xx, network failure or timeout, another FMSPC);
- ``collateral_malformed``: bytes that are not collateral (bad JSON, bad hex,
  unparsable CRL or certificates, a missing field or header);
- ``collateral_too_large``: a file or response over the size limit;
- ``collateral_expired``: a PCCS served collateral whose nextUpdate has passed.

Collateral read from a mapping (the evidence's) is cached, bounded, by its
exact field values, and so is the FMSPC and PCK CA read from a PCK chain:
both are functions of immutable bytes. Whether collateral is current is not
decided here and so is never cached here.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import dcap_qvl
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from attestd._files import FileMissingError, FileRefusedError, FileTooLargeError, read_regular_file
from attestd.tee import _cache, _http
from attestd.tee._http import Response
from attestd.tee.errors import TeeError
from attestd.tee.tdx.abi import Quote

COLLATERAL_UNAVAILABLE = "collateral_unavailable"
COLLATERAL_MALFORMED = "collateral_malformed"
COLLATERAL_TOO_LARGE = "collateral_too_large"
COLLATERAL_EXPIRED = "collateral_expired"

#: Real collateral is tens of kilobytes (the PCK CRL grows with revocations).
MAX_COLLATERAL_BYTES = 4 * 1024 * 1024

_TEXT_FIELDS = (
    "pck_crl_issuer_chain",
    "tcb_info_issuer_chain",
    "tcb_info",
    "qe_identity_issuer_chain",
    "qe_identity",
)
_HEX_FIELDS = ("root_ca_crl", "pck_crl", "tcb_info_signature", "qe_identity_signature")


class CollateralError(TeeError):
    """Collateral could not be had or read; each subclass is one ``reason`` (module docstring)."""

    reason = "collateral_error"


class CollateralUnavailableError(CollateralError):
    """Nothing for this quote: a missing file, an HTTP error or timeout, another FMSPC."""

    reason = COLLATERAL_UNAVAILABLE


class CollateralMalformedError(CollateralError):
    """Bytes that are not collateral."""

    reason = COLLATERAL_MALFORMED


class CollateralTooLargeError(CollateralError):
    """A file or response over the size limit."""

    reason = COLLATERAL_TOO_LARGE


class CollateralExpiredError(CollateralError):
    """A PCCS served collateral whose nextUpdate has passed."""

    reason = COLLATERAL_EXPIRED


def _malformed(message: str) -> CollateralError:
    return CollateralMalformedError(message)


@dataclass(frozen=True)
class Collateral:
    """One quote's DCAP collateral, checked for shape (not for signatures) when built.

    ``tcb_info`` and ``qe_identity`` are the exact JSON texts their signatures
    cover; never re-serialise them.
    """

    pck_crl_issuer_chain: str
    root_ca_crl: bytes
    pck_crl: bytes
    tcb_info_issuer_chain: str
    tcb_info: str
    tcb_info_signature: bytes
    qe_identity_issuer_chain: str
    qe_identity: str
    qe_identity_signature: bytes
    # Parsed once from the fields above, by __post_init__.
    _documents: tuple[tuple[dict[str, Any], datetime], ...] = dataclasses.field(
        init=False, repr=False, compare=False
    )
    _crl_updates: tuple[datetime, datetime] = dataclasses.field(
        init=False, repr=False, compare=False
    )
    _validity: tuple[datetime, datetime] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in _TEXT_FIELDS:
            if not isinstance(getattr(self, name), str):
                raise _malformed(f"collateral field {name} is not text")
        for name in _HEX_FIELDS:
            if not isinstance(getattr(self, name), bytes):
                raise _malformed(f"collateral field {name} is not bytes")
        certificates = [
            cert
            for name in (
                "pck_crl_issuer_chain",
                "tcb_info_issuer_chain",
                "qe_identity_issuer_chain",
            )
            for cert in _pem_chain(getattr(self, name), name)
        ]
        documents = (
            _signed_document(self.tcb_info, "tcb_info", ("id", "fmspc", "tcbLevels")),
            _signed_document(self.qe_identity, "qe_identity", ("id", "tcbLevels")),
        )
        crls = (_crl(self.root_ca_crl, "root_ca_crl"), _crl(self.pck_crl, "pck_crl"))
        crl_updates = (
            _crl_next_update(crls[0], "root_ca_crl"),
            _crl_next_update(crls[1], "pck_crl"),
        )
        object.__setattr__(self, "_documents", documents)
        object.__setattr__(self, "_crl_updates", crl_updates)
        starts = [c.not_valid_before_utc for c in certificates]
        starts += [crl.last_update_utc for crl in crls]
        starts += [_issue_date(doc) for doc, _ in documents]
        ends = [c.not_valid_after_utc for c in certificates] + [self.next_update]
        object.__setattr__(self, "_validity", (max(starts), min(ends)))

    @classmethod
    def from_mapping(cls, document: Mapping[str, Any]) -> Collateral:
        """From dcap-qvl's ``QuoteCollateralV3`` JSON object (bytes fields in hex).

        Cached by the exact field values: the same collateral in many pieces of
        evidence is parsed once.
        """
        if not isinstance(document, Mapping):
            raise _malformed("collateral is not a JSON object")
        key = tuple(document.get(name) for name in (*_TEXT_FIELDS, *_HEX_FIELDS))
        if all(isinstance(v, str) for v in key) and len(document) == len(key):
            start, end = _cache.ALWAYS
            cached = _PARSED.get(key, start)
            if cached is None:
                cached = cls._from_mapping(document)
                _PARSED.put(key, cached, not_before=start, not_after=end)
            return cached
        return cls._from_mapping(document)

    @classmethod
    def _from_mapping(cls, document: Mapping[str, Any]) -> Collateral:
        values: dict[str, Any] = {}
        for name in (*_TEXT_FIELDS, *_HEX_FIELDS):
            if name not in document:
                raise _malformed(f"collateral has no {name}")
            values[name] = document[name]
        for name in _HEX_FIELDS:
            try:
                values[name] = bytes.fromhex(values[name])
            except (TypeError, ValueError) as e:
                raise _malformed(f"collateral field {name} is not hex: {e}") from None
        return cls(**values)

    @classmethod
    def from_json(cls, text: str | bytes) -> Collateral:
        try:
            document = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise _malformed(f"collateral is not JSON: {e}") from None
        return cls.from_mapping(document)

    @classmethod
    def from_dcap(cls, collateral: dcap_qvl.QuoteCollateralV3) -> Collateral:
        return cls.from_json(collateral.to_json())

    def to_mapping(self) -> dict[str, str]:
        """dcap-qvl's ``QuoteCollateralV3`` JSON object."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        return {k: v.hex() if isinstance(v, bytes) else v for k, v in values.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_mapping())

    def to_dcap(self) -> dcap_qvl.QuoteCollateralV3:
        return dcap_qvl.QuoteCollateralV3(
            self.pck_crl_issuer_chain,
            self.root_ca_crl,
            self.pck_crl,
            self.tcb_info_issuer_chain,
            self.tcb_info,
            self.tcb_info_signature,
            self.qe_identity_issuer_chain,
            self.qe_identity,
            self.qe_identity_signature,
        )

    @property
    def fmspc(self) -> str:
        """The FMSPC the TCB info is for, upper-case hex."""
        return str(self._documents[0][0]["fmspc"]).upper()

    @property
    def next_update(self) -> datetime:
        """The earliest nextUpdate of TCB info, QE identity and both CRLs."""
        return min(self._documents[0][1], self._documents[1][1], *self._crl_updates)

    @property
    def validity(self) -> tuple[datetime, datetime]:
        """When every date in this collateral admits it: (latest start, earliest end).

        Starts are the issuer certificates' notBefore, the CRLs' thisUpdate and
        the documents' issueDate; ends are the certificates' notAfter and every
        nextUpdate. A verdict on this collateral holds only inside this span.
        """
        return self._validity

    @cached_property
    def cache_key(self) -> bytes:
        """A digest of every field: equal for equal collateral, for cache keys (computed once)."""
        values = [getattr(self, name) for name in (*_TEXT_FIELDS, *_HEX_FIELDS)]
        return _cache.digest(*(v.encode() if isinstance(v, str) else v for v in values))


def _pem_chain(pem: str, name: str) -> tuple[x509.Certificate, ...]:
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except Exception as e:  # any refusal of the certificate parser
        raise _malformed(f"{name} is not a PEM certificate chain: {e}") from None
    return tuple(certs)


def _parse_time(value: object, what: str) -> datetime:
    if not isinstance(value, str):
        raise _malformed(f"{what} is not a date")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _malformed(f"{what} is not an ISO 8601 date: {value!r}") from None
    if moment.tzinfo is None:
        raise _malformed(f"{what} has no time zone: {value!r}")
    return moment


def _signed_document(
    text: str, name: str, required: tuple[str, ...]
) -> tuple[dict[str, Any], datetime]:
    try:
        document = json.loads(text)
    except ValueError as e:
        raise _malformed(f"{name} is not JSON: {e}") from None
    if not isinstance(document, dict):
        raise _malformed(f"{name} is not a JSON object")
    for key in required:
        if key not in document:
            raise _malformed(f"{name} has no {key}")
    return document, _parse_time(document.get("nextUpdate"), f"{name}.nextUpdate")


def _crl(der: bytes, name: str) -> x509.CertificateRevocationList:
    try:
        return x509.load_der_x509_crl(der)
    except Exception as e:  # any refusal of the CRL parser
        raise _malformed(f"{name} is not a DER CRL: {e}") from None


def _crl_next_update(crl: x509.CertificateRevocationList, name: str) -> datetime:
    try:
        next_update = crl.next_update_utc
    except Exception as e:  # any refusal of the CRL parser
        raise _malformed(f"{name} is not a DER CRL: {e}") from None
    if next_update is None:
        raise _malformed(f"{name} has no nextUpdate")
    return next_update


def _issue_date(document: dict[str, Any]) -> datetime:
    """A signed document's issueDate; the end of time (nothing cacheable) if unreadable.

    Reading it is not this module's check (dcap-qvl's is): a missing or bad date
    only means that no verdict on this collateral may be cached.
    """
    try:
        return _parse_time(document.get("issueDate"), "issueDate")
    except CollateralError:
        return _cache.ALWAYS[1]


# Evidence collateral by its exact field values (a fleet shares a few platforms' collateral).
_PARSED: _cache.ValidityCache[tuple[object, ...], Collateral] = _cache.ValidityCache(
    "tdx.collateral", maxsize=256
)
# FMSPC and PCK CA by the PCK chain's PEM bytes.
_PLATFORM_IDS: _cache.ValidityCache[bytes, _PlatformIds] = _cache.ValidityCache(
    "tdx.platform_ids", maxsize=1024
)


class CollateralSource(Protocol):
    """Anything that finds the collateral for a quote at a given moment."""

    def collateral_for(self, quote: Quote, now: datetime) -> Collateral: ...


@dataclass(frozen=True)
class _PlatformIds:
    fmspc: str  # upper-case hex, as PCS URLs and file names spell it
    ca: str  # "platform" or "processor": which PCK CA issued the leaf, so which PCK CRL


def _platform_ids(quote: Quote) -> _PlatformIds:
    """FMSPC and PCK CA from the quote's PCK leaf (Intel's SGX extension, issuer name)."""
    pem = quote.certification_data.pck_chain_pem
    start, end = _cache.ALWAYS
    cached = _PLATFORM_IDS.get(pem, start)
    if cached is not None:
        return cached
    try:
        parsed = dcap_qvl.parse_quote(quote.to_bytes())
        ids = _PlatformIds(parsed.fmspc().upper(), parsed.ca())
    except ValueError as e:
        raise CollateralUnavailableError(
            f"the quote's PCK certificate names no FMSPC: {e}"
        ) from None
    _PLATFORM_IDS.put(pem, ids, not_before=start, not_after=end)
    return ids


def _read_limited(path: Path, limit: int) -> bytes:
    try:
        return read_regular_file(path, limit, "collateral")
    except FileMissingError:
        raise CollateralUnavailableError(f"no collateral at {path}") from None
    except FileTooLargeError:
        raise CollateralTooLargeError(f"{path} is larger than {limit} bytes") from None
    except FileRefusedError as e:
        raise CollateralUnavailableError(f"cannot read collateral at {path}: {e.detail}") from None


def _check_fmspc(collateral: Collateral, ids: _PlatformIds, where: str) -> Collateral:
    if collateral.fmspc != ids.fmspc:
        raise CollateralUnavailableError(
            f"{where} is for FMSPC {collateral.fmspc}, the quote's platform is {ids.fmspc}"
        )
    return collateral


class FileCollateralSource:
    """Collateral from a ``QuoteCollateralV3`` JSON file, or a directory of ``<FMSPC>.json``."""

    def __init__(self, path: Path | str, *, max_bytes: int = MAX_COLLATERAL_BYTES) -> None:
        self._path = Path(path)
        self._max_bytes = max_bytes

    def collateral_for(self, quote: Quote, now: datetime) -> Collateral:
        ids = _platform_ids(quote)
        path = self._path
        if path.is_dir():
            candidates = [path / f"{ids.fmspc}.json", path / f"{ids.fmspc.lower()}.json"]
            path = next((p for p in candidates if p.is_file()), candidates[0])
        collateral = Collateral.from_json(_read_limited(path, self._max_bytes))
        return _check_fmspc(collateral, ids, str(path))


class EvidenceCollateralSource:
    """Collateral that came inside the evidence, as ``QuoteCollateralV3`` JSON."""

    def __init__(self, collateral_json: str | bytes | Mapping[str, Any]) -> None:
        self._document = collateral_json

    @cached_property
    def _collateral(self) -> Collateral:
        if isinstance(self._document, Mapping):
            return Collateral.from_mapping(self._document)
        if len(self._document) > MAX_COLLATERAL_BYTES:
            raise CollateralTooLargeError(
                f"collateral in evidence is larger than {MAX_COLLATERAL_BYTES} bytes"
            )
        return Collateral.from_json(self._document)

    def collateral_for(self, quote: Quote, now: datetime) -> Collateral:
        return _check_fmspc(self._collateral, _platform_ids(quote), "the evidence's collateral")


# --- PCCS / PCS ---------------------------------------------------------------------------


#: ``fetch(url, timeout, max_bytes) -> Response``; raises CollateralError.
Fetcher = _http.Fetcher


def _urllib_fetch(url: str, timeout: float, max_bytes: int) -> Response:
    try:
        return _http.http_get(url, timeout, max_bytes)
    except _http.FetchTooLargeError as e:
        raise CollateralTooLargeError(e.message) from None
    except _http.FetchError as e:  # refused, DNS, timeout, TLS, HTTP error status
        raise CollateralUnavailableError(e.message) from None


class PccsCollateralSource:
    """Collateral from a PCCS or Intel's PCS (API v4), cached on disk until its nextUpdate.

    Fetches, for a TDX quote's FMSPC and PCK CA:
    ``/tdx/certification/v4/tcb?fmspc=…`` (header ``TCB-Info-Issuer-Chain``),
    ``/tdx/certification/v4/qe/identity`` (``SGX-Enclave-Identity-Issuer-Chain``),
    ``/sgx/certification/v4/pckcrl?ca=…&encoding=der`` (``SGX-PCK-CRL-Issuer-Chain``)
    and the root CA CRL from a PCCS's ``/sgx/certification/v4/rootcacrl``, else
    from the URL in the root certificate's CRL distribution point. Issuer chains
    are URL-encoded PEM. TCB info and QE identity are kept as the exact text
    their signatures cover. A cached response is used while ``now`` is before
    its nextUpdate; the clock is always the caller's.
    """

    def __init__(
        self,
        base_url: str,
        cache_dir: Path | str,
        timeout: float = 10.0,
        *,
        max_response_bytes: int = MAX_COLLATERAL_BYTES,
        fetch: Fetcher | None = None,
    ) -> None:
        base = base_url.rstrip("/")
        for suffix in ("/sgx/certification/v4", "/tdx/certification/v4"):
            base = base.removesuffix(suffix)
        if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
            raise ValueError(f"PCCS URL must be http(s): {base_url!r}")
        self._base = base
        self._cache = _http.DiskCache(Path(cache_dir), max_bytes=max_response_bytes)
        self._timeout = timeout
        self._max_bytes = max_response_bytes
        self._fetch = fetch or _urllib_fetch

    def collateral_for(self, quote: Quote, now: datetime) -> Collateral:
        ids = _platform_ids(quote)
        tcb_chain, tcb_info, tcb_signature = self._signed_json(
            f"tcb-{ids.fmspc}",
            f"/tdx/certification/v4/tcb?fmspc={ids.fmspc}",
            ("tcb-info-issuer-chain", "sgx-tcb-info-issuer-chain"),
            "tcbInfo",
            now,
        )
        qe_chain, qe_identity, qe_signature = self._signed_json(
            "qe-identity",
            "/tdx/certification/v4/qe/identity?update=standard",
            ("sgx-enclave-identity-issuer-chain",),
            "enclaveIdentity",
            now,
        )
        pck_crl_response = self._cached(
            f"pckcrl-{ids.ca}",
            f"{self._base}/sgx/certification/v4/pckcrl?ca={ids.ca}&encoding=der",
            now,
            _crl_expiry,
        )
        pck_crl = _crl_bytes(pck_crl_response.body, "PCK CRL")
        pck_crl_chain = _issuer_chain(pck_crl_response, ("sgx-pck-crl-issuer-chain",), "PCK CRL")
        root_ca_crl = self._root_ca_crl(qe_chain, now)
        collateral = Collateral(
            pck_crl_issuer_chain=pck_crl_chain,
            root_ca_crl=root_ca_crl,
            pck_crl=pck_crl,
            tcb_info_issuer_chain=tcb_chain,
            tcb_info=tcb_info,
            tcb_info_signature=tcb_signature,
            qe_identity_issuer_chain=qe_chain,
            qe_identity=qe_identity,
            qe_identity_signature=qe_signature,
        )
        return _check_fmspc(collateral, ids, f"TCB info from {self._base}")

    def _signed_json(
        self, key: str, path: str, headers: tuple[str, ...], member: str, now: datetime
    ) -> tuple[str, str, bytes]:
        """Issuer chain, exact text of ``member``, and signature of a TCB info / QE identity."""

        def expiry(response: Response) -> datetime:
            text, _ = _member_text(response.body, member)
            return _signed_document(text, member, ())[1]

        response = self._cached(key, f"{self._base}{path}", now, expiry)
        text, signature = _member_text(response.body, member)
        return _issuer_chain(response, headers, member), text, signature

    def _root_ca_crl(self, issuer_chain: str, now: datetime) -> bytes:
        try:
            response = self._cached(
                "rootcacrl", f"{self._base}/sgx/certification/v4/rootcacrl", now, _crl_expiry
            )
        except CollateralError as pccs_error:
            # Intel's PCS has no rootcacrl endpoint: the root names where its CRL is.
            url = _crl_distribution_point(_pem_chain(issuer_chain, "issuer chain")[-1])
            if url is None:
                raise pccs_error
            response = self._cached("rootcacrl-dp", url, now, _crl_expiry)
        return _crl_bytes(response.body, "root CA CRL")

    def _cached(
        self, key: str, url: str, now: datetime, expiry: Callable[[Response], datetime]
    ) -> Response:
        """The response for ``url``: from the cache while before its expiry, else fetched."""
        name = f"{key}.json"
        cached = self._cache.load(name, url, now)
        if cached is not None:
            return cached
        response = self._fetch(url, self._timeout, self._max_bytes)
        expires = expiry(response)  # raises collateral_malformed on garbage
        if now >= expires:
            raise CollateralExpiredError(
                f"{url} served collateral that expired at {expires.isoformat()}"
            )
        self._cache.store(name, url, response, expires=expires)
        return response


def _member_text(body: bytes, member: str) -> tuple[str, bytes]:
    """The exact JSON text of ``member`` in a PCS response, and its hex ``signature``.

    Intel signs the member's bytes as served, so they are cut out, not re-encoded.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed(f"the {member} response is not UTF-8") from None
    decoder = json.JSONDecoder()
    members: dict[str, tuple[int, int, Any]] = {}
    try:
        index = _skip_space(text, 0)
        if text[index : index + 1] != "{":
            raise ValueError("not a JSON object")
        index = _skip_space(text, index + 1)
        while text[index : index + 1] != "}":
            name, index = json.decoder.scanstring(text, index + 1)  # type: ignore[attr-defined]
            index = _skip_space(text, index)
            if text[index : index + 1] != ":":
                raise ValueError("expected ':'")
            start = _skip_space(text, index + 1)
            value, end = decoder.raw_decode(text, start)
            members[name] = (start, end, value)
            index = _skip_space(text, end)
            if text[index : index + 1] == ",":
                index = _skip_space(text, index + 1)
        if text[index + 1 :].strip():
            raise ValueError("data after the JSON object")
    except (ValueError, IndexError) as e:
        raise _malformed(f"the {member} response is not a JSON object: {e}") from None
    if member not in members or not isinstance(members[member][2], dict):
        raise _malformed(f"the response has no {member} object")
    signature = members.get("signature", (0, 0, None))[2]
    try:
        signature_bytes = bytes.fromhex(signature)
    except (TypeError, ValueError):
        raise _malformed(f"the {member} response has no hex signature") from None
    start, end, _ = members[member]
    return text[start:end], signature_bytes


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _issuer_chain(response: Response, names: tuple[str, ...], what: str) -> str:
    for name in names:
        if name in response.headers:
            chain = urllib.parse.unquote(response.headers[name])
            _pem_chain(chain, f"{what} issuer chain")
            return chain
    raise _malformed(f"the {what} response has no {names[0]} header")


def _crl_bytes(body: bytes, what: str) -> bytes:
    """A CRL as DER, whether served as DER, PEM or (as a PCCS serves the root CA CRL) hex."""
    der = body  # DER is taken as is: its last bytes may well look like whitespace
    if body[:1] != b"\x30":
        text = body.strip()
        try:
            if text.startswith(b"-----BEGIN X509 CRL-----"):
                der = x509.load_pem_x509_crl(text).public_bytes(Encoding.DER)
            else:
                der = bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise _malformed(f"the {what} is neither DER, PEM nor hex") from None
    _crl_next_update(_crl(der, what), what)
    return der


def _crl_expiry(response: Response) -> datetime:
    return _crl_next_update(_crl(_crl_bytes(response.body, "CRL"), "CRL"), "CRL")


def _crl_distribution_point(cert: x509.Certificate) -> str | None:
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return None
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier):
                return name.value
    return None
