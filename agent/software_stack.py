"""Measure the software stack of the process that begins a stage, from /proc, never from it.

    measured = measure_software_stack(caller)          # caller from SO_PEERCRED (peercred.py)
    measured.stack.to_json()                           # the begin event's "softwareStack"
    measured.byproducts                                # (name, canonical JSON list) to sign once

    parse_cgroup("0::/system.slice/docker-3f2a...scope\\n")  # CgroupInfo(path, container_id)
    parse_dpkg_status(data)                            # [OsPackage("bash", "5.2.15-2"), ...]

From the caller's pid the agent reads: the SHA-256 of ``/proc/PID/exe``;
``/proc/PID/cmdline`` (bounded); ``/proc/PID/cgroup`` and the container id in
it; the Python distributions the interpreter puts on ``sys.path`` at start-up,
found the way the interpreter finds them (``pyvenv.cfg`` beside the program
its ``argv[0]`` names, the prefix of its executable, ``PYTHONPATH`` unless
``-E``/``-I``), plus every ``site-packages`` directory a shared object it has
mapped comes from, each read through ``/proc/PID/root`` so a container's files
are the ones measured; the dpkg (or rpm) database of that root; and the image
digest the deployment states in the caller's ``ATTESTD_IMAGE_DIGEST`` (a
claim, not a measurement). Nothing comes from the request: the client has no
field to lie in. Whatever cannot be read is ``{"unknown": why}``.
The pure parsers take bytes and paths so they are tested without /proc;
docs/lifecycle.md says what each claim proves and what a caller can still
fake.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path, PurePosixPath

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from attestd.evidence import Caller
from attestd.evidence.stack import (
    MAX_CMDLINE_BYTES,
    OS_PACKAGES,
    PYTHON_DISTRIBUTIONS,
    Claim,
    Distribution,
    OsPackage,
    SoftwareStack,
    content_sha256,
    list_content,
)

IMAGE_DIGEST_VARIABLE = "ATTESTD_IMAGE_DIGEST"
DPKG_STATUS = "var/lib/dpkg/status"
RPM_DATABASES = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")
MAX_DATABASE_BYTES = 256 << 20
MAX_DISTRIBUTIONS = 20_000
MAX_RECORD_BYTES = 64 << 20
_CHUNK = 1 << 20

# A container id in a cgroup path: docker-<id>.scope, cri-containerd-<id>.scope,
# crio-<id>.scope, libpod-<id>.scope, or a bare 64-hex path component (cgroup v1
# docker/<id>, kubepods/.../<id>).
_SCOPED_ID = re.compile(r"(?:docker|cri-containerd|crio|libpod|containerd)-([0-9a-f]{64})\.scope")
_BARE_ID = re.compile(r"[0-9a-f]{64}")
_IMAGE_DIGEST = re.compile(r"(?:sha256:)?([0-9a-f]{64})")
_PYTHON_EXE = re.compile(r"python[0-9.]*")
_PYVERSION = re.compile(r"version(?:_info)?\s*=\s*(\d+)\.(\d+)")


@dataclass(frozen=True)
class MeasuredStack:
    """The stack for the begin event, and the full lists the provenance carries once."""

    stack: SoftwareStack
    byproducts: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class CgroupInfo:
    """The caller's cgroup path (the unified one, else the first) and its container id."""

    path: str
    container_id: str | None


class StackParseError(ValueError):
    """Bytes from /proc or a package database that are not in the format they must be."""

    reason = "software_stack_malformed"


def parse_cgroup(text: str) -> CgroupInfo:
    """``/proc/PID/cgroup``: the v2 ``0::/path`` line if there is one, else the first v1 line."""
    entries: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[0].isdigit() or not parts[2].startswith("/"):
            raise StackParseError(f"cgroup line {number} is not hierarchy:controllers:/path")
        entries.append((parts[0], parts[2]))
    if not entries:
        raise StackParseError("the cgroup file is empty")
    unified = [path for hierarchy, path in entries if hierarchy == "0"]
    path = unified[0] if unified else entries[0][1]
    # The container id may be in any hierarchy's path (a v1 host lists several).
    for candidate in [path] + [p for _, p in entries]:
        found = container_id(candidate)
        if found is not None:
            return CgroupInfo(path, found)
    return CgroupInfo(path, None)


def container_id(cgroup_path: str) -> str | None:
    """The 64-hex container id a runtime put in ``cgroup_path``, deepest component first."""
    for component in reversed(cgroup_path.split("/")):
        scoped = _SCOPED_ID.fullmatch(component)
        if scoped:
            return scoped.group(1)
        if _BARE_ID.fullmatch(component):
            return component
    return None


def parse_cmdline(data: bytes, limit: int = MAX_CMDLINE_BYTES) -> tuple[list[str], bool]:
    """``/proc/PID/cmdline``: its arguments (undecodable bytes escaped), cut at ``limit`` bytes."""
    if data.endswith(b"\0"):
        data = data[:-1]
    raw = data.split(b"\0") if data else []
    argv: list[str] = []
    used = 0
    for arg in raw:
        text = arg.decode("utf-8", "backslashreplace")
        if used + len(text) > limit:
            return argv, True
        argv.append(text)
        used += len(text)
    return argv, False


def parse_environ(data: bytes) -> dict[str, str]:
    """``/proc/PID/environ`` (the environment the process started with)."""
    variables: dict[str, str] = {}
    for entry in data.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name:
            variables.setdefault(name.decode("utf-8", "replace"), value.decode("utf-8", "replace"))
    return variables


def parse_dpkg_status(data: bytes) -> list[OsPackage]:
    """The installed packages (``Status: install ok installed``) of a dpkg status file."""
    packages: list[OsPackage] = []
    for number, paragraph in enumerate(data.split(b"\n\n"), 1):
        if not paragraph.strip():
            continue
        fields: dict[bytes, bytes] = {}
        for line in paragraph.splitlines():
            if not line or line[:1] in (b" ", b"\t"):
                continue  # a continuation line of a multi-line field
            key, sep, value = line.partition(b":")
            if not sep:
                raise StackParseError(f"dpkg status paragraph {number}: a line without a colon")
            fields[key.strip()] = value.strip()
        if b"Package" not in fields:
            raise StackParseError(f"dpkg status paragraph {number} has no Package field")
        if fields.get(b"Status", b"").split()[-1:] != [b"installed"]:
            continue
        name = fields[b"Package"].decode("ascii", "replace")
        version = fields.get(b"Version", b"").decode("ascii", "replace")
        if not version:
            raise StackParseError(f"dpkg status: installed package {name!r} has no Version")
        arch = fields.get(b"Architecture", b"").decode("ascii", "replace")
        packages.append(OsPackage(f"{name}:{arch}" if arch and arch != "all" else name, version))
    return packages


def read_distribution(dist_info: Path) -> Distribution:
    """One ``*.dist-info`` directory: name and version from METADATA, digest of RECORD."""
    try:
        headers = BytesHeaderParser().parsebytes((dist_info / "METADATA").read_bytes())
        record = _sha256_file(dist_info / "RECORD", MAX_RECORD_BYTES)
    except OSError as err:
        raise StackParseError(f"{dist_info.name}: {err.strerror or err}") from None
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        raise StackParseError(f"{dist_info.name}: METADATA lacks Name or Version")
    try:
        normalized = str(Version(version))
    except InvalidVersion:
        raise StackParseError(
            f"{dist_info.name}: {version[:60]!r} is not a PEP 440 version"
        ) from None
    return Distribution(canonicalize_name(name), normalized, record)


def distributions(site_dirs: Iterable[Path]) -> list[Distribution]:
    """Every distribution in ``site_dirs``; the first of a name wins, as on ``sys.path``."""
    found: dict[str, Distribution] = {}
    for directory in site_dirs:
        try:
            entries = sorted(directory.glob("*.dist-info"))
        except OSError:
            continue
        for entry in entries:
            if len(found) >= MAX_DISTRIBUTIONS:
                raise StackParseError(f"more than {MAX_DISTRIBUTIONS} distributions")
            dist = read_distribution(entry)
            found.setdefault(dist.name, dist)
    return list(found.values())


def python_site_dirs(
    root: Path, exe: str, argv: list[str], cwd: str, environ: Mapping[str, str], maps: str
) -> list[str]:
    """The site directories (paths inside ``root``) the interpreter ``exe`` starts with.

    Mirrors CPython's start-up: ``PYTHONPATH`` first (unless ``-E``/``-I``),
    then the venv whose ``pyvenv.cfg`` sits beside or above the program
    ``argv[0]`` names, else the executable's own prefix; then the ``site-packages``
    of every shared object the process has mapped (what it actually loaded).
    """
    flags = {a for a in argv[1:] if a.startswith("-") and not a.startswith("--")}
    isolated = any(("E" in f or "I" in f) for f in flags if f[1:].isalpha())
    dirs: list[str] = []
    if not isolated:
        dirs += [p for p in environ.get("PYTHONPATH", "").split(":") if p.startswith("/")]
    program = argv[0] if argv else exe
    if "/" not in program:
        program = exe  # found on PATH: the kernel's resolved executable is the best we know
    program_path = PurePosixPath(cwd) / program
    version = _python_version(PurePosixPath(exe).name, PurePosixPath(program_path).name)
    prefixes: list[PurePosixPath] = []
    for venv in (program_path.parent, program_path.parent.parent):
        cfg = _inside(root, venv / "pyvenv.cfg")
        if cfg.is_file():
            prefixes.append(venv)
            include = _read_text(cfg, 65536)
            match = _PYVERSION.search(include)
            if version is None and match:
                version = f"{match.group(1)}.{match.group(2)}"
            if "include-system-site-packages = true" not in include.replace("\t", " ").lower():
                break
            prefixes.append(PurePosixPath(exe).parent.parent)
            break
    else:
        prefixes.append(PurePosixPath(exe).parent.parent)
    for prefix in prefixes:
        if version is not None:
            dirs.append(str(prefix / "lib" / f"python{version}" / "site-packages"))
            dirs.append(str(prefix / "local" / "lib" / f"python{version}" / "dist-packages"))
        dirs.append(str(prefix / "lib" / "python3" / "dist-packages"))
    for line in maps.splitlines():
        mapped = line.split(maxsplit=5)
        if len(mapped) == 6:
            site = _site_of(mapped[5])
            if site is not None:
                dirs.append(site)
    return [d for d in dict.fromkeys(dirs) if _inside(root, PurePosixPath(d)).is_dir()]


def _python_version(*names: str) -> str | None:
    for name in names:
        match = re.fullmatch(r"python(\d+\.\d+)", name)
        if match:
            return match.group(1)
    return None


def _site_of(path: str) -> str | None:
    parts = PurePosixPath(path).parts
    for index, part in enumerate(parts):
        if part in ("site-packages", "dist-packages"):
            return str(PurePosixPath(*parts[: index + 1]))
    return None


def _inside(root: Path, path: PurePosixPath) -> Path:
    """``path`` as the caller sees it, under its root (``/proc/PID/root``)."""
    return root / str(path).lstrip("/")


def _read_text(path: Path, limit: int) -> str:
    with path.open("rb") as handle:
        return handle.read(limit).decode("utf-8", "replace")


def _sha256_file(path: Path, limit: int) -> str:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise StackParseError(f"{path.name} is larger than {limit} bytes")
            digest.update(chunk)
    return digest.hexdigest()


def _why(err: OSError | StackParseError, what: str) -> str:
    if isinstance(err, PermissionError):
        return (
            f"{what}: permission denied (the agent may read another user's /proc/PID only with "
            "CAP_SYS_PTRACE; docs/lifecycle.md)"
        )
    if isinstance(err, FileNotFoundError | ProcessLookupError):
        return f"{what}: the caller's process is gone"
    if isinstance(err, StackParseError):
        return f"{what}: {err}"
    return f"{what}: {err.strerror or err}"


class _Process:
    """The caller's /proc directory, read once per claim."""

    def __init__(self, proc: Path, pid: int) -> None:
        self.dir = proc / str(pid)
        self.root = self.dir / "root"

    def start_time(self) -> str:
        # Field 22 of stat, after the parenthesised comm (which may hold spaces and ')').
        stat = (self.dir / "stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()[19]


def measure_software_stack(caller: Caller | None, *, proc: Path = Path("/proc")) -> MeasuredStack:
    """The software stack of ``caller``'s process; unknown claims say why, none is guessed."""
    if caller is None:
        return MeasuredStack(
            SoftwareStack.unknown("no caller: the call did not come over the agent's Unix socket")
        )
    if caller.pid <= 0:
        return MeasuredStack(
            SoftwareStack.unknown("the caller is outside the agent's pid namespace (pid 0)")
        )
    process = _Process(proc, caller.pid)
    try:
        started = process.start_time()
    except (OSError, ValueError, IndexError) as err:
        why = _why(err, "stat") if isinstance(err, OSError) else "stat is unreadable"
        return MeasuredStack(SoftwareStack.unknown(why))
    measured = _measure(process)
    try:
        same = process.start_time() == started
    except (OSError, ValueError, IndexError):
        same = False
    if not same:
        # The pid now names another process: nothing read may be attributed to the caller.
        return MeasuredStack(
            SoftwareStack.unknown("the caller exited or its pid was reused while measuring")
        )
    return measured


def _measure(process: _Process) -> MeasuredStack:
    byproducts: list[tuple[str, bytes]] = []
    exe_path: str | None = None
    try:
        exe_path = os.readlink(process.dir / "exe")
        executable = Claim.of(
            {
                "path": exe_path[:4096],
                "digest": {"sha256": _sha256_file(process.dir / "exe", 1 << 34)},
            }
        )
    except (OSError, StackParseError) as err:
        executable = Claim.missing(_why(err, "executable"))
    argv: list[str] = []
    try:
        argv, truncated = parse_cmdline((process.dir / "cmdline").read_bytes())
        cmdline = Claim.of({"argv": argv, "truncated": truncated})
    except OSError as err:
        cmdline = Claim.missing(_why(err, "cmdline"))
    try:
        info = parse_cgroup((process.dir / "cgroup").read_text("utf-8", "replace"))
        cgroup = Claim.of({"path": info.path[:4096], "containerId": info.container_id})
    except (OSError, StackParseError) as err:
        cgroup = Claim.missing(_why(err, "cgroup"))
    environ: dict[str, str] | None = None
    try:
        environ = parse_environ((process.dir / "environ").read_bytes())
    except OSError as err:
        environ_why = _why(err, "environ")
    python = _python(process, exe_path, argv, environ, byproducts)
    os_packages = _os_packages(process.root, byproducts)
    image = Claim.missing(environ_why) if environ is None else _image(environ)
    stack = SoftwareStack(executable, cmdline, cgroup, python, os_packages, image)
    return MeasuredStack(stack, tuple(byproducts))


def _python(
    process: _Process,
    exe: str | None,
    argv: list[str],
    environ: Mapping[str, str] | None,
    byproducts: list[tuple[str, bytes]],
) -> Claim:
    if exe is None:
        return Claim.missing("python: the executable is unknown")
    if not _PYTHON_EXE.fullmatch(PurePosixPath(exe).name):
        return Claim.missing(f"python: the caller's executable {exe[:200]!r} is not a Python")
    if environ is None:
        return Claim.missing("python: the caller's environment is unreadable")
    try:
        cwd = os.readlink(process.dir / "cwd")
        maps = _read_text(process.dir / "maps", 64 << 20)
        sites = python_site_dirs(process.root, exe, argv, cwd, environ, maps)
        dists = distributions(_inside(process.root, PurePosixPath(s)) for s in sites)
    except (OSError, StackParseError) as err:
        return Claim.missing(_why(err, "python"))
    content = list_content(dists)
    byproducts.append((PYTHON_DISTRIBUTIONS, content))
    return Claim.of(
        {
            "digest": {"sha256": content_sha256(content)},
            "count": len(dists),
            "sitePackages": [s[:4096] for s in sites[:64]],
        }
    )


def _os_packages(root: Path, byproducts: list[tuple[str, bytes]]) -> Claim:
    try:
        data = _read_limited(root / DPKG_STATUS)
    except FileNotFoundError:
        data = None
    except (OSError, StackParseError) as err:
        return Claim.missing(_why(err, "dpkg status"))
    if data is not None:
        try:
            packages = parse_dpkg_status(data)
        except StackParseError as err:
            return Claim.missing(_why(err, "dpkg status"))
        content = list_content(packages)
        byproducts.append((OS_PACKAGES, content))
        return Claim.of(
            {
                "format": "dpkg",
                "database": {"sha256": hashlib.sha256(data).hexdigest()},
                "digest": {"sha256": content_sha256(content)},
                "count": len(packages),
            }
        )
    for database in RPM_DATABASES:
        try:
            rpm = _sha256_file(root / database, MAX_DATABASE_BYTES)
        except FileNotFoundError:
            continue
        except (OSError, StackParseError) as err:
            return Claim.missing(_why(err, "rpm database"))
        # Listing needs an SQLite read of rpm's schema; the digest alone pins the database.
        empty = list_content([])
        return Claim.of(
            {
                "format": "rpm",
                "database": {"sha256": rpm},
                "digest": {"sha256": content_sha256(empty)},
                "count": 0,
            }
        )
    return Claim.missing("os packages: no dpkg status or rpm database in the caller's root")


def _read_limited(path: Path) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(MAX_DATABASE_BYTES + 1)
    if len(data) > MAX_DATABASE_BYTES:
        raise StackParseError(f"{path.name} is larger than {MAX_DATABASE_BYTES} bytes")
    return data


def _image(environ: Mapping[str, str]) -> Claim:
    value = environ.get(IMAGE_DIGEST_VARIABLE)
    if value is None:
        return Claim.missing(f"image: the deployment set no {IMAGE_DIGEST_VARIABLE}")
    match = _IMAGE_DIGEST.fullmatch(value.strip())
    if match is None:
        return Claim.missing(f"image: {IMAGE_DIGEST_VARIABLE} is not sha256:<64 hex digits>")
    return Claim.of({"digest": {"sha256": match.group(1)}, "claimedBy": "deployment"})
