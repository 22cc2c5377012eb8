"""Only absolute, well-formed paths whose real path is inside a root are measured."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import pytest

from attestd.agent.artifacts import (
    MAX_PATH_BYTES,
    ArtifactError,
    ArtifactNotFoundError,
    ArtifactRoots,
    Measurement,
    PathNotAllowedError,
)

roots_module = importlib.import_module("attestd.agent.artifacts.roots")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    (models / "llama").mkdir(parents=True)
    (models / "llama" / "w.bin").write_bytes(b"weights")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"secret")
    return models


def test_path_inside_root_resolves_to_its_real_path(root: Path) -> None:
    roots = ArtifactRoots([root])
    assert roots.resolve(f"{root}/llama/w.bin") == (root / "llama" / "w.bin").resolve()
    assert roots.resolve(f"{root}/./llama//") == (root / "llama").resolve()
    assert roots.resolve(str(root)) == root.resolve()


@pytest.mark.parametrize("path", ["llama/w.bin", "./llama", "", "~/models"])
def test_relative_path_is_refused(root: Path, path: str) -> None:
    with pytest.raises(PathNotAllowedError, match="not absolute"):
        ArtifactRoots([root]).resolve(path)


def test_dotdot_component_is_refused_even_when_it_stays_inside(root: Path) -> None:
    roots = ArtifactRoots([root])
    with pytest.raises(PathNotAllowedError, match=r"'\.\.' component"):
        roots.resolve(f"{root}/llama/../llama/w.bin")
    with pytest.raises(PathNotAllowedError, match=r"'\.\.' component"):
        roots.resolve(f"{root}/../outside/secret")
    # ".." inside a name is just a name.
    with pytest.raises(ArtifactNotFoundError):
        roots.resolve(f"{root}/llama/w..bin")


def test_nul_byte_is_refused(root: Path) -> None:
    with pytest.raises(PathNotAllowedError, match="NUL byte") as caught:
        ArtifactRoots([root]).resolve(f"{root}/llama\x00/etc/passwd")
    assert caught.value.reason == "path_not_allowed"


def test_path_over_4096_bytes_is_refused(root: Path) -> None:
    base = f"{root}/"
    too_long = base + "a" * (MAX_PATH_BYTES + 1 - len(base))
    with pytest.raises(PathNotAllowedError, match=f"{MAX_PATH_BYTES + 1} bytes"):
        ArtifactRoots([root]).resolve(too_long)


def test_long_path_under_the_limit_is_only_not_found(root: Path) -> None:
    within = f"{root}/" + "/".join(["d" * 200] * 15)
    assert len(within.encode()) <= MAX_PATH_BYTES
    with pytest.raises(ArtifactNotFoundError):
        ArtifactRoots([root]).resolve(within)


def test_length_is_counted_in_utf8_bytes(root: Path) -> None:
    path = f"{root}/" + "é" * (MAX_PATH_BYTES // 2)
    with pytest.raises(PathNotAllowedError, match="over the limit"):
        ArtifactRoots([root]).resolve(path)


def test_absolute_path_elsewhere_is_refused_without_touching_it(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roots = ArtifactRoots([root])

    def no_file_system_access(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file system was consulted for a path outside the roots")

    monkeypatch.setattr(roots_module.os.path, "realpath", no_file_system_access)
    monkeypatch.setattr(roots_module.os, "stat", no_file_system_access)
    monkeypatch.setattr(roots_module.os, "lstat", no_file_system_access)
    for path in ["/etc/passwd", "/etc/does-not-exist", "/", f"{root}-evil/llama"]:
        with pytest.raises(PathNotAllowedError, match="not inside any artifact root"):
            roots.resolve(path)


def test_symlink_pointing_outside_is_refused_alike_whether_target_exists(root: Path) -> None:
    outside = root.parent / "outside"
    (root / "to-secret").symlink_to(outside / "secret")
    (root / "to-nothing").symlink_to(outside / "nothing")
    (root / "to-outside-dir").symlink_to(outside)
    roots = ArtifactRoots([root])
    messages = []
    for name in ["to-secret", "to-nothing", "to-outside-dir/secret", "to-outside-dir/nothing"]:
        with pytest.raises(PathNotAllowedError) as caught:
            roots.resolve(f"{root}/{name}")
        messages.append(caught.value.message.replace(name, "NAME"))
        assert str(outside) not in caught.value.message
    assert len(set(messages)) == 1


def test_symlink_staying_inside_the_root_is_followed(root: Path) -> None:
    (root / "current").symlink_to(root / "llama")
    roots = ArtifactRoots([root])
    assert roots.resolve(f"{root}/current/w.bin") == (root / "llama" / "w.bin").resolve()


def test_root_that_is_a_symlink_accepts_both_spellings(tmp_path: Path, root: Path) -> None:
    link = tmp_path / "models-link"
    link.symlink_to(root)
    roots = ArtifactRoots([link])
    assert roots.roots == (root.resolve(),)
    real_file = (root / "llama" / "w.bin").resolve()
    assert roots.resolve(f"{link}/llama/w.bin") == real_file
    assert roots.resolve(f"{root}/llama/w.bin") == real_file
    with pytest.raises(PathNotAllowedError):
        roots.resolve(f"{tmp_path}/outside/secret")


def test_nonexistent_path_inside_root_is_not_found(root: Path) -> None:
    roots = ArtifactRoots([root])
    with pytest.raises(ArtifactNotFoundError, match="does not exist") as caught:
        roots.resolve(f"{root}/missing")
    assert caught.value.reason == "artifact_not_found"
    with pytest.raises(ArtifactNotFoundError):
        roots.resolve(f"{root}/llama/w.bin/under-a-file")


def test_any_of_several_roots_is_accepted(tmp_path: Path, root: Path) -> None:
    other = tmp_path / "datasets"
    other.mkdir()
    (other / "d.csv").write_bytes(b"1,2\n")
    roots = ArtifactRoots([root, other])
    assert roots.resolve(f"{other}/d.csv") == (other / "d.csv").resolve()
    assert roots.resolve(f"{root}/llama") == (root / "llama").resolve()


def test_no_roots_refuses_everything(root: Path) -> None:
    with pytest.raises(PathNotAllowedError):
        ArtifactRoots([]).resolve(f"{root}/llama")


def test_misconfigured_roots_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist") as caught:
        ArtifactRoots([tmp_path / "absent"])
    assert caught.value.reason == "artifact_error"
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ArtifactError, match="not a directory"):
        ArtifactRoots([tmp_path / "file"])
    with pytest.raises(ArtifactError, match="not an absolute path"):
        ArtifactRoots([Path("relative/models")])


def test_measure_through_roots(root: Path) -> None:
    m = ArtifactRoots([root]).measure(f"{root}/llama/w.bin")
    assert m.digest == {"sha256": hashlib.sha256(b"weights").hexdigest()}
    assert m.name == str((root / "llama" / "w.bin").resolve())


def test_measure_through_roots_refuses_what_moved_outside(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stands in for a component swapped for a link between resolve and open:
    # measure() reports the name of what it actually opened.
    def measured_elsewhere(path: Path, **options: object) -> Measurement:
        return Measurement("/etc/passwd", "file", {"sha256": "0" * 64}, 0, 1)

    monkeypatch.setattr(roots_module, "measure", measured_elsewhere)
    with pytest.raises(PathNotAllowedError, match="moved out"):
        ArtifactRoots([root]).measure(f"{root}/llama/w.bin")


def test_reasons_are_stable() -> None:
    from attestd.agent.artifacts import UnsupportedArtifactError
    from attestd.errors import AttestdError

    assert issubclass(ArtifactError, AttestdError)
    assert {
        cls.reason
        for cls in (
            ArtifactError,
            PathNotAllowedError,
            ArtifactNotFoundError,
            UnsupportedArtifactError,
        )
    } == {"artifact_error", "path_not_allowed", "artifact_not_found", "artifact_unsupported"}
    assert all(
        issubclass(cls, ArtifactError)
        for cls in (PathNotAllowedError, ArtifactNotFoundError, UnsupportedArtifactError)
    )
