"""Measurement of model files and directories, digest-identical to OpenSSF model signing.

    from pathlib import Path
    from attestd.agent.artifacts import ArtifactRoots, HashingConfig, measure

    roots = ArtifactRoots([Path("/srv/models")])
    m = roots.measure("/srv/models/llama-3-8b")   # or measure(roots.resolve(...))
    m.name              # '/srv/models/llama-3-8b' (real path)
    m.kind              # 'directory'
    m.digest["sha256"]  # the subject digest model_signing signs for this directory
    m.files             # per-file manifest: FileDigest(path, sha256, size_bytes)

    m = measure(Path("/srv/models/llama-3-8b"), config=HashingConfig(algorithm="blake3"))
    m.manifest.to_json()  # the in-toto statement model_signing signs, resources and all

A regular file's digest is its own digest; a directory's is model_signing's
subject digest for the same :class:`HashingConfig` (sha256, blake2 or blake3;
file or shard serialization; ignored paths; symbolic links refused or
followed). Paths outside the roots, ``..``, NUL bytes, relative paths,
symbolic links inside a measured directory (unless allowed) and special files
are refused with typed errors (see ``errors``). :class:`DigestCache` lets a
repeat measurement skip files whose inode metadata is unchanged.
"""

from attestd.agent.artifacts.cache import CacheKey, DigestCache
from attestd.agent.artifacts.config import (
    ALGORITHMS,
    SERIALIZATIONS,
    Algorithm,
    HashingConfig,
    Serialization,
)
from attestd.agent.artifacts.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    PathNotAllowedError,
    UnsupportedArtifactError,
)
from attestd.agent.artifacts.manifest import Manifest, Resource
from attestd.agent.artifacts.measure import (
    IGNORED_NAMES,
    FileDigest,
    Measurement,
    Progress,
    ProgressCallback,
    manifest_digest,
    measure,
)
from attestd.agent.artifacts.roots import MAX_PATH_BYTES, ArtifactRoots

__all__ = [
    "ALGORITHMS",
    "IGNORED_NAMES",
    "MAX_PATH_BYTES",
    "SERIALIZATIONS",
    "Algorithm",
    "ArtifactError",
    "ArtifactNotFoundError",
    "ArtifactRoots",
    "CacheKey",
    "DigestCache",
    "FileDigest",
    "HashingConfig",
    "Manifest",
    "Measurement",
    "PathNotAllowedError",
    "Progress",
    "ProgressCallback",
    "Resource",
    "Serialization",
    "UnsupportedArtifactError",
    "manifest_digest",
    "measure",
]
