"""Confinement of requested paths to the configured artifact roots.

    roots = ArtifactRoots([Path("/srv/models")])
    path = roots.resolve("/srv/models/llama-3-8b")  # real path, inside a root
    measurement = roots.measure("/srv/models/llama-3-8b")  # resolve, measure, re-check

A request is checked in three steps, and the order is the point:

1. Syntax, with no file-system access at all: a ``str``, absolute, no NUL byte,
   at most 4096 bytes (``PATH_MAX``) once encoded, no ``..`` component.
2. Spelling, still with no file-system access: the normalised path must lie
   under a root as configured or under that root's real path. ``/etc/passwd``
   is refused here, so nothing about it is ever looked at.
3. Real path: symbolic links are resolved (``os.path.realpath``, non-strict)
   and the result must lie inside the real path of some root. Only then is the
   path stat'ed, and only then can "does not exist" be answered.

Resolving a symbolic link that points out of a root does ``lstat`` the
components it names, because that is what resolving means; but the answer for
any real path outside the roots is the same ``path_not_allowed`` whether or not
it exists, and the message names the requested path, never the link's target.
So a caller learns nothing about files outside the roots.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Final

from attestd.agent.artifacts.cache import DigestCache
from attestd.agent.artifacts.config import HashingConfig
from attestd.agent.artifacts.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    PathNotAllowedError,
)
from attestd.agent.artifacts.measure import Measurement, ProgressCallback, measure

MAX_PATH_BYTES: Final = 4096


class ArtifactRoots:
    """The directories inside which artifacts may be measured.

    Each root must be an absolute path to an existing directory; it is resolved
    to its real path once, here. A missing or unusable root is a configuration
    error (:class:`ArtifactError`). An empty sequence is allowed and refuses
    every path.
    """

    def __init__(self, roots: Sequence[Path]) -> None:
        spellings: list[PurePosixPath] = []
        real_roots: list[Path] = []
        for configured in roots:
            root = Path(configured)
            if not root.is_absolute():
                raise ArtifactError(f"artifact root '{root}' is not an absolute path")
            try:
                real = root.resolve(strict=True)
            except FileNotFoundError:
                raise ArtifactError(f"artifact root '{root}' does not exist") from None
            except OSError as exc:
                raise ArtifactError(
                    f"artifact root '{root}' cannot be resolved: {exc.strerror}"
                ) from None
            if not real.is_dir():
                raise ArtifactError(f"artifact root '{root}' is not a directory")
            spellings.append(PurePosixPath(os.path.normpath(root)))
            spellings.append(PurePosixPath(real))
            real_roots.append(real)
        self._spellings: tuple[PurePosixPath, ...] = tuple(spellings)
        self._real_roots: tuple[Path, ...] = tuple(real_roots)

    @property
    def roots(self) -> tuple[Path, ...]:
        """The real paths of the configured roots, in configuration order."""
        return self._real_roots

    def contains(self, real_path: Path | str) -> bool:
        """Whether an already resolved path lies inside (or is) some real root."""
        candidate = PurePosixPath(real_path)
        return any(candidate.is_relative_to(root) for root in self._real_roots)

    def resolve(self, path: str) -> Path:
        """The real path of ``path`` after checking that it is allowed.

        Raises:
            PathNotAllowedError: malformed, or outside every root (before or
                after resolving symbolic links).
            ArtifactNotFoundError: inside a root but nonexistent.
            ArtifactError: inside a root but cannot be examined (permissions).
        """
        lexical = _check_syntax(path)
        if not any(lexical.is_relative_to(root) for root in self._spellings):
            raise PathNotAllowedError(f"path {path!r} is not inside any artifact root")
        real = Path(os.path.realpath(lexical))
        if not self.contains(real):
            raise PathNotAllowedError(
                f"path {path!r} leads out of the artifact roots through a symbolic link"
            )
        try:
            os.stat(real)
        except (FileNotFoundError, NotADirectoryError):
            raise ArtifactNotFoundError(f"path {path!r} does not exist") from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise PathNotAllowedError(
                    f"path {path!r} is too long for the file system"
                ) from None
            raise ArtifactError(f"path {path!r} cannot be examined: {exc.strerror}") from None
        return real

    def measure(
        self,
        path: str,
        *,
        max_workers: int | None = None,
        config: HashingConfig | None = None,
        cache: DigestCache | None = None,
        progress: ProgressCallback | None = None,
    ) -> Measurement:
        """Resolve ``path``, measure it, and check what was measured is still inside.

        The second check closes the window between :meth:`resolve` and the open
        in :func:`measure`: the measured name is read back from the opened file
        descriptor, so a path component swapped for a symbolic link in between
        is caught. The keywords are :func:`measure`'s. (With
        ``config.allow_symlinks``, links inside a measured directory are
        followed wherever they point, as model_signing does.)
        """
        measurement = measure(
            self.resolve(path),
            max_workers=max_workers,
            config=config,
            cache=cache,
            progress=progress,
        )
        if not self.contains(measurement.name):
            raise PathNotAllowedError(
                f"path {path!r} moved out of the artifact roots while being measured"
            )
        return measurement


def _check_syntax(path: str) -> PurePosixPath:
    """The path as a normalised pure path, or a refusal saying what is wrong."""
    if not isinstance(path, str):
        raise PathNotAllowedError(f"path must be a string, not {type(path).__name__}")
    if "\x00" in path:
        raise PathNotAllowedError("path contains a NUL byte")
    try:
        encoded_length = len(os.fsencode(path))
    except UnicodeEncodeError:
        raise PathNotAllowedError("path is not valid Unicode") from None
    if encoded_length > MAX_PATH_BYTES:
        raise PathNotAllowedError(
            f"path is {encoded_length} bytes long, over the limit of {MAX_PATH_BYTES}"
        )
    if not path.startswith("/"):
        raise PathNotAllowedError(f"path {path!r} is not absolute")
    if ".." in path.split("/"):
        raise PathNotAllowedError(f"path {path!r} has a '..' component")
    return PurePosixPath(os.path.normpath(path))
