"""The appraisal policy: which root to trust and which values to accept.

    from pathlib import Path
    from attestd.verifier.policy import load_policy

    policy = load_policy(Path("/etc/attestd/policy.toml"))
    policy.trust.root            # TrustRoot.INTEL or TrustRoot.SIMULATED
    policy.tdx.mrtd              # allowed MRTD values, lowercase hex, or None

The file is TOML and is read strictly: an unknown table or key, a value of the
wrong type or a malformed hex string is a :class:`PolicyError` that names the
key and the file, because a misspelt ``mrdt`` that silently checks nothing is
worse than a verifier that refuses to start. Every option is described in
``docs/policy.md``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from attestd._files import MAX_CONFIG_BYTES, FileRefusedError, read_regular_file
from attestd._toml import TomlReader, load_toml
from attestd.verifier.errors import PolicyError

# TDX measurement registers (MRTD, RTMRn) are SHA-384 values.
_MEASUREMENT_HEX_LEN = 96
_SHA256_HEX_LEN = 64
_TEE_TCB_SVN_HEX_LEN = 32
_SNP_PRODUCTS = ("Milan", "Genoa", "Turin")
#: The keys an SEV-SNP report can be signed with: the chip's VCEK, a cloud provider's VLEK.
SNP_SIGNING_KEYS = ("vcek", "vlek")
_TCB_STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
)

DEFAULT_MAX_AGE_SECONDS = 300
"""How old evidence may be when a policy sets no ``max_age_seconds`` (a layout sets no bound)."""
DEFAULT_MAX_CLOCK_SKEW_SECONDS = 30
"""How far ahead of the verifier's clock evidence may be dated, for policies and layouts alike."""


class TrustRoot(enum.StrEnum):
    """The root a quote must chain to: a vendor's, or a simulator's exported one."""

    INTEL = "intel"
    AMD = "amd"
    SIMULATED = "simulated"


#: The TEE each vendor root vouches for; a simulated root's kind is read from its key.
_ROOT_TEE = {TrustRoot.INTEL: "tdx", TrustRoot.AMD: "sev-snp"}


@dataclass(frozen=True)
class TrustPolicy:
    """``[trust]``: the root of trust, and the simulated root's certificate when used."""

    root: TrustRoot
    simulated_root_path: Path | None = None
    simulated_root: x509.Certificate | None = None
    tee: str = "tdx"
    """The one TEE type this policy accepts ("tdx" or "sev-snp")."""


@dataclass(frozen=True)
class FreshnessPolicy:
    """``[freshness]``: how old evidence may be, and how far ahead the agent's clock may run.

    ``max_age_seconds=None`` sets no bound on age (a layout's default: stage
    attestations are read long after the fact); the skew is always bounded.
    """

    max_age_seconds: int | None = DEFAULT_MAX_AGE_SECONDS
    max_clock_skew_seconds: int = DEFAULT_MAX_CLOCK_SKEW_SECONDS


@dataclass(frozen=True)
class TdxPolicy:
    """``[tdx]``: allowed measurement values (lowercase hex); ``None`` means not checked."""

    mrtd: tuple[str, ...] | None = None
    rtmr0: tuple[str, ...] | None = None
    rtmr1: tuple[str, ...] | None = None
    rtmr2: tuple[str, ...] | None = None
    mr_config_id: tuple[str, ...] | None = None
    mr_owner: tuple[str, ...] | None = None
    mr_owner_config: tuple[str, ...] | None = None
    allow_debug: bool = False
    min_tee_tcb_svn: bytes | None = None
    allowed_tcb_statuses: tuple[str, ...] = ("UpToDate",)
    accepted_advisories: tuple[str, ...] = ()
    rejected_advisories: tuple[str, ...] = ()
    collateral: CollateralPolicy = field(default_factory=lambda: CollateralPolicy())
    require_ccel: bool = False

    def allowed(self, register: str) -> tuple[str, ...] | None:
        """The allowed values of a register ("mrtd", "rtmr0".."rtmr2", "mr_config_id", ...)."""
        values: tuple[str, ...] | None = getattr(self, register)
        return values


class CollateralOrigin(enum.StrEnum):
    """Where the verifier takes DCAP collateral from."""

    EVIDENCE = "evidence"
    FILE = "file"
    PCCS = "pccs"


@dataclass(frozen=True)
class CollateralPolicy:
    """``[tdx.collateral]``: the source of TCB info, QE identity and CRLs."""

    origin: CollateralOrigin = CollateralOrigin.EVIDENCE
    path: Path | None = None
    pccs_url: str | None = None
    cache_dir: Path | None = None


@dataclass(frozen=True)
class SnpTcbMinimum:
    """Lowest acceptable SVN of each TCB component; ``fmc`` only exists on Turin."""

    bootloader: int = 0
    tee: int = 0
    snp: int = 0
    microcode: int = 0
    fmc: int = 0


@dataclass(frozen=True)
class SnpPolicy:
    """``[snp]``: allowed launch values and guest-policy rules; ``None`` means not checked."""

    measurement: tuple[str, ...] | None = None
    host_data: tuple[str, ...] | None = None
    id_key_digest: tuple[str, ...] | None = None
    author_key_digest: tuple[str, ...] | None = None
    allow_debug: bool = False
    allow_migration_agent: bool = False
    allow_smt: bool = True
    vmpl: tuple[int, ...] = (0,)
    min_guest_svn: int = 0
    min_tcb: SnpTcbMinimum = field(default_factory=SnpTcbMinimum)
    product: str | None = None
    use_certificate_table: bool = True
    vcek_store: Path | None = None
    kds_url: str | None = None
    vcek_cache_dir: Path | None = None
    signing_keys: tuple[str, ...] = SNP_SIGNING_KEYS
    """Which keys may sign: ``"vcek"`` (chip-unique), ``"vlek"`` (a cloud provider's)."""
    check_revocation: bool | None = None
    """Check the ARK's CRL; None is the root's default (on for ``"amd"``, off for simulated)."""
    crl_store: Path | None = None
    """Offline CRLs, ``<product>-<vcek|vlek>.crl``, tried before ``vcek_cache_dir`` and the KDS."""

    def revocation_checked(self, root: TrustRoot) -> bool:
        """Whether the ARK's CRL is checked under ``root``: as set, else on for AMD's roots."""
        if self.check_revocation is not None:
            return self.check_revocation
        return root is TrustRoot.AMD


@dataclass(frozen=True)
class ArtifactPolicy:
    """One ``[[artifacts]]`` entry: a subject that must (or may) appear in the evidence."""

    sha256: str
    name: str | None = None
    required: bool = True


@dataclass(frozen=True)
class Policy:
    """A whole policy file, validated."""

    trust: TrustPolicy
    freshness: FreshnessPolicy = FreshnessPolicy()
    tdx: TdxPolicy = TdxPolicy()
    snp: SnpPolicy = SnpPolicy()
    artifacts: tuple[ArtifactPolicy, ...] = ()
    source: Path | None = None


def load_policy(path: Path) -> Policy:
    """Read and validate the policy file at ``path``; raise :class:`PolicyError` if it is wrong."""
    return parse_policy(read_toml(path, what="policy file", error=PolicyError), source=path)


def read_toml(path: Path, *, what: str, error: type[PolicyError]) -> dict[str, Any]:
    """The TOML document at ``path``; an unreadable or invalid file is ``error``, naming it."""
    return load_toml(path, what, lambda message: error(message, path=str(path)))


def reader_for(source: Path, error: type[PolicyError] = PolicyError) -> TomlReader:
    """The strict reader of a policy-shaped file: ``error`` names ``source`` in each message."""
    return TomlReader(lambda message: error(message, path=str(source)), source=source)


def parse_policy(document: Mapping[str, Any], *, source: Path) -> Policy:
    """Validate an already-parsed TOML document; relative paths resolve against ``source``."""
    reader = reader_for(source)
    reader.only_keys(document, "", {"trust", "freshness", "tdx", "snp", "artifacts"})
    if "trust" not in document:
        raise reader.error("missing required table [trust]: the root of trust is never implied")
    return Policy(
        trust=trust_policy(reader, reader.table(document, "trust")),
        freshness=freshness_policy(
            reader, reader.table(document, "freshness"), max_age_default=DEFAULT_MAX_AGE_SECONDS
        ),
        tdx=tdx_policy(reader, reader.table(document, "tdx")),
        snp=snp_policy(reader, reader.table(document, "snp")),
        artifacts=_artifacts(reader, document.get("artifacts", []), "artifacts"),
        source=source,
    )


def trust_policy(reader: TomlReader, table: Mapping[str, Any]) -> TrustPolicy:
    reader.only_keys(table, "trust", {"root", "simulated_root", "tee"})
    root_name = reader.string(table, "trust", "root")
    if root_name is None:
        raise reader.error('trust.root is required ("intel", "amd" or "simulated")')
    try:
        root = TrustRoot(root_name)
    except ValueError:
        choices = ", ".join(f'"{r.value}"' for r in TrustRoot)
        raise reader.error(f"trust.root must be one of {choices}, not {root_name!r}") from None
    tee_name = reader.string(table, "trust", "tee")
    if tee_name is not None and tee_name not in ("tdx", "sev-snp"):
        raise reader.error(f'trust.tee must be "tdx" or "sev-snp", not {tee_name!r}')
    pem_name = reader.string(table, "trust", "simulated_root")
    if root is not TrustRoot.SIMULATED:
        if pem_name is not None:
            raise reader.error('trust.simulated_root is only allowed with root = "simulated"')
        implied = _ROOT_TEE[root]
        if tee_name is not None and tee_name != implied:
            raise reader.error(f'trust.root = "{root}" vouches for {implied}, not {tee_name}')
        return TrustPolicy(root=root, tee=implied)
    if pem_name is None:
        raise reader.error('trust.simulated_root is required when root = "simulated"')
    pem_path = reader.relative(pem_name)
    certificate = _certificate(pem_path)
    # The simulated TDX root is an ECDSA key like Intel's; the simulated ARK is RSA like AMD's.
    implied = "sev-snp" if isinstance(certificate.public_key(), rsa.RSAPublicKey) else "tdx"
    if tee_name is not None and tee_name != implied:
        raise reader.error(f"trust.simulated_root is a simulated {implied} root, not {tee_name}")
    return TrustPolicy(
        root=root, simulated_root_path=pem_path, simulated_root=certificate, tee=implied
    )


def _certificate(path: Path) -> x509.Certificate:
    try:
        pem = read_regular_file(path, MAX_CONFIG_BYTES, "trust.simulated_root")
    except FileRefusedError as err:
        message = f"cannot read trust.simulated_root: {err.detail}"
        raise PolicyError(message, path=str(path)) from err
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as err:
        raise PolicyError(
            f"trust.simulated_root is not a PEM certificate: {err}", path=str(path)
        ) from err


def freshness_policy(
    reader: TomlReader, table: Mapping[str, Any], *, max_age_default: int | None
) -> FreshnessPolicy:
    """``[freshness]``; with no ``max_age_seconds``, ``max_age_default`` (None: no bound)."""
    reader.only_keys(table, "freshness", {"max_age_seconds", "max_clock_skew_seconds"})
    max_age = max_age_default
    if "max_age_seconds" in table:
        max_age = reader.integer(table, "freshness", "max_age_seconds", 0)
        if max_age <= 0:
            raise reader.error("freshness.max_age_seconds must be positive")
    skew = reader.integer(
        table, "freshness", "max_clock_skew_seconds", DEFAULT_MAX_CLOCK_SKEW_SECONDS
    )
    if skew < 0:
        raise reader.error("freshness.max_clock_skew_seconds must not be negative")
    return FreshnessPolicy(max_age_seconds=max_age, max_clock_skew_seconds=skew)


def tdx_policy(reader: TomlReader, table: Mapping[str, Any]) -> TdxPolicy:
    registers = ("mrtd", "rtmr0", "rtmr1", "rtmr2", "mr_config_id", "mr_owner", "mr_owner_config")
    options = {
        "allow_debug",
        "min_tee_tcb_svn",
        "allowed_tcb_statuses",
        "accepted_advisories",
        "rejected_advisories",
        "collateral",
        "require_ccel",
    }
    reader.only_keys(table, "tdx", {*registers, *options})
    allowed = {
        register: reader.hex_list(table, "tdx", register, _MEASUREMENT_HEX_LEN)
        for register in registers
    }
    svn = table.get("min_tee_tcb_svn")
    min_svn = (
        None
        if svn is None
        else bytes.fromhex(reader.hex_value(svn, "tdx.min_tee_tcb_svn", _TEE_TCB_SVN_HEX_LEN))
    )
    statuses = reader.string_list(table, "tdx", "allowed_tcb_statuses")
    if statuses is None:
        statuses = ("UpToDate",)
    elif not statuses:
        raise reader.error("tdx.allowed_tcb_statuses must not be empty: it would accept nothing")
    for status in statuses:
        if status not in _TCB_STATUSES:
            raise reader.error(
                f"tdx.allowed_tcb_statuses: {status!r} is not one of {', '.join(_TCB_STATUSES)}"
                " (Revoked is never acceptable)"
            )
    return TdxPolicy(
        **allowed,
        allow_debug=reader.boolean(table, "tdx", "allow_debug", default=False),
        min_tee_tcb_svn=min_svn,
        allowed_tcb_statuses=statuses,
        accepted_advisories=reader.string_list(table, "tdx", "accepted_advisories") or (),
        rejected_advisories=reader.string_list(table, "tdx", "rejected_advisories") or (),
        collateral=_collateral(reader, reader.table(table, "collateral", where="tdx.collateral")),
        require_ccel=reader.boolean(table, "tdx", "require_ccel", default=False),
    )


def _collateral(reader: TomlReader, table: Mapping[str, Any]) -> CollateralPolicy:
    where = "tdx.collateral"
    reader.only_keys(table, where, {"source", "path", "pccs_url", "cache_dir"})
    name = reader.string(table, where, "source") or "evidence"
    try:
        origin = CollateralOrigin(name)
    except ValueError:
        choices = ", ".join(f'"{o.value}"' for o in CollateralOrigin)
        raise reader.error(f"{where}.source must be one of {choices}, not {name!r}") from None
    path = reader.string(table, where, "path")
    url = reader.string(table, where, "pccs_url")
    cache = reader.string(table, where, "cache_dir")
    if origin is CollateralOrigin.FILE and path is None:
        raise reader.error(f'{where}.path is required with source = "file"')
    if origin is CollateralOrigin.PCCS and (url is None or cache is None):
        raise reader.error(f'{where}.pccs_url and cache_dir are required with source = "pccs"')
    if url is not None and not url.startswith(("https://", "http://")):
        raise reader.error(f"{where}.pccs_url must be an http(s) URL")
    return CollateralPolicy(
        origin=origin,
        path=reader.relative(path) if path else None,
        pccs_url=url,
        cache_dir=reader.relative(cache) if cache else None,
    )


def snp_policy(reader: TomlReader, table: Mapping[str, Any]) -> SnpPolicy:
    where = "snp"
    values = {
        "measurement": _MEASUREMENT_HEX_LEN,
        "host_data": _SHA256_HEX_LEN,
        "id_key_digest": _MEASUREMENT_HEX_LEN,
        "author_key_digest": _MEASUREMENT_HEX_LEN,
    }
    options = {
        "allow_debug",
        "allow_migration_agent",
        "allow_smt",
        "vmpl",
        "min_guest_svn",
        "min_tcb",
        "product",
        "use_certificate_table",
        "vcek_store",
        "kds_url",
        "vcek_cache_dir",
        "signing_keys",
        "check_revocation",
        "crl_store",
    }
    reader.only_keys(table, where, {*values, *options})
    allowed = {key: reader.hex_list(table, "snp", key, size) for key, size in values.items()}
    vmpl = table.get("vmpl", [0])
    if (
        not isinstance(vmpl, list)
        or not vmpl
        or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 3 for v in vmpl)
    ):
        raise reader.error("snp.vmpl must be a non-empty array of integers 0 to 3")
    product = reader.string(table, where, "product")
    if product is not None and product not in _SNP_PRODUCTS:
        raise reader.error(f"snp.product must be one of {', '.join(_SNP_PRODUCTS)}")
    tcb_table = reader.table(table, "min_tcb", where="snp.min_tcb")
    components = ("bootloader", "tee", "snp", "microcode", "fmc")
    reader.only_keys(tcb_table, "snp.min_tcb", set(components))
    minimum = {}
    for component in components:
        value = reader.integer(tcb_table, "snp.min_tcb", component, 0)
        if not 0 <= value <= 255:
            raise reader.error(f"snp.min_tcb.{component} must be 0 to 255")
        minimum[component] = value
    min_svn = reader.integer(table, where, "min_guest_svn", 0)
    if not 0 <= min_svn < 1 << 32:
        raise reader.error("snp.min_guest_svn must be 0 to 2^32 - 1")
    kds_url = reader.string(table, where, "kds_url")
    if kds_url is not None and not kds_url.startswith(("https://", "http://")):
        raise reader.error("snp.kds_url must be an http(s) URL")
    store = reader.string(table, where, "vcek_store")
    cache = reader.string(table, where, "vcek_cache_dir")
    crl_store = reader.string(table, where, "crl_store")
    # Absent means the root's default, decided where the root is known (revocation_checked).
    check_revocation = (
        reader.boolean(table, where, "check_revocation", default=False)
        if "check_revocation" in table
        else None
    )
    signing_keys = reader.string_list(table, where, "signing_keys")
    if signing_keys is None:
        signing_keys = SNP_SIGNING_KEYS
    if not signing_keys or not set(signing_keys) <= set(SNP_SIGNING_KEYS):
        raise reader.error(
            f"snp.signing_keys must name one or both of {', '.join(SNP_SIGNING_KEYS)}"
        )
    return SnpPolicy(
        **allowed,
        allow_debug=reader.boolean(table, where, "allow_debug", default=False),
        allow_migration_agent=reader.boolean(table, where, "allow_migration_agent", default=False),
        allow_smt=reader.boolean(table, where, "allow_smt", default=True),
        vmpl=tuple(vmpl),
        min_guest_svn=min_svn,
        min_tcb=SnpTcbMinimum(**minimum),
        product=product,
        use_certificate_table=reader.boolean(table, where, "use_certificate_table", default=True),
        vcek_store=reader.relative(store) if store else None,
        kds_url=kds_url,
        vcek_cache_dir=reader.relative(cache) if cache else None,
        signing_keys=tuple(dict.fromkeys(signing_keys)),
        check_revocation=check_revocation,
        crl_store=reader.relative(crl_store) if crl_store else None,
    )


def _artifacts(reader: TomlReader, entries: Any, key: str) -> tuple[ArtifactPolicy, ...]:
    if not isinstance(entries, list):
        raise reader.error(f"{key} must be an array of tables ([[{key}]])")
    artifacts = []
    for index, entry in enumerate(entries):
        where = f"{key}[{index}]"
        if not isinstance(entry, dict):
            raise reader.error(f"{where} must be a table ([[{key}]])")
        reader.only_keys(entry, where, {"name", "sha256", "required"})
        if "sha256" not in entry:
            raise reader.error(f"{where}.sha256 is required")
        artifacts.append(
            ArtifactPolicy(
                sha256=reader.hex_value(entry["sha256"], f"{where}.sha256", _SHA256_HEX_LEN),
                name=reader.string(entry, where, "name"),
                required=reader.boolean(entry, where, "required", default=True),
            )
        )
    return tuple(artifacts)
