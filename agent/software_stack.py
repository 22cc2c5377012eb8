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
its ``argv[0]`` names, the prefix of its executable or ``PYTHONHOME``,
``PYTHONPATH`` unless ``-E``/``-I``, the user site directory when site.py
enables it, the directories ``.pth`` files name; the ``.pth`` files' digests
and whether any has an ``import`` line, which runs at start-up and is not
followed), plus every ``site-packages`` directory a shared object it has
mapped comes from, each read through ``/proc/PID/root`` with symbolic links
resolved inside it, so a container's files are the ones measured; the dpkg
(or rpm) database of that root; and the image
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
import posixpath
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path, PurePosixPath

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from attestd.evidence import Caller
from attestd.evidence.stack import (
    MAX_CMDLINE_BYTES,
    MAX_PTH_FILES,
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
MAX_PTH_BYTES = 1 << 20
MAX_SITE_DIRS = 1024
MAX_SYMLINKS = 40
_CHUNK = 1 << 20

# A container id in a cgroup path: docker-<id>.scope, cri-containerd-<id>.scope,
# crio-<id>.scope, libpod-<id>.scope, or a bare 64-hex path component (cgroup v1
# docker/<id>, kubepods/.../<id>).
_SCOPED_ID = re.compile(r"(?:docker|cri-containerd|crio|libpod|containerd)-([0-9a-f]{64})\.scope")
_BARE_ID = re.compile(r"[0-9a-f]{64}")
_IMAGE_DIGEST = re.compile(r"(?:sha256:)?([0-9a-f]{64})")
_PYTHON_EXE = re.compile(r"python[0-9.]*")
_PYVERSION = re.compile(r"(\d+)\.(\d+)(?:\.\S*)?")


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


def distributions(root: Path, site_dirs: Iterable[str]) -> list[Distribution]:
    """Every distribution in ``site_dirs`` (inside ``root``); the first of a name wins.

        distributions(Path("/proc/42/root"), ["/usr/lib/python3/dist-packages"])

    A directory the agent may not list raises: it is never taken as empty.
    """
    found: dict[str, Distribution] = {}
    for site in site_dirs:
        try:
            names = sorted(os.listdir(resolve_in_root(root, PurePosixPath(site))))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if not name.endswith(".dist-info"):
                continue
            if len(found) >= MAX_DISTRIBUTIONS:
                raise StackParseError(f"more than {MAX_DISTRIBUTIONS} distributions")
            entry = resolve_in_root(root, PurePosixPath(site) / name)
            dist = read_distribution(entry)
            found.setdefault(dist.name, dist)
    return list(found.values())


@dataclass(frozen=True)
class InterpreterOptions:
    """What CPython's own command-line options change about where it looks at start-up."""

    ignore_environment: bool
    """``-E`` or ``-I``: ``PYTHONPATH``, ``PYTHONHOME``, ``PYTHONNOUSERSITE`` are ignored."""
    no_user_site: bool
    """``-s`` or ``-I``: the user site directory is not added."""


@dataclass(frozen=True)
class PthFile:
    """A ``.pth`` file ``site`` processes at start-up: its path in the caller's root, its digest."""

    path: str
    sha256: str

    def to_json(self) -> dict[str, object]:
        return {"path": self.path[:4096], "digest": {"sha256": self.sha256}}


@dataclass(frozen=True)
class StartupPath:
    """Where the interpreter finds distributions at start-up, as ``site`` would set it up.

    ``sites`` are paths inside the caller's root, in ``sys.path`` order (then the
    site directories of mapped shared objects); ``pth_files`` every ``.pth``
    file processed; ``pth_imports`` whether any has an ``import`` line, code that
    runs at start-up and may change ``sys.path`` in ways no static reading follows.
    """

    sites: tuple[str, ...]
    pth_files: tuple[PthFile, ...] = ()
    pth_imports: bool = False


class EnvironmentNeeded(Exception):
    """The start-up path depends on the caller's environment, which the agent cannot read."""

    reason = "software_stack_environment_unreadable"


def parse_interpreter_options(argv: list[str]) -> InterpreterOptions:
    """CPython's options in ``argv`` (stopping where the script, ``-c`` or ``-m`` begins).

    parse_interpreter_options(["python3", "-Es", "train.py", "-I"])
    # InterpreterOptions(ignore_environment=True, no_user_site=True): "-I" is train.py's
    """
    letters: set[str] = set()
    index = 1
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg == "--" or not arg.startswith("-") or arg == "-":
            break  # the script (or stdin) begins: the rest is its arguments
        if arg.startswith("--"):
            if arg == "--check-hash-based-pycs":
                index += 1  # its value is the next argument
            continue
        done = False
        for position, letter in enumerate(arg[1:], 1):
            if letter in "cm":
                done = True  # the command or module; what follows is sys.argv
                break
            if letter in "WX":
                if position == len(arg) - 1:
                    index += 1  # "-W default": the value is the next argument
                break
            letters.add(letter)
        if done:
            break
    return InterpreterOptions(
        ignore_environment=bool(letters & {"E", "I"}), no_user_site=bool(letters & {"s", "I"})
    )


def parse_ids(status: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``/proc/PID/status``: the (real, effective, saved, fs) uids and gids."""
    ids: dict[str, tuple[int, ...]] = {}
    for line in status.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("Uid", "Gid"):
            fields = value.split()
            if len(fields) != 4 or not all(f.isdigit() for f in fields):
                raise StackParseError(f"status {key} is not four decimal ids")
            ids[key] = tuple(int(f) for f in fields)
    if "Uid" not in ids or "Gid" not in ids:
        raise StackParseError("status has no Uid or Gid line")
    return ids["Uid"], ids["Gid"]


def passwd_home(data: bytes, uid: int) -> str | None:
    """The home directory of ``uid`` in an ``/etc/passwd`` file, or None when it has no entry."""
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip() or line.startswith(b"#"):
            continue
        fields = line.split(b":")
        if len(fields) != 7 or not fields[2].isdigit():
            raise StackParseError(f"passwd line {number} is not seven colon-separated fields")
        if int(fields[2]) == uid:
            return fields[5].decode("utf-8", "surrogateescape")
    return None


def resolve_in_root(root: Path, path: PurePosixPath) -> Path:
    """``path`` (absolute, as the caller sees it) on this host, its symbolic links kept in ``root``.

        resolve_in_root(Path("/proc/42/root"), PurePosixPath("/usr/lib/python3"))

    The kernel resolves an absolute link met under ``/proc/PID/root`` against
    the agent's root, not the caller's, so a container could point the agent at
    the host's files; this walks each component itself, as a chroot would.
    A missing component ends the walk (the rest does not exist either); a
    component the agent may not read raises, so it is never taken as absent.
    """
    pending = list(reversed(path.parts[1:] if path.is_absolute() else path.parts))
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        try:
            mode = os.lstat(candidate).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return root.joinpath(*resolved, part, *reversed(pending))
        if not stat.S_ISLNK(mode):
            resolved.append(part)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise StackParseError(f"more than {MAX_SYMLINKS} symbolic links in {str(path)[:200]}")
        target = PurePosixPath(os.readlink(candidate))
        if target.is_absolute():
            resolved = []
            pending.extend(reversed(target.parts[1:]))
        else:
            pending.extend(reversed(target.parts))
    return root.joinpath(*resolved)


def _is_dir(root: Path, path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(resolve_in_root(root, PurePosixPath(path))).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def python_site_dirs(
    root: Path,
    exe: str,
    argv: list[str],
    cwd: str,
    environ: Mapping[str, str] | None,
    maps: str,
    status: str,
) -> StartupPath:
    """The site directories (paths inside ``root``) the interpreter ``exe`` starts with.

        python_site_dirs(Path("/proc/42/root"), "/usr/bin/python3.12", argv, cwd, env, maps,
                         status).sites

    Mirrors CPython's start-up (getpath and ``site``): ``PYTHONPATH`` first
    (unless ``-E``/``-I``); the user site directory when ``site`` would enable
    it; the venv whose ``pyvenv.cfg`` sits beside or above the program
    ``argv[0]`` names, and the base prefix (``PYTHONHOME`` unless ``-E``/``-I``,
    else the executable's) unless the venv excludes it; after each site
    directory, the directories its ``.pth`` files name; last the
    ``site-packages`` of every shared object the process has mapped (what it
    actually loaded). ``environ`` is None when it is unreadable: that is enough
    under ``-I`` (or ``-E -s``), and raises ``EnvironmentNeeded`` otherwise.
    """
    options = parse_interpreter_options(argv)
    if environ is None and not (options.ignore_environment and options.no_user_site):
        needs = "PYTHONPATH, PYTHONHOME" if not options.ignore_environment else "PYTHONUSERBASE"
        raise EnvironmentNeeded(
            f"python: the caller's environment ({needs}, HOME) is unreadable; "
            "a caller started with -I (or -E -s) is measured without it"
        )
    # -E and -I hide these from CPython; site.py still reads PYTHONUSERBASE and HOME.
    startup: Mapping[str, str] = {} if options.ignore_environment or environ is None else environ
    dirs: list[str] = []
    if "PYTHONPATH" in startup:
        # getpath makes every entry absolute against the working directory ("" is the cwd).
        dirs += [
            posixpath.normpath(posixpath.join(cwd, p)) for p in startup["PYTHONPATH"].split(":")
        ]
    program = argv[0] if argv else exe
    if "/" not in program:
        program = exe  # found on PATH: the kernel's resolved executable is the best we know
    program_path = PurePosixPath(cwd) / program
    version = _python_version(PurePosixPath(exe).name, PurePosixPath(program_path).name)
    venv, config = _venv(root, program_path)
    stated = config.get("version") or config.get("version_info")
    if version is None and stated:
        match = _PYVERSION.fullmatch(stated)
        version = f"{match.group(1)}.{match.group(2)}" if match else None
    system_site = venv is None or config.get("include-system-site-packages", "").lower() == "true"
    prefixes: list[PurePosixPath] = [] if venv is None else [venv]
    if system_site:
        home = startup.get("PYTHONHOME", "")
        if home:
            prefixes += [PurePosixPath(p) for p in home.split(":", 1)]
        else:
            prefixes.append(PurePosixPath(exe).parent.parent)
            if config.get("home", "").startswith("/"):
                prefixes.append(PurePosixPath(config["home"]).parent)
    site_dirs: list[str] = []
    if _user_site_enabled(options, startup, status, system_site) and version is not None:
        site_dirs.append(_user_site(root, cwd, environ or {}, status, version))
    libdirs = dict.fromkeys(["lib", "lib64", startup.get("PYTHONPLATLIBDIR") or "lib"])
    for prefix in dict.fromkeys(prefixes):
        if version is not None:
            site_dirs += [str(prefix / d / f"python{version}" / "site-packages") for d in libdirs]
            site_dirs.append(str(prefix / "local" / "lib" / f"python{version}" / "dist-packages"))
        site_dirs.append(str(prefix / "lib" / "python3" / "dist-packages"))
        if version is not None:
            site_dirs.append(str(prefix / "lib" / f"python{version}" / "dist-packages"))
    pth_files: list[PthFile] = []
    imports = False
    for site in dict.fromkeys(site_dirs):
        if not _is_dir(root, site):
            continue
        dirs.append(site)
        added, files, has_import = _pth(root, site)
        pth_files += files
        imports |= has_import
        dirs += added
        if len(pth_files) > MAX_PTH_FILES:
            raise StackParseError(f"more than {MAX_PTH_FILES} .pth files")
        if len(dirs) > MAX_SITE_DIRS:
            raise StackParseError(f"more than {MAX_SITE_DIRS} site directories")
    for line in maps.splitlines():
        mapped = line.split(maxsplit=5)
        if len(mapped) == 6:
            loaded = _site_of(mapped[5])
            if loaded is not None:
                dirs.append(loaded)
    unique = list(dict.fromkeys(dirs))
    if len(unique) > MAX_SITE_DIRS:
        raise StackParseError(f"more than {MAX_SITE_DIRS} site directories")
    sites = tuple(d for d in unique if _is_dir(root, d))
    return StartupPath(sites, tuple(pth_files), imports)


def _venv(root: Path, program: PurePosixPath) -> tuple[PurePosixPath | None, dict[str, str]]:
    """The venv of ``program`` and its ``pyvenv.cfg``, keys lowered, read as site.py reads it."""
    for venv in (program.parent, program.parent.parent):
        cfg = resolve_in_root(root, venv / "pyvenv.cfg")
        if cfg.is_file():
            config: dict[str, str] = {}
            for line in _read_text(cfg, 65536).splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    config[key.strip().lower()] = value.strip()
            return venv, config
    return None, {}


def _user_site_enabled(
    options: InterpreterOptions, startup: Mapping[str, str], status: str, system_site: bool
) -> bool:
    """site.py's ENABLE_USER_SITE: not -s/-I/PYTHONNOUSERSITE, ids not set-id, no closed venv."""
    if options.no_user_site or startup.get("PYTHONNOUSERSITE") or not system_site:
        return False
    uids, gids = parse_ids(status)
    return uids[0] == uids[1] and gids[0] == gids[1]


def _user_site(root: Path, cwd: str, environ: Mapping[str, str], status: str, version: str) -> str:
    """site.py's USER_SITE: PYTHONUSERBASE, else ~/.local with HOME, else the passwd home."""
    base = environ.get("PYTHONUSERBASE", "")
    if not base:
        home = environ.get("HOME")
        if home is None:
            uid = parse_ids(status)[0][0]
            try:
                data = _read_limited(resolve_in_root(root, PurePosixPath("/etc/passwd")))
            except FileNotFoundError:
                data = b""
            home = passwd_home(data, uid)
            if home is None:
                raise StackParseError(
                    f"the caller has no HOME and uid {uid} no entry in its root's /etc/passwd "
                    "(other NSS sources are not read); start it with -s or -I"
                )
        base = home.rstrip("/") + "/.local"
    return posixpath.normpath(posixpath.join(cwd, base, "lib", f"python{version}", "site-packages"))


def _pth(root: Path, site: str) -> tuple[list[str], list[PthFile], bool]:
    """The directories ``site``'s ``.pth`` files add, the files, and whether any has an import."""
    directory = resolve_in_root(root, PurePosixPath(site))
    names = sorted(n for n in os.listdir(directory) if n.endswith(".pth"))
    if len(names) > MAX_PTH_FILES:
        raise StackParseError(f"more than {MAX_PTH_FILES} .pth files in {site[:200]}")
    added: list[str] = []
    files: list[PthFile] = []
    imports = False
    for name in names:
        path = posixpath.join(site, name)
        try:
            with resolve_in_root(root, PurePosixPath(path)).open("rb") as handle:
                data = handle.read(MAX_PTH_BYTES + 1)
        except (FileNotFoundError, IsADirectoryError):
            continue  # site.py skips what it cannot open as a file
        if len(data) > MAX_PTH_BYTES:
            raise StackParseError(f"{name[:200]} is larger than {MAX_PTH_BYTES} bytes")
        files.append(PthFile(path, hashlib.sha256(data).hexdigest()))
        text = data.decode("utf-8-sig", "surrogateescape")
        # CPython 3.13 splits with str.splitlines, earlier ones on universal newlines.
        lines = dict.fromkeys([*re.split(r"\r\n|\r|\n", text), *text.splitlines()])
        for line in lines:
            if line.startswith("#") or not line.strip():
                continue
            if line.startswith(("import ", "import\t")):
                imports = True  # site.py executes it: recorded, never followed
                continue
            candidate = posixpath.normpath(posixpath.join(site, line.rstrip()))
            if _is_dir(root, candidate):
                added.append(candidate)
    return added, files, imports


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


def _absent(pid: int) -> str:
    """Why ``/proc/PID`` is missing: the process exited, or this /proc does not show it."""
    try:
        os.kill(pid, 0)  # signal 0 sends nothing: it asks the kernel whether the pid exists
    except ProcessLookupError:
        return "the caller's process is gone"
    except PermissionError:
        pass  # it exists, under another uid
    return (
        "the caller's process is not visible to the agent (ProtectProc=invisible or hidepid "
        "hides another uid's /proc/PID, or /proc is another pid namespace's; docs/lifecycle.md)"
    )


class _Process:
    """The caller's /proc directory, read once per claim."""

    def __init__(self, proc: Path, pid: int) -> None:
        self.dir = proc / str(pid)
        self.root = self.dir / "root"

    def start_time(self) -> str:
        # Field 22 of stat, after the parenthesised comm (which may hold spaces and ')').
        line = (self.dir / "stat").read_text()
        return line[line.rindex(")") + 2 :].split()[19]


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
    except FileNotFoundError:
        return MeasuredStack(SoftwareStack.unknown(_absent(caller.pid)))
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
    try:
        cwd = os.readlink(process.dir / "cwd")
        maps = _read_text(process.dir / "maps", 64 << 20)
        status = _read_text(process.dir / "status", 1 << 16)
        startup = python_site_dirs(process.root, exe, argv, cwd, environ, maps, status)
        dists = distributions(process.root, startup.sites)
    except EnvironmentNeeded as err:
        return Claim.missing(str(err))
    except (OSError, StackParseError) as err:
        return Claim.missing(_why(err, "python"))
    content = list_content(dists)
    byproducts.append((PYTHON_DISTRIBUTIONS, content))
    return Claim.of(
        {
            "digest": {"sha256": content_sha256(content)},
            "count": len(dists),
            "sitePackages": [s[:4096] for s in startup.sites[:64]],
            "pthFiles": [f.to_json() for f in startup.pth_files],
            "pthImports": startup.pth_imports,
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
