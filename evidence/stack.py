"""The software stack of a stage: what the agent measured of the process that began it.

    stack = SoftwareStack(executable=Claim.of({"path": "/usr/bin/python3.12",
                                               "digest": {"sha256": "ab..."}}), ...)
    stack.to_json()                                   # the begin event's "softwareStack"
    SoftwareStack.from_json(obj, "$.softwareStack")   # strict; EvidenceFormatError if malformed
    dists = parse_distributions(content, "...")       # a python-distributions byproduct

The agent measures (``attestd.agent.software_stack``); the stage's begin
event carries the stack (digests only, so events stay small); the provenance
repeats it in ``buildDefinition.internalParameters.softwareStack`` and carries
the full lists once, as byproducts whose digests the stack names. Every claim
is either a value or ``{"unknown": why}``: the agent never guesses.
docs/lifecycle.md says what each claim proves and what it does not.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from attestd.evidence import _json
from attestd.evidence.canonical import canonical_json

PYTHON_DISTRIBUTIONS = "attestd:python-distributions"
"""The byproducts name of the caller's Python distributions (canonical JSON array)."""
OS_PACKAGES = "attestd:os-packages"
"""The byproducts name of the OS package list (canonical JSON array)."""

MAX_CMDLINE_BYTES = 4096
"""The caller's command line kept in the begin event, in bytes (arguments after it are cut)."""
MAX_PACKAGES = 100_000
MAX_PTH_FILES = 64
"""The ``.pth`` files a python claim lists; with more the agent records the claim unknown."""
MAX_WHY = 512

CLAIMS = ("executable", "cmdline", "cgroup", "python", "osPackages", "image")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTAINER_ID = re.compile(r"[0-9a-f]{12,128}")
_DIST_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")  # PEP 503-normalized
_PKG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_:~-]{0,255}")
_VERSION = re.compile(r"[A-Za-z0-9.+_:~!-]{1,128}")

_Reader = Callable[[Mapping[str, object], str], None]
"""Checks a known claim's members strictly (EvidenceFormatError with the path)."""


@dataclass(frozen=True)
class Claim:
    """One measured claim: its JSON value, or why the agent could not measure it."""

    value: Mapping[str, object] | None
    unknown: str | None = None

    @classmethod
    def of(cls, value: Mapping[str, object]) -> Claim:
        return cls(value, None)

    @classmethod
    def missing(cls, why: str) -> Claim:
        return cls(None, why[:MAX_WHY])

    @property
    def known(self) -> bool:
        return self.value is not None

    def to_json(self) -> dict[str, object]:
        return {"unknown": self.unknown or ""} if self.value is None else dict(self.value)


@dataclass(frozen=True)
class SoftwareStack:
    """What ran a stage: the caller's executable, command line, cgroup, Python, OS, image."""

    executable: Claim
    cmdline: Claim
    cgroup: Claim
    python: Claim
    os_packages: Claim
    image: Claim
    """A claim the deployment made (``ATTESTD_IMAGE_DIGEST``), not a measurement."""

    @classmethod
    def unknown(cls, why: str) -> SoftwareStack:
        """Every claim unknown for the same reason (no caller, the caller gone)."""
        claim = Claim.missing(why)
        return cls(claim, claim, claim, claim, claim, claim)

    def to_json(self) -> dict[str, object]:
        return {
            "executable": self.executable.to_json(),
            "cmdline": self.cmdline.to_json(),
            "cgroup": self.cgroup.to_json(),
            "python": self.python.to_json(),
            "osPackages": self.os_packages.to_json(),
            "image": self.image.to_json(),
        }

    @property
    def executable_sha256(self) -> str | None:
        return _digest(self.executable)

    @property
    def image_sha256(self) -> str | None:
        return _digest(self.image)

    @property
    def python_sha256(self) -> str | None:
        return _digest(self.python)

    @property
    def os_packages_sha256(self) -> str | None:
        return _digest(self.os_packages)

    @classmethod
    def from_json(cls, obj: object, path: str) -> SoftwareStack:
        members = _json.obj(obj, path, fields=CLAIMS)
        readers = {
            "executable": _executable,
            "cmdline": _cmdline,
            "cgroup": _cgroup,
            "python": _python,
            "osPackages": _os_packages,
            "image": _image,
        }
        claims = [_claim(members[k], f"{path}.{k}", readers[k]) for k in CLAIMS]
        return cls(*claims)


def _digest(claim: Claim) -> str | None:
    if claim.value is None:
        return None
    digest = claim.value.get("digest")
    return str(digest["sha256"]) if isinstance(digest, dict) else None


def _claim(value: object, path: str, reader: _Reader) -> Claim:
    members = _json.obj(value, path)
    if "unknown" in members:
        _json.obj(value, path, fields=("unknown",))
        return Claim.missing(_json.string(members["unknown"], f"{path}.unknown", max_len=MAX_WHY))
    reader(members, path)
    return Claim.of(dict(members))


def _sha256(value: object, path: str) -> str:
    digest = _json.obj(value, path, fields=("sha256",))
    return _json.string(digest["sha256"], f"{path}.sha256", max_len=64, pattern=_SHA256)


def _executable(members: Mapping[str, object], path: str) -> None:
    _json.obj(members, path, fields=("path", "digest"))
    _json.string(members["path"], f"{path}.path", min_len=1, max_len=4096)
    _sha256(members["digest"], f"{path}.digest")


def _cmdline(members: Mapping[str, object], path: str) -> None:
    _json.obj(members, path, fields=("argv", "truncated"))
    argv = _json.array(members["argv"], f"{path}.argv", max_len=MAX_CMDLINE_BYTES)
    size = 0
    for i, arg in enumerate(argv):
        size += len(_json.string(arg, f"{path}.argv[{i}]", max_len=MAX_CMDLINE_BYTES)) + 1
    if size > MAX_CMDLINE_BYTES + len(argv):
        _json.fail(f"{path}.argv", f"longer than {MAX_CMDLINE_BYTES} bytes")
    _json.boolean(members["truncated"], f"{path}.truncated")


def _cgroup(members: Mapping[str, object], path: str) -> None:
    _json.obj(members, path, fields=("path", "containerId"))
    _json.string(members["path"], f"{path}.path", min_len=1, max_len=4096)
    if members["containerId"] is not None:
        _json.string(
            members["containerId"], f"{path}.containerId", max_len=128, pattern=_CONTAINER_ID
        )


def _python(members: Mapping[str, object], path: str) -> None:
    # pthFiles and pthImports came later: a stack measured before them has neither.
    pth = "pthFiles" in members or "pthImports" in members
    _json.obj(members, path, fields=_PYTHON_FIELDS + (_PTH_FIELDS if pth else ()))
    _sha256(members["digest"], f"{path}.digest")
    _json.integer(members["count"], f"{path}.count", maximum=MAX_PACKAGES)
    dirs = _json.array(members["sitePackages"], f"{path}.sitePackages", max_len=64)
    for i, entry in enumerate(dirs):
        _json.string(entry, f"{path}.sitePackages[{i}]", min_len=1, max_len=4096)
    if pth:
        files = _json.array(members["pthFiles"], f"{path}.pthFiles", max_len=MAX_PTH_FILES)
        for i, entry in enumerate(files):
            where = f"{path}.pthFiles[{i}]"
            pth_file = _json.obj(entry, where, fields=("path", "digest"))
            _json.string(pth_file["path"], f"{where}.path", min_len=1, max_len=4096)
            _sha256(pth_file["digest"], f"{where}.digest")
        _json.boolean(members["pthImports"], f"{path}.pthImports")


_PYTHON_FIELDS = ("digest", "count", "sitePackages")
_PTH_FIELDS = ("pthFiles", "pthImports")


def _os_packages(members: Mapping[str, object], path: str) -> None:
    _json.obj(members, path, fields=("format", "database", "digest", "count"))
    if members["format"] not in ("dpkg", "rpm"):
        _json.fail(f"{path}.format", 'expected "dpkg" or "rpm"')
    _sha256(members["database"], f"{path}.database")
    _sha256(members["digest"], f"{path}.digest")
    _json.integer(members["count"], f"{path}.count", maximum=MAX_PACKAGES)


def _image(members: Mapping[str, object], path: str) -> None:
    _json.obj(members, path, fields=("digest", "claimedBy"))
    _sha256(members["digest"], f"{path}.digest")
    if members["claimedBy"] != "deployment":
        _json.fail(f"{path}.claimedBy", 'expected "deployment": the image digest is a claim')


@dataclass(frozen=True)
class Distribution:
    """A Python distribution the caller could import: PEP 503 name, version, RECORD digest."""

    name: str
    version: str
    record_sha256: str

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "record": {"sha256": self.record_sha256},
        }


@dataclass(frozen=True)
class OsPackage:
    """An installed OS package: its name and version as the package database states them."""

    name: str
    version: str

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version}


def list_content(items: list[Distribution] | list[OsPackage]) -> bytes:
    """A byproduct's content: canonical JSON of the items, sorted by name then version."""
    ordered: list[Distribution | OsPackage] = sorted(items, key=lambda d: (d.name, d.version))
    return canonical_json([d.to_json() for d in ordered])


def content_sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def parse_distributions(content: bytes, path: str) -> tuple[Distribution, ...]:
    """A ``python-distributions`` byproduct's content, strictly."""
    raw = _json.array(
        _json.loads(content, what="python distributions", max_bytes=64 << 20),
        path,
        max_len=MAX_PACKAGES,
    )
    out = []
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        members = _json.obj(item, where, fields=("name", "version", "record"))
        name = _json.string(members["name"], f"{where}.name", max_len=256, pattern=_DIST_NAME)
        version = _json.string(
            members["version"], f"{where}.version", max_len=128, pattern=_VERSION
        )
        out.append(Distribution(name, version, _sha256(members["record"], f"{where}.record")))
    return tuple(out)


def parse_os_packages(content: bytes, path: str) -> tuple[OsPackage, ...]:
    """An ``os-packages`` byproduct's content, strictly."""
    raw = _json.array(
        _json.loads(content, what="OS packages", max_bytes=64 << 20), path, max_len=MAX_PACKAGES
    )
    out = []
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        members = _json.obj(item, where, fields=("name", "version"))
        name = _json.string(members["name"], f"{where}.name", max_len=256, pattern=_PKG_NAME)
        version = _json.string(
            members["version"], f"{where}.version", max_len=128, pattern=_VERSION
        )
        out.append(OsPackage(name, version))
    return tuple(out)
