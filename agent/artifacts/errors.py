"""Exceptions of artifact confinement and measurement.

Every type derives from :class:`ArtifactError`, whose ``reason`` strings are
stable: the gRPC layer maps them to status codes and the verifier may quote
them.
"""

from __future__ import annotations

from attestd.errors import AttestdError


class ArtifactError(AttestdError):
    """An artifact could not be measured, or the artifact roots are misconfigured."""

    reason = "artifact_error"


class PathNotAllowedError(ArtifactError):
    """The requested path is malformed or lies outside every artifact root."""

    reason = "path_not_allowed"


class ArtifactNotFoundError(ArtifactError):
    """The requested path is inside an artifact root but does not exist."""

    reason = "artifact_not_found"


class UnsupportedArtifactError(ArtifactError):
    """The artifact is neither a regular file nor a directory of regular files.

    Device files, sockets, FIFOs and symbolic links (inside a measured
    directory, or as the measured path itself) are refused.
    """

    reason = "artifact_unsupported"
