"""Measurement of model files and directories, confined to configured roots.

    from pathlib import Path
    from attestd.agent.artifacts import ArtifactRoots, measure

    roots = ArtifactRoots([Path("/srv/models")])
    m = roots.measure("/srv/models/llama-3-8b")   # or measure(roots.resolve(...))
    m.name              # '/srv/models/llama-3-8b' (real path)
    m.kind              # 'directory'
    m.digest["sha256"]  # the subject digest model_signing signs for this directory
    m.files             # per-file manifest: FileDigest(path, sha256, size_bytes)

A regular file's digest is its SHA-256; a directory's is model_signing's
manifest digest (see :func:`manifest_digest`). Paths outside the roots,
``..``, NUL bytes, relative paths, symbolic links inside a measured directory
and special files are refused with typed errors (see ``errors``).
"""

from attestd.agent.artifacts.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    PathNotAllowedError,
    UnsupportedArtifactError,
)
from attestd.agent.artifacts.measure import (
    IGNORED_NAMES,
    FileDigest,
    Measurement,
    manifest_digest,
    measure,
)
from attestd.agent.artifacts.roots import MAX_PATH_BYTES, ArtifactRoots

__all__ = [
    "IGNORED_NAMES",
    "MAX_PATH_BYTES",
    "ArtifactError",
    "ArtifactNotFoundError",
    "ArtifactRoots",
    "FileDigest",
    "Measurement",
    "PathNotAllowedError",
    "UnsupportedArtifactError",
    "manifest_digest",
    "measure",
]
