"""The pipeline layout: which stages a run must have, in which order, on which TEEs.

    from pathlib import Path
    from attestd.verifier.layout import load_layout

    layout = load_layout(Path("layout.toml"))       # LayoutError if the file is wrong
    layout.stage("train").tees                       # ("tdx", "sev-snp")
    policy = layout.stage("train").policy("tdx", layout.freshness(), artifacts=())

The file is TOML and is read as strictly as a policy file: an unknown key, a
value of the wrong type or a malformed hex string is a :class:`LayoutError`
naming the key and the file. A stage's ``[stages.tdx]`` and ``[stages.snp]``
tables are policy tables, parsed by ``attestd.verifier.policy`` itself, so a
stage accepts exactly the reference values a policy does. ``docs/layout.md``
describes every key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attestd._toml import TomlReader
from attestd.evidence.keys import KEY_ID_PATTERN
from attestd.verifier.errors import PolicyError
from attestd.verifier.policy import (
    DEFAULT_MAX_CLOCK_SKEW_SECONDS,
    ArtifactPolicy,
    FreshnessPolicy,
    Policy,
    SnpPolicy,
    TdxPolicy,
    TrustPolicy,
    freshness_policy,
    read_toml,
    reader_for,
    snp_policy,
    tdx_policy,
    trust_policy,
)
from attestd.verifier.software import SoftwareRules, software_rules
from attestd.verifier.spdx import LicenseId, SpdxError, WithException, parse_expression

TEE_TYPES = ("tdx", "sev-snp")

_TOP_KEYS = {"pipeline", "freshness", "allowed_licenses", "stages", "artifacts", "software"}
_STAGE_KEYS = {
    "name", "tee", "trust", "tdx", "snp", "agent_keys", "required_tags", "inputs_from_previous",
    "software",
    "after",
}  # fmt: skip


class LayoutError(PolicyError):
    """A layout file is missing, unreadable, or says something we do not understand."""

    reason = "layout_invalid"


@dataclass(frozen=True)
class StageRule:
    """One ``[[stages]]`` entry: what an attestation of this stage must show."""

    name: str
    tees: tuple[str, ...]
    trust: Mapping[str, TrustPolicy]
    """The root of trust for each accepted TEE type."""
    tdx: TdxPolicy = field(default_factory=TdxPolicy)
    snp: SnpPolicy = field(default_factory=SnpPolicy)
    agent_keys: tuple[str, ...] | None = None
    """Allowed agent key ids (``sha256:<hex>``); ``None`` accepts any key the TEE vouches for."""
    required_tags: tuple[str, ...] = ()
    """Policy tags every output of the stage must carry."""
    inputs_from_previous: bool = True
    """The stage's inputs are exactly its predecessor's outputs."""
    software: SoftwareRules = field(default_factory=SoftwareRules)
    """The stage's own ``[stages.software]`` rules (``Layout.software_for`` merges)."""
    after: tuple[str, ...] | None = None
    """The stages this one may follow (a partial order, e.g. a DAG's upstream tasks);
    ``()`` makes it a root that names no predecessor; ``None`` (the default) means the
    stage listed just before it, a total order."""

    def policy(
        self,
        tee: str,
        freshness: FreshnessPolicy,
        artifacts: Sequence[ArtifactPolicy],
        source: Path | None = None,
    ) -> Policy:
        """The appraisal policy for this stage's evidence from ``tee`` (one of ``tees``)."""
        return Policy(
            trust=self.trust[tee],
            freshness=freshness,
            tdx=self.tdx,
            snp=self.snp,
            artifacts=tuple(artifacts),
            source=source,
        )


@dataclass(frozen=True)
class ArtifactRule:
    """One ``[[artifacts]]`` entry: tags an artifact of this name must carry wherever it appears."""

    name: str
    required_tags: tuple[str, ...] = ()
    required: bool = False
    """The artifact must appear somewhere in the chain (``artifact_missing`` otherwise)."""


@dataclass(frozen=True)
class Layout:
    """A whole layout file, validated."""

    pipeline: str
    stages: tuple[StageRule, ...]
    allowed_licenses: tuple[str, ...] | None = None
    """Allowed licence ids (or ``X WITH E``); ``None`` leaves licences unchecked."""
    artifacts: tuple[ArtifactRule, ...] = ()
    max_age_seconds: int | None = None
    """How old a stage's evidence may be; ``None`` (the default) sets no bound: stage
    attestations are read long after the fact, so age is checked only when asked for,
    and the chain result says so."""
    max_clock_skew_seconds: int = DEFAULT_MAX_CLOCK_SKEW_SECONDS
    source: Path | None = None
    software: SoftwareRules = field(default_factory=SoftwareRules)
    """The pipeline-wide ``[software]`` rules, for every stage."""

    def software_for(self, rule: StageRule) -> SoftwareRules:
        """The software rules a stage is held to: the pipeline's, then its own."""
        return self.software.merge(rule.software)

    def stage(self, name: str) -> StageRule | None:
        """The rule for the stage called ``name``, or ``None`` if the layout has none."""
        for rule in self.stages:
            if rule.name == name:
                return rule
        return None

    def freshness(self) -> FreshnessPolicy:
        """The freshness bounds every stage's appraisal uses."""
        return FreshnessPolicy(
            max_age_seconds=self.max_age_seconds,
            max_clock_skew_seconds=self.max_clock_skew_seconds,
        )


def load_layout(path: Path) -> Layout:
    """Read and validate the layout at ``path``; raise :class:`LayoutError` if it is wrong."""
    return parse_layout(read_toml(path, what="layout file", error=LayoutError), source=path)


def parse_layout(document: Mapping[str, Any], *, source: Path) -> Layout:
    """Validate an already-parsed TOML document; relative paths resolve against ``source``."""
    reader = reader_for(source)
    with _as_layout_error(source, ""):
        reader.only_keys(document, "", _TOP_KEYS)
        pipeline = reader.string(document, "", "pipeline")
        if pipeline is None:
            raise reader.error("pipeline is required: the name every stage's provenance carries")
        freshness = freshness_policy(
            reader, reader.table(document, "freshness"), max_age_default=None
        )
        licenses = _licenses(reader, document)
        raw_stages = document.get("stages")
        if not isinstance(raw_stages, list) or not raw_stages:
            raise reader.error("stages must be a non-empty array of tables ([[stages]])")
        artifacts = _artifacts(reader, document.get("artifacts", []))
        software = software_rules(reader, reader.table(document, "software"), "software")
    stages = tuple(_stage(reader, source, entry, index) for index, entry in enumerate(raw_stages))
    names = [s.name for s in stages]
    for name in names:
        if names.count(name) > 1:
            raise LayoutError(f"stage {name!r} appears twice in stages", path=str(source))
    _check_after(stages, source)
    return Layout(
        pipeline,
        stages,
        licenses,
        artifacts,
        freshness.max_age_seconds,
        freshness.max_clock_skew_seconds,
        source,
        software,
    )


def _licenses(reader: TomlReader, document: Mapping[str, Any]) -> tuple[str, ...] | None:
    licenses = reader.string_list(document, "", "allowed_licenses")
    if licenses is None:
        return None
    for entry in licenses:
        try:
            parsed = parse_expression(entry)
        except SpdxError as err:
            raise reader.error(f"allowed_licenses: {err.message}") from err
        if not isinstance(parsed, LicenseId | WithException):
            raise reader.error(
                f"allowed_licenses: {entry!r} is a compound expression; list licence ids "
                "(or 'X WITH exception'), one per entry"
            )
    return licenses


def _artifacts(reader: TomlReader, entries: Any) -> tuple[ArtifactRule, ...]:
    if not isinstance(entries, list):
        raise reader.error("artifacts must be an array of tables ([[artifacts]])")
    rules = []
    for index, entry in enumerate(entries):
        where = f"artifacts[{index}]"
        if not isinstance(entry, dict):
            raise reader.error(f"{where} must be a table ([[artifacts]])")
        reader.only_keys(entry, where, {"name", "required_tags", "required"})
        name = reader.string(entry, where, "name")
        if name is None:
            raise reader.error(f"{where}.name is required")
        rules.append(
            ArtifactRule(
                name=name,
                required_tags=reader.string_list(entry, where, "required_tags") or (),
                required=reader.boolean(entry, where, "required", default=False),
            )
        )
    return tuple(rules)


def _stage(reader: TomlReader, source: Path, entry: Any, index: int) -> StageRule:
    where = f"stages[{index}]"
    if not isinstance(entry, dict):
        raise LayoutError(f"{where} must be a table ([[stages]])", path=str(source))
    with _as_layout_error(source, ""):
        reader.only_keys(entry, where, _STAGE_KEYS)
        name = reader.string(entry, where, "name")
        if name is None:
            raise reader.error(f"{where}.name is required")
        tees = reader.string_list(entry, where, "tee")
        if not tees:
            raise reader.error(f'{where}.tee is required: a non-empty array of "tdx", "sev-snp"')
        for tee in tees:
            if tee not in TEE_TYPES:
                raise reader.error(f'{where}.tee: {tee!r} is not "tdx" or "sev-snp"')
        trust_table = reader.table(entry, "trust", where=f"{where}.trust")
        reader.only_keys(trust_table, f"{where}.trust", set(tees))
        agent_keys = reader.string_list(entry, where, "agent_keys")
        for key in agent_keys or ():
            if not KEY_ID_PATTERN.fullmatch(key):
                raise reader.error(f"{where}.agent_keys: {key!r} is not sha256:<64 hex digits>")
        tags = reader.string_list(entry, where, "required_tags") or ()
        follows = reader.boolean(entry, where, "inputs_from_previous", default=True)
        software = software_rules(
            reader, reader.table(entry, "software", where=f"{where}.software"), f"{where}.software"
        )
        after = reader.string_list(entry, where, "after")
    trust: dict[str, TrustPolicy] = {}
    for tee in tees:
        if tee not in trust_table:
            raise LayoutError(
                f"{where}.trust.{tee} is required: the root of trust is never implied",
                path=str(source),
            )
        with _as_layout_error(source, ""):
            table = reader.table(trust_table, tee, where=f"{where}.trust.{tee}")
        with _as_layout_error(source, f"{where}.trust.{tee}: "):
            reader.only_keys(table, f"{where}.trust.{tee}", {"root", "simulated_root"})
            trust[tee] = trust_policy(reader, {**table, "tee": tee})
    with _as_layout_error(source, f"{where} ({name}): "):
        tdx = tdx_policy(reader, reader.table(entry, "tdx", where=f"{where}.tdx"))
        snp = snp_policy(reader, reader.table(entry, "snp", where=f"{where}.snp"))
    return StageRule(
        name, tuple(tees), trust, tdx, snp, agent_keys, tags, follows, software,
        tuple(after) if after is not None else None,
    )  # fmt: skip


def _check_after(stages: Sequence[StageRule], source: Path) -> None:
    """Each ``after`` names only stages listed before it: the list stays a topological order,
    so a partial order can never hide a cycle."""
    seen: set[str] = set()
    for rule in stages:
        for name in rule.after or ():
            if name not in seen:
                raise LayoutError(
                    f"stage {rule.name!r}: after names {name!r}, which is not a stage listed "
                    "before it (stages are listed in an order they may run in)",
                    path=str(source),
                )
        if rule.after is not None and len(set(rule.after)) != len(rule.after):
            raise LayoutError(f"stage {rule.name!r}: after repeats a stage", path=str(source))
        seen.add(rule.name)


@contextlib.contextmanager
def _as_layout_error(source: Path, prefix: str) -> Iterator[None]:
    """Turn the policy reader's PolicyError into a LayoutError, prefixed with where it was."""
    try:
        yield
    except LayoutError:
        raise
    except PolicyError as error:
        message = error.message
        head = f"{source}: "
        if message.startswith(head):
            message = message[len(head) :]
        raise LayoutError(prefix + message, path=str(source)) from error
