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
)
from attestd.evidence import Caller
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


def _measure_child(tmp_path: Path, env: dict[str, str], *flags: str) -> set[str]:
    """Start a Python that waits, measure it, and return the distribution names found."""
    ready = tmp_path / "ready"
    code = f"import pathlib,time; pathlib.Path({str(ready)!r}).touch(); time.sleep(30)"
    child = subprocess.Popen([sys.executable, *flags, "-c", code], env={**os.environ, **env})
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
