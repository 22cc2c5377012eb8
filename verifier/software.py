"""A layout's software rules: which packages, images and executables a stage may run with.

    rules = software_rules(reader, layout_doc["software"], "software")   # LayoutError if wrong
    merged = rules.merge(stage_rules)          # the pipeline's rules, then the stage's
    for v in violations(provenance, merged):   # what the stage's software stack breaks
        print(v.reason, v.package, v.detail)   # "package_version_not_allowed", "torch", ...
    level = slsa_build_level(provenance, signed=True, affirmed=True)   # 1, 2 or 3

Package rules are PEP 508 requirements evaluated with ``packaging``
(``torch>=2.6,<2.7`` required; ``pickle5`` forbidden, ``torch==2.5.0`` denied);
names compare PEP 503-normalized. An OSV export (JSON files in the OSV schema,
read offline when the layout is loaded) refuses a package with a known
vulnerability at or above a severity. docs/layout.md describes the keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from attestd._toml import TomlReader
from attestd.evidence import EvidenceError
from attestd.evidence.provenance import StageProvenance

SOFTWARE_KEYS = {
    "required_packages", "forbidden_packages", "osv", "osv_min_severity",
    "allowed_images", "allowed_executables", "min_slsa_level",
}  # fmt: skip
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
_SEVERITY_ALIASES = {"MODERATE": "MEDIUM"}  # GitHub advisories say MODERATE
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
MAX_OSV_BYTES = 64 << 20

REASONS = (
    "software_stack_missing",
    "package_missing",
    "package_version_not_allowed",
    "package_forbidden",
    "package_vulnerable",
    "image_not_allowed",
    "executable_not_allowed",
)


@dataclass(frozen=True)
class Advisory:
    """One OSV entry's verdict on one PyPI package: the versions it affects, its severity."""

    id: str
    package: str
    severity: str
    """One of :data:`SEVERITIES`; an entry that states none counts as CRITICAL (fail closed)."""
    versions: frozenset[str]
    ranges: tuple[tuple[tuple[str, str], ...], ...]
    """ECOSYSTEM ranges, each its events in order: ("introduced", v), ("fixed", v)..."""

    def affects(self, version: str) -> bool:
        if version in self.versions:
            return True
        try:
            have = Version(version)
        except InvalidVersion:
            return False
        for events in self.ranges:
            affected = False
            for kind, bound in events:
                at = Version("0") if bound == "0" else Version(bound)
                if kind == "introduced" and have >= at:
                    affected = True
                elif (kind == "fixed" and have >= at) or (kind == "last_affected" and have > at):
                    affected = False
            if affected:
                return True
        return False


@dataclass(frozen=True)
class SoftwareRules:
    """What a layout (``[software]``) or a stage (``[stages.software]``) requires."""

    required: tuple[Requirement, ...] = ()
    forbidden: tuple[Requirement, ...] = ()
    advisories: tuple[Advisory, ...] = ()
    min_severity: str = "HIGH"
    allowed_images: tuple[str, ...] | None = None
    allowed_executables: tuple[str, ...] | None = None
    min_slsa_level: int | None = None

    @property
    def needs_packages(self) -> bool:
        return bool(self.required or self.forbidden or self.advisories)

    @property
    def any(self) -> bool:
        return (
            self.needs_packages
            or self.allowed_images is not None
            or self.allowed_executables is not None
        )

    def merge(self, stage: SoftwareRules) -> SoftwareRules:
        """The pipeline's rules with a stage's: lists add up, a stage's allow-sets replace."""
        return SoftwareRules(
            self.required + stage.required,
            self.forbidden + stage.forbidden,
            self.advisories + stage.advisories,
            stage.min_severity if stage.advisories else self.min_severity,
            stage.allowed_images if stage.allowed_images is not None else self.allowed_images,
            stage.allowed_executables
            if stage.allowed_executables is not None
            else self.allowed_executables,
            max(
                (x for x in (self.min_slsa_level, stage.min_slsa_level) if x is not None),
                default=None,
            ),
        )


@dataclass(frozen=True)
class Violation:
    """One broken rule: its reason, the offending package (or digest), and why."""

    reason: str
    package: str | None
    version: str | None
    detail: str

    def to_json(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "package": self.package,
            "version": self.version,
            "detail": self.detail,
        }


def software_rules(reader: TomlReader, table: Mapping[str, Any], where: str) -> SoftwareRules:
    """Read a ``[software]`` table; every malformed entry is the reader's error."""
    reader.only_keys(table, where, SOFTWARE_KEYS)
    required = _requirements(reader, table, where, "required_packages")
    forbidden = _requirements(reader, table, where, "forbidden_packages")
    severity = (reader.string(table, where, "osv_min_severity") or "HIGH").upper()
    severity = _SEVERITY_ALIASES.get(severity, severity)
    if severity not in SEVERITIES:
        reader.fail(f"{where}.osv_min_severity must be one of {', '.join(SEVERITIES)}")
    advisories: list[Advisory] = []
    for name in reader.string_list(table, where, "osv") or ():
        advisories += load_osv(reader.relative(name), reader)
    level = None
    if "min_slsa_level" in table:
        level = reader.integer(table, where, "min_slsa_level", 1, minimum=1, maximum=3)
    return SoftwareRules(
        required,
        forbidden,
        tuple(advisories),
        severity,
        _digests(reader, table, where, "allowed_images"),
        _digests(reader, table, where, "allowed_executables"),
        level,
    )


def _requirements(
    reader: TomlReader, table: Mapping[str, Any], where: str, key: str
) -> tuple[Requirement, ...]:
    out = []
    for text in reader.string_list(table, where, key) or ():
        try:
            requirement = Requirement(text)
        except InvalidRequirement as err:
            reader.fail(f"{where}.{key}: {text!r} is not a PEP 508 requirement: {err}")
        if requirement.url or requirement.marker or requirement.extras:
            reader.fail(f"{where}.{key}: {text!r}: only a name and version specifiers are allowed")
        out.append(requirement)
    return tuple(out)


def _digests(
    reader: TomlReader, table: Mapping[str, Any], where: str, key: str
) -> tuple[str, ...] | None:
    values = reader.string_list(table, where, key, allow_empty=False)
    if values is None:
        return None
    out = []
    for value in values:
        match = _DIGEST.fullmatch(value)
        if match is None:
            reader.fail(f"{where}.{key}: {value!r} is not sha256:<64 lowercase hex digits>")
        out.append(match.group(1))
    return tuple(out)


def load_osv(path: Path, reader: TomlReader) -> list[Advisory]:
    """The PyPI advisories of an OSV file (one entry, or a JSON array of entries)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_OSV_BYTES + 1)
    except OSError as err:
        reader.fail(f"OSV file {path}: {err.strerror or err}")
    if len(data) > MAX_OSV_BYTES:
        reader.fail(f"OSV file {path} is larger than {MAX_OSV_BYTES} bytes")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as err:
        reader.fail(f"OSV file {path} is not JSON: {err}")
    entries = document if isinstance(document, list) else [document]
    advisories: list[Advisory] = []
    for index, entry in enumerate(entries):
        try:
            advisories += _osv_entry(entry)
        except (KeyError, TypeError, ValueError, InvalidVersion) as err:
            reader.fail(f"OSV file {path}, entry {index}: not in the OSV schema ({err!r})")
    return advisories


def _osv_entry(entry: Any) -> list[Advisory]:
    if not isinstance(entry, dict) or not isinstance(entry["id"], str):
        raise TypeError("an entry is an object with a string id")
    top = _severity(entry.get("database_specific"))
    out = []
    for affected in entry.get("affected", []):
        package = affected["package"]
        if package["ecosystem"] != "PyPI":
            continue
        ranges = []
        for spans in affected.get("ranges", []):
            if spans["type"] not in ("ECOSYSTEM", "SEMVER"):
                continue
            events = []
            for event in spans["events"]:
                ((kind, bound),) = event.items()
                if kind not in ("introduced", "fixed", "last_affected", "limit"):
                    raise ValueError(f"unknown range event {kind!r}")
                if kind != "limit":
                    if bound != "0":
                        Version(bound)  # refuse a bound we could not compare
                    events.append((kind, str(bound)))
            ranges.append(tuple(events))
        versions = frozenset(str(Version(v)) for v in affected.get("versions", []))
        severity = _severity(affected.get("database_specific")) or top or "CRITICAL"
        out.append(
            Advisory(
                entry["id"],
                canonicalize_name(package["name"]),
                severity,
                versions,
                tuple(ranges),
            )
        )
    return out


def _severity(specific: Any) -> str | None:
    if not isinstance(specific, dict) or not isinstance(specific.get("severity"), str):
        return None
    value = specific["severity"].upper()
    value = _SEVERITY_ALIASES.get(value, value)
    return value if value in SEVERITIES else None


def violations(provenance: StageProvenance, rules: SoftwareRules) -> list[Violation]:
    """Every rule of ``rules`` the stage's measured software stack breaks (empty: none)."""
    stack = provenance.software_stack
    if stack is None:
        return [_missing("the provenance carries no softwareStack (an older agent?)")]
    found: list[Violation] = []
    if rules.allowed_executables is not None:
        exe = stack.executable_sha256
        if exe is None:
            found.append(_missing(f"executable unknown: {stack.executable.unknown}"))
        elif exe not in rules.allowed_executables:
            path = stack.executable.value.get("path") if stack.executable.value else None
            found.append(
                Violation(
                    "executable_not_allowed",
                    None,
                    None,
                    f"the stage ran {path} (sha256:{exe}), not in allowed_executables",
                )
            )
    if rules.allowed_images is not None:
        image = stack.image_sha256
        if image is None:
            found.append(_missing(f"image unknown: {stack.image.unknown}"))
        elif image not in rules.allowed_images:
            found.append(
                Violation(
                    "image_not_allowed",
                    None,
                    None,
                    f"the deployment claims image sha256:{image}, not in allowed_images",
                )
            )
    if rules.needs_packages:
        try:
            dists = provenance.distributions()
        except EvidenceError as err:  # already refused by the parser; kept fail-closed
            dists = None
            found.append(_missing(f"the Python distributions are unreadable: {err}"))
        if dists is None:
            why = stack.python.unknown or "the provenance carries no list (agent restarted?)"
            found.append(_missing(f"Python distributions unknown: {why}"))
        else:
            found += package_violations({d.name: d.version for d in dists}, rules)
    return found


def package_violations(installed: Mapping[str, str], rules: SoftwareRules) -> list[Violation]:
    """The package rules ``installed`` (PEP 503 name -> version) breaks."""
    found: list[Violation] = []
    for requirement in rules.required:
        name = canonicalize_name(requirement.name)
        version = installed.get(name)
        if version is None:
            found.append(
                Violation("package_missing", name, None, f"{requirement} is required, absent")
            )
        elif not requirement.specifier.contains(version, prereleases=True):
            found.append(
                Violation(
                    "package_version_not_allowed",
                    name,
                    version,
                    f"{name} {version} does not satisfy {requirement}",
                )
            )
    for rule in rules.forbidden:
        name = canonicalize_name(rule.name)
        version = installed.get(name)
        if version is None:
            continue
        if not rule.specifier:
            found.append(Violation("package_forbidden", name, version, f"{name} is forbidden"))
        elif rule.specifier.contains(version, prereleases=True):
            found.append(
                Violation(
                    "package_version_not_allowed",
                    name,
                    version,
                    f"{name} {version} is a denied version ({rule})",
                )
            )
    threshold = SEVERITIES.index(rules.min_severity)
    for advisory in rules.advisories:
        version = installed.get(advisory.package)
        if version is None or SEVERITIES.index(advisory.severity) < threshold:
            continue
        if advisory.affects(version):
            found.append(
                Violation(
                    "package_vulnerable",
                    advisory.package,
                    version,
                    f"{advisory.package} {version} is affected by {advisory.id} "
                    f"({advisory.severity})",
                )
            )
    return found


def _missing(detail: str) -> Violation:
    return Violation("software_stack_missing", None, None, detail)


def slsa_build_level(provenance: StageProvenance, *, signed: bool, affirmed: bool) -> int:
    """The SLSA Build level (v1.0) a stage's provenance meets; docs/lifecycle.md says why.

    L1: provenance exists. L2: it is signed by the build platform, here an agent key
    the TEE's evidence vouches for (``signed`` and ``affirmed``). L3: the platform is
    hardened: additionally the agent measured the process that ran the stage (its
    executable is known), which an agent outside the caller's reach only can.
    """
    if not (signed and affirmed):
        return 1
    stack = provenance.software_stack
    if stack is None or stack.executable_sha256 is None:
        return 2
    return 3


def first_reasons(found: Sequence[Violation]) -> Iterable[str]:
    """The distinct reasons of ``found``, in order."""
    return dict.fromkeys(v.reason for v in found)
