"""The software stack the agent measures of its caller: the parsers, and /proc for real."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attestd.agent.software_stack import (
    StackParseError,
    measure_software_stack,
    parse_cgroup,
    parse_cmdline,
    parse_dpkg_status,
    parse_interpreter_options,
)
from attestd.evidence import Caller, EvidenceFormatError
from attestd.evidence.stack import PYTHON_DISTRIBUTIONS, SoftwareStack, parse_distributions

ID = "3f2a" * 16


@pytest.mark.parametrize(
    ("text", "path", "container"),
    [
        (f"0::/system.slice/docker-{ID}.scope\n", f"/system.slice/docker-{ID}.scope", ID),
        (
            f"0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-{ID}.scope\n",
            f"/kubepods.slice/kubepods-burstable.slice/cri-containerd-{ID}.scope",
            ID,
        ),
        (f"0::/machine.slice/crio-{ID}.scope\n", f"/machine.slice/crio-{ID}.scope", ID),
        (
            f"12:memory:/kubepods/besteffort/pod1/{ID}\n1:cpu:/\n",
            f"/kubepods/besteffort/pod1/{ID}",
            ID,
        ),
        (
            "0::/user.slice/user-1000.slice/session-2.scope\n",
            "/user.slice/user-1000.slice/session-2.scope",
            None,
        ),
        ("4:memory:/x\n0::/\n", "/", None),
    ],
)
def test_cgroup_formats_give_the_container_id(text: str, path: str, container: str | None) -> None:
    info = parse_cgroup(text)
    assert (info.path, info.container_id) == (path, container)


@pytest.mark.parametrize("text", ["", "garbage\n", "x::/a\n", "0::relative\n"])
def test_a_malformed_cgroup_file_is_refused(text: str) -> None:
    with pytest.raises(StackParseError):
        parse_cgroup(text)


def test_the_command_line_is_bounded() -> None:
    assert parse_cmdline(b"python\0train.py\0") == (["python", "train.py"], False)
    argv, cut = parse_cmdline(b"a\0" + b"b" * 5000 + b"\0", limit=100)
    assert (argv, cut) == (["a"], True)


def test_dpkg_status_lists_installed_packages_only() -> None:
    data = (
        b"Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2\n"
        b"Description: x\n more\n\n"
        b"Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
        b"Package: tzdata\nStatus: install ok installed\nArchitecture: all\nVersion: 2024a\n"
    )
    assert [(p.name, p.version) for p in parse_dpkg_status(data)] == [
        ("bash:amd64", "5.2"),
        ("tzdata", "2024a"),
    ]
    with pytest.raises(StackParseError):
        parse_dpkg_status(b"Version: 1\nStatus: install ok installed\n")


def test_no_caller_and_pid_zero_are_unknown_never_guessed() -> None:
    assert measure_software_stack(None).stack.executable.unknown
    stack = measure_software_stack(Caller(0, 0, 0)).stack
    assert stack.executable_sha256 is None and "pid namespace" in str(stack.python.unknown)


def test_a_caller_that_is_gone_is_unknown() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    stack = measure_software_stack(Caller(child.pid, 0, 0)).stack
    assert stack.executable_sha256 is None
    assert stack.executable.unknown


def test_this_process_is_measured_from_proc() -> None:
    measured = measure_software_stack(Caller(os.getpid(), os.getuid(), os.getgid()))
    stack = measured.stack
    real = Path(os.readlink(f"/proc/{os.getpid()}/exe"))
    assert stack.executable_sha256 == hashlib.sha256(real.read_bytes()).hexdigest()
    names = {
        d.name for d in parse_distributions(dict(measured.byproducts)[PYTHON_DISTRIBUTIONS], "$")
    }
    assert {"packaging", "cryptography"} <= names
    assert SoftwareStack.from_json(stack.to_json(), "$") == stack  # round-trips strictly


def _fake_dist(site: Path, name: str, version: str) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text(f"{name}/__init__.py,,\n")


def _measure_child(
    tmp_path: Path, env: dict[str, str], *flags: str, executable: str = sys.executable
) -> set[str]:
    """Start a Python that waits, measure it, and return the distribution names found."""
    ready = tmp_path / "ready"
    ready.unlink(missing_ok=True)
    code = f"import pathlib,time; pathlib.Path({str(ready)!r}).touch(); time.sleep(30)"
    child = subprocess.Popen([executable, *flags, "-c", code], env={**os.environ, **env})
    try:
        while not ready.exists():
            pass
        measured = measure_software_stack(Caller(child.pid, os.getuid(), os.getgid()))
    finally:
        child.kill()
        child.wait()
    content = dict(measured.byproducts)[PYTHON_DISTRIBUTIONS]
    return {d.name for d in parse_distributions(content, "$")}


def test_a_caller_cannot_claim_an_environment_it_does_not_import_from(tmp_path: Path) -> None:
    # VIRTUAL_ENV is advice to shells, not to the interpreter: a caller that sets it to a
    # directory of harmless-looking distributions does not get them listed.
    fake = tmp_path / "fake" / "lib" / "python3" / "site-packages"
    _fake_dist(fake, "harmless", "1.0")
    assert "harmless" not in _measure_child(tmp_path, {"VIRTUAL_ENV": str(tmp_path / "fake")})


def test_pythonpath_is_measured_unless_the_interpreter_ignores_it(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    _fake_dist(extra, "smuggled", "2.0")
    assert "smuggled" in _measure_child(tmp_path, {"PYTHONPATH": str(extra)})
    assert "smuggled" not in _measure_child(tmp_path, {"PYTHONPATH": str(extra)}, "-I")


# A fake /proc/PID and the caller's root: start-up rules checked without a real process.
PID = 4242
VERSION = "3.11"
SYSTEM_SITE = f"/usr/lib/python{VERSION}/site-packages"


def _fake_caller(
    tmp_path: Path,
    argv: list[str],
    environ: dict[str, str] | None,
    *,
    ids: tuple[int, int] = (1000, 1000),
) -> tuple[Path, Path]:
    """A /proc tree for one python caller (environ None: unreadable); returns (proc, root)."""
    root = tmp_path / "root"
    (root / SYSTEM_SITE.lstrip("/")).mkdir(parents=True, exist_ok=True)
    directory = tmp_path / "proc" / str(PID)
    directory.mkdir(parents=True)
    (directory / "stat").write_text(f"{PID} (python3) S " + " ".join(["7"] * 40) + "\n")
    os.symlink(f"/usr/bin/python{VERSION}", directory / "exe")  # the caller's path, not ours
    (directory / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
    (directory / "cgroup").write_text("0::/\n")
    if environ is None:
        (directory / "environ").mkdir()  # unreadable as a file, as 0400 is to the agent
    else:
        (directory / "environ").write_bytes(
            b"".join(f"{k}={v}\0".encode() for k, v in environ.items())
        )
    os.symlink("/work", directory / "cwd")
    (directory / "maps").write_text("")
    uid, euid = ids
    (directory / "status").write_text(
        f"Name:\tpython3\nUid:\t{uid}\t{euid}\t{euid}\t{euid}\nGid:\t100\t100\t100\t100\n"
    )
    os.symlink(root, directory / "root")
    return tmp_path / "proc", root


def _python_of(proc: Path) -> tuple[dict[str, object] | None, set[str]]:
    measured = measure_software_stack(Caller(PID, 1000, 100), proc=proc)
    python = measured.stack.python
    assert SoftwareStack.from_json(measured.stack.to_json(), "$") == measured.stack
    if python.value is None:
        return None, set()
    content = dict(measured.byproducts)[PYTHON_DISTRIBUTIONS]
    return dict(python.value), {d.name for d in parse_distributions(content, "$")}


def _in(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


USER_SITE = f"/home/u/.local/lib/python{VERSION}/site-packages"
HOME = {"HOME": "/home/u"}


@pytest.mark.parametrize(
    ("argv", "environ", "ids", "venv", "found"),
    [
        (["python3", "train.py"], HOME, (1000, 1000), None, True),
        (["python3", "-E", "train.py"], HOME, (1000, 1000), None, True),  # site.py reads HOME
        (["python3", "-s", "train.py"], HOME, (1000, 1000), None, False),
        (["python3", "-Is", "train.py"], HOME, (1000, 1000), None, False),
        (["python3", "train.py", "-s"], HOME, (1000, 1000), None, True),  # train.py's "-s"
        (["python3", "train.py"], {**HOME, "PYTHONNOUSERSITE": "1"}, (1000, 1000), None, False),
        (["python3", "-E", "t.py"], {**HOME, "PYTHONNOUSERSITE": "1"}, (1000, 1000), None, True),
        (["python3", "train.py"], {**HOME, "PYTHONNOUSERSITE": ""}, (1000, 1000), None, True),
        (["python3", "train.py"], HOME, (1000, 0), None, False),  # set-uid: site.py refuses
        (["/venv/bin/python", "t.py"], HOME, (1000, 1000), "false", False),
        (["/venv/bin/python", "t.py"], HOME, (1000, 1000), "true", True),
        (["/venv/bin/python", "t.py"], HOME, (1000, 1000), "TRUE", True),
    ],
)
def test_the_user_site_is_measured_exactly_when_site_py_enables_it(
    tmp_path: Path,
    argv: list[str],
    environ: dict[str, str],
    ids: tuple[int, int],
    venv: str | None,
    found: bool,
) -> None:
    proc, root = _fake_caller(tmp_path, argv, environ, ids=ids)
    _fake_dist(_in(root, USER_SITE), "denied", "6.6.6")
    if venv is not None:
        _in(root, "/venv/bin").mkdir(parents=True)
        # site.py's own parsing: no spaces needed around "=", the value case-insensitive.
        _in(root, "/venv/pyvenv.cfg").write_text(
            f"home=/usr/bin\ninclude-system-site-packages={venv}\nversion={VERSION}.2\n"
        )
    python, names = _python_of(proc)
    assert python is not None
    assert ("denied" in names) is found
    assert (USER_SITE in python["sitePackages"]) is found  # type: ignore[operator]


def test_the_user_base_comes_from_pythonuserbase_else_home_else_the_callers_passwd(
    tmp_path: Path,
) -> None:
    proc, root = _fake_caller(tmp_path, ["python3", "t.py"], {"PYTHONUSERBASE": "/ub"})
    _fake_dist(_in(root, f"/ub/lib/python{VERSION}/site-packages"), "from-base", "1")
    _fake_dist(_in(root, f"/home/p/.local/lib/python{VERSION}/site-packages"), "from-pw", "1")
    assert _python_of(proc)[1] == {"from-base"}
    # No HOME: expanduser asks the passwd database, the caller's root's, for its uid.
    (proc / str(PID) / "environ").write_bytes(b"LANG=C\0")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\np:x:1000:100::/home/p:/bin/sh\n"
    )
    assert _python_of(proc)[1] == {"from-pw"}
    # No entry there: other NSS sources could name any home, so the claim is unknown.
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    python, _ = _python_of(proc)
    assert python is None
    why = measure_software_stack(Caller(PID, 1000, 100), proc=proc).stack.python.unknown
    assert "passwd" in str(why)


def test_pythonhome_replaces_the_executables_prefix_unless_the_environment_is_ignored(
    tmp_path: Path,
) -> None:
    proc, root = _fake_caller(tmp_path, ["python3", "-s", "t.py"], {"PYTHONHOME": "/opt/py"})
    _fake_dist(_in(root, f"/opt/py/lib/python{VERSION}/site-packages"), "denied", "1")
    _fake_dist(_in(root, SYSTEM_SITE), "system", "1")
    assert _python_of(proc)[1] == {"denied"}
    (proc / str(PID) / "cmdline").write_bytes(b"python3\0-Es\0t.py\0")
    assert _python_of(proc)[1] == {"system"}


def test_pth_path_lines_are_followed_and_import_lines_recorded(tmp_path: Path) -> None:
    proc, root = _fake_caller(tmp_path, ["python3", "t.py"], HOME)
    site = _in(root, SYSTEM_SITE)
    _fake_dist(_in(root, "/opt/extra"), "denied", "1")
    _fake_dist(_in(root, "/opt/relative"), "also-denied", "1")
    pth = b"# comment\n\n/opt/extra\n../../../../opt/relative\r\n/does/not/exist\n"
    (site / "paths.pth").write_bytes(pth)
    python, names = _python_of(proc)
    assert python is not None and names == {"denied", "also-denied"}
    assert python["pthImports"] is False
    assert python["pthFiles"] == [
        {"path": f"{SYSTEM_SITE}/paths.pth", "digest": {"sha256": hashlib.sha256(pth).hexdigest()}}
    ]
    assert python["sitePackages"] == [SYSTEM_SITE, "/opt/extra", "/opt/relative"]
    # A .pth in the user site counts too (site.py calls addsitedir on it).
    _in(root, USER_SITE).mkdir(parents=True)
    (_in(root, USER_SITE) / "hook.pth").write_text("import os; os.environ\n")
    python, _ = _python_of(proc)
    assert python is not None and python["pthImports"] is True
    assert len(python["pthFiles"]) == 2  # type: ignore[arg-type]


def test_a_symlink_cannot_lead_the_measurement_out_of_the_callers_root(tmp_path: Path) -> None:
    proc, root = _fake_caller(tmp_path, ["python3", "t.py"], HOME)
    host = tmp_path / "host-site"  # a directory of the agent's, not the caller's
    _fake_dist(host, "host-only", "1")
    _fake_dist(_in(root, str(host)), "in-root", "1")  # the same path inside the root
    (_in(root, "/opt")).mkdir()
    os.symlink(host, _in(root, "/opt/link"))
    (_in(root, SYSTEM_SITE) / "link.pth").write_text("/opt/link\n")
    assert _python_of(proc)[1] == {"in-root"}


@pytest.mark.parametrize(
    ("files", "size"), [(65, 10), (1, (1 << 20) + 1)], ids=["too-many", "too-large"]
)
def test_pth_files_are_bounded(tmp_path: Path, files: int, size: int) -> None:
    proc, root = _fake_caller(tmp_path, ["python3", "t.py"], HOME)
    for number in range(files):
        (_in(root, SYSTEM_SITE) / f"{number:03}.pth").write_bytes(b"#" * size)
    assert _python_of(proc)[0] is None


def test_under_isolated_mode_the_python_claim_needs_no_environment(tmp_path: Path) -> None:
    proc, root = _fake_caller(tmp_path, ["python3", "-I", "t.py"], None)
    _fake_dist(_in(root, SYSTEM_SITE), "system", "1")
    assert _python_of(proc)[1] == {"system"}
    (proc / str(PID) / "cmdline").write_bytes(b"python3\0-E\0-s\0t.py\0")
    assert _python_of(proc)[1] == {"system"}
    # -E alone still reads PYTHONUSERBASE and HOME; no -E needs PYTHONPATH: unknown, never guessed.
    for argv in (b"python3\0-E\0t.py\0", b"python3\0t.py\0-I\0"):
        (proc / str(PID) / "cmdline").write_bytes(argv)
        why = measure_software_stack(Caller(PID, 1000, 100), proc=proc).stack.python.unknown
        assert why is not None and "-I" in why


@pytest.mark.parametrize(
    ("argv", "ignore", "no_user"),
    [
        (["python3", "-I"], True, True),
        (["python3", "-bEs", "x.py"], True, True),
        (["python3", "-W", "-I", "x.py"], False, False),  # "-I" is -W's value
        (["python3", "-Wdefault", "-s", "-c", "code", "-E"], False, True),
        (["python3", "-sc", "code", "-E"], False, True),
        (["python3", "-m", "mod", "-I"], False, False),
        (["python3", "--", "-E"], False, False),
        (["python3", "-X", "dev", "-E", "x.py"], True, False),
    ],
)
def test_interpreter_options_end_where_the_program_begins(
    argv: list[str], ignore: bool, no_user: bool
) -> None:
    options = parse_interpreter_options(argv)
    assert (options.ignore_environment, options.no_user_site) == (ignore, no_user)


def test_a_process_proc_does_not_show_is_not_called_gone(tmp_path: Path) -> None:
    # This process exists, but the (empty) /proc given does not list it: ProtectProc=invisible.
    (tmp_path / "proc").mkdir()
    stack = measure_software_stack(Caller(os.getpid(), 0, 0), proc=tmp_path / "proc").stack
    assert "not visible to the agent" in str(stack.python.unknown)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    stack = measure_software_stack(Caller(child.pid, 0, 0), proc=tmp_path / "proc").stack
    assert stack.python.unknown == "the caller's process is gone"


def test_a_stack_measured_before_pth_claims_still_reads() -> None:
    old = {"digest": {"sha256": "0" * 64}, "count": 0, "sitePackages": []}
    stack = SoftwareStack.unknown("x").to_json()
    stack["python"] = old
    assert SoftwareStack.from_json(stack, "$").python.value == old
    stack["python"] = {**old, "pthImports": True}  # one without the other is malformed
    with pytest.raises(EvidenceFormatError):
        SoftwareStack.from_json(stack, "$")


def _base_python() -> str:
    """The interpreter outside any venv (a venv's closed config disables the user site)."""
    return str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}")


def test_a_real_caller_outside_a_venv_is_measured_with_its_user_site_and_pth(
    tmp_path: Path,
) -> None:
    base = tmp_path / "userbase"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    user_site = base / "lib" / f"python{version}" / "site-packages"
    _fake_dist(user_site, "user-denied", "1.0")
    _fake_dist(tmp_path / "pth-dir", "pth-denied", "1.0")
    (user_site / "extra.pth").write_text(f"{tmp_path / 'pth-dir'}\n")
    env = {"PYTHONUSERBASE": str(base)}
    found = _measure_child(tmp_path, env, executable=_base_python())
    assert {"user-denied", "pth-denied"} <= found
    assert not {"user-denied", "pth-denied"} & _measure_child(
        tmp_path, env, "-s", executable=_base_python()
    )
