"""``attestctl layout``: derive a pipeline layout from a pipeline's own definition.

``attestctl layout from-kfp pipeline.yaml --stage-template stage.toml -o layout.toml``
reads a compiled Kubeflow Pipelines spec (docs/kfp.md) and writes a layout that
``attestctl chain verify`` checks runs against. The derived layout is parsed as
a layout before it is written, so what is written always loads.

``attestctl layout sign layout.toml --key producer.key -o layout.intoto.json``
signs a layout as an in-toto attestation (docs/layout-attestation.md), which
``attestctl chain verify --layout-attestation`` checks runs against.

``attestctl layout from-kedro proj.pipelines:training -o layout.toml`` derives a layout
as from-kfp does, from a Kedro pipeline object (docs/kedro.md).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Any

from attestd.cli._common import EXIT_OK, Commands, read_file, write_output


def cmd_layout_from_kfp(args: argparse.Namespace) -> int:
    """Derive the layout of a compiled KFP pipeline and write it (stdout without ``-o``)."""
    from attestd.integrations.kfp import derive_layout_toml, read_kfp_spec

    template = _stage_template(args)
    name, tasks = read_kfp_spec(read_file(args.spec, "pipeline spec"), args.spec)
    return _check_and_write(args, derive_layout_toml(name, tasks, template, Path(args.spec).name))


def _stage_template(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--stage-template`` file's table, ``--pipeline`` set over its ``pipeline``."""
    from attestd.verifier.layout import LayoutError
    from attestd.verifier.policy import read_toml

    template = (
        read_toml(args.stage_template, what="stage template", error=LayoutError)
        if args.stage_template is not None
        else {}
    )
    if args.pipeline is not None:
        template = {**template, "pipeline": args.pipeline}
    return template


def _check_and_write(args: argparse.Namespace, text: str) -> int:
    """Parse the derived layout as a layout (so what is written loads), then write it."""
    from attestd.integrations.kfp import KfpSpecError
    from attestd.verifier.layout import parse_layout

    # Relative paths in the template resolve against where the layout is written.
    where = Path(args.output) if args.output else (args.stage_template or Path("layout.toml"))
    try:
        parse_layout(tomllib.loads(text), source=where)
    except tomllib.TOMLDecodeError as err:  # a bug in the writer, never the input's fault
        raise KfpSpecError(f"the derived layout is not TOML: {err}") from err
    if args.output:
        write_output(args.output, text.encode("utf-8"))
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_layout_sign(args: argparse.Namespace) -> int:
    """Sign the layout as an in-toto attestation (DSSE) and write it (stdout without ``-o``)."""
    from attestd.verifier.ear import load_signing_key
    from attestd.verifier.layout import LayoutError
    from attestd.verifier.layout_attestation import sign_layout

    data = read_file(args.layout, "layout")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise LayoutError(f"not UTF-8 text ({err.reason})", path=args.layout) from err
    key = load_signing_key(read_file(args.key, "signing key"))
    # Parsed against the layout's own path: the signed text must load where it was written.
    envelope = sign_layout(text, key, source=Path(args.layout))
    if args.output:
        write_output(args.output, envelope)
    else:
        sys.stdout.write(envelope.decode("ascii") + "\n")
    return EXIT_OK


def cmd_layout_from_kedro(args: argparse.Namespace) -> int:
    """Derive the layout of a Kedro pipeline object and write it (stdout without ``-o``)."""
    from attestd.integrations.kedro import layout_from_kedro

    return _check_and_write(args, layout_from_kedro(args.reference, _stage_template(args)))


def _add_derivation_options(sub: Any, *, pipeline_default: str) -> None:
    """The options every ``layout from-*`` command shares: template, name, output."""
    sub.add_argument(
        "--stage-template",
        type=Path,
        help="TOML: layout top-level keys and a [stage] table given to every stage",
    )
    sub.add_argument("--pipeline", help=f"the pipeline name (default: {pipeline_default})")
    sub.add_argument("-o", "--output", help="write the layout here (default: stdout)")


def _add_from_kedro(layout_commands: Any) -> None:
    sub = layout_commands.add_parser(
        "from-kedro",
        help="derive a layout from a Kedro pipeline object (MODULE:OBJECT)",
        description="Derive a layout from a Kedro pipeline: one stage per node, each allowed "
        "to follow the nodes that produce its inputs. MODULE is imported (its code runs) with "
        "the working directory on sys.path; OBJECT is a Pipeline or a callable returning one. "
        "The stage template is from-kfp's. Exit 0 written, 2 a malformed reference or "
        "pipeline (layout_source_invalid), a node name over 128 characters "
        "(layout_source_unsupported), no "
        "Kedro (kedro_unavailable) or a wrong template (layout_invalid). docs/kedro.md.",
    )
    sub.set_defaults(handler=cmd_layout_from_kedro)
    sub.add_argument("reference", metavar="MODULE:OBJECT", help="the pipeline to derive from")
    _add_derivation_options(sub, pipeline_default="OBJECT")


def add_commands(commands: Commands) -> None:
    layout = commands.add_parser(
        "layout",
        help="derive a pipeline layout from a pipeline definition (docs/kfp.md), or sign one",
    )
    layout_commands = layout.add_subparsers(dest="layout_command", required=True, metavar="COMMAND")
    sub = layout_commands.add_parser(
        "from-kfp",
        help="derive a layout from a compiled Kubeflow Pipelines spec (IR YAML)",
        description="Derive a layout from a compiled KFP v2 pipeline spec: one stage per task "
        "of the root DAG, each allowed to follow its upstream tasks. The stage template "
        "supplies the TEEs, roots and reference values a pipeline spec does not say. Exit 0 "
        "written, 2 a malformed spec (layout_source_invalid), an unsupported one "
        "(layout_source_unsupported) or a wrong template (layout_invalid).",
    )
    sub.set_defaults(handler=cmd_layout_from_kfp)
    sub.add_argument("spec", metavar="PIPELINE.yaml", help="compiled pipeline spec")
    _add_derivation_options(sub, pipeline_default="pipelineInfo.name")
    sign = layout_commands.add_parser(
        "sign",
        help="sign a layout as an in-toto attestation (docs/layout-attestation.md)",
        description="Sign a layout (TOML) as an in-toto Statement v1 with predicate type "
        "https://attestd.dev/layout/v1 in a DSSE envelope, for `attestctl chain verify "
        "--layout-attestation`. The layout is parsed first. Exit 0 written, 2 a layout that "
        "does not load (layout_invalid) or a key that is not P-256 (result_key_invalid).",
    )
    sign.set_defaults(handler=cmd_layout_sign)
    sign.add_argument("layout", metavar="LAYOUT.toml", help="the layout to sign")
    sign.add_argument("--key", required=True, help="the signer's P-256 private key (PEM)")
    sign.add_argument("-o", "--output", help="write the attestation here (default: stdout)")
    _add_from_kedro(layout_commands)
