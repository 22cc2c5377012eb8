"""A pipeline stage as a user would write one: open the stage, do the work, close it.

python demo/stage_step.py --socket /run/attestd/attestd.sock --pipeline llm-demo \\
    --stage quantize --input /srv/work/model --output /srv/work/model-int8 \\
    --previous train.attestation.json -o quantize.attestation.json

The agent measures the input when the stage opens and the output when it
closes, so whatever happens to the files in between is on the record. Each
stage knows the licence and policy tags of what it reads and writes.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from attestd.client import AgentClient, ArtifactSpec

DATASET_LICENSE = "CC-BY-4.0"
MODEL_LICENSE = "Apache-2.0"
PII_FREE = "pii:none"


def prepare(source: Path, dataset: Path) -> dict[str, object]:
    """Split the raw corpus into shards of non-empty, normalised lines."""
    lines = [line.strip().lower() for line in source.read_text().splitlines() if line.strip()]
    dataset.mkdir(parents=True)
    shards = 2
    for index in range(shards):
        rows = [json.dumps({"text": line}) for line in lines[index::shards]]
        (dataset / f"shard-{index:05d}.jsonl").write_text("\n".join(rows) + "\n")
    return {"examples": len(lines), "shards": shards}


def train(dataset: Path, model: Path) -> dict[str, object]:
    """ "Train": weights derived deterministically from every shard's bytes."""
    seed = hashlib.sha256()
    for shard in sorted(dataset.glob("*.jsonl")):
        seed.update(shard.read_bytes())
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"architectures": ["DemoForCausalLM"], "hidden": 64}\n')
    (model / "weights.bin").write_bytes(hashlib.shake_256(seed.digest()).digest(64 * 1024))
    return {"epochs": 1, "seed": seed.hexdigest()[:16]}


def quantize(model: Path, quantized: Path) -> dict[str, object]:
    """ "Quantize": keep one byte of every four."""
    quantized.mkdir(parents=True)
    (quantized / "config.json").write_bytes((model / "config.json").read_bytes())
    (quantized / "weights.bin").write_bytes((model / "weights.bin").read_bytes()[::4])
    return {"bits": 8, "method": "every-fourth-byte"}


def package(model: Path, release: Path) -> dict[str, object]:
    """A reproducible tarball of the model directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(p for p in model.rglob("*") if p.is_file()):
            data = path.read_bytes()
            info = tarfile.TarInfo(f"{release.stem}/{path.relative_to(model)}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    release.parent.mkdir(parents=True, exist_ok=True)
    release.write_bytes(buffer.getvalue())
    return {"format": "tar", "bytes": len(buffer.getvalue())}


@dataclass(frozen=True)
class Stage:
    work: Callable[[Path, Path], dict[str, object]]
    input_license: str
    output_license: str
    input_tags: tuple[str, ...] = ()
    output_tags: tuple[str, ...] = ()


STAGES = {
    "prepare": Stage(prepare, DATASET_LICENSE, DATASET_LICENSE, output_tags=(PII_FREE,)),
    "train": Stage(train, DATASET_LICENSE, MODEL_LICENSE, input_tags=(PII_FREE,)),
    "quantize": Stage(quantize, MODEL_LICENSE, MODEL_LICENSE),
    "package": Stage(package, MODEL_LICENSE, MODEL_LICENSE),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--stage", required=True, choices=sorted(STAGES))
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--previous", type=Path, help="the previous stage's attestation")
    parser.add_argument("-o", "--attestation", required=True, type=Path)
    args = parser.parse_args()
    stage = STAGES[args.stage]
    source, target = args.input.resolve(), args.output.resolve()
    previous = args.previous.read_bytes() if args.previous else b""
    domain = f"pipeline.{args.stage}"

    with AgentClient.unix(args.socket) as agent:
        begun = agent.begin_stage(
            args.pipeline,
            args.stage,
            inputs=[
                ArtifactSpec(path=str(source), license=stage.input_license, tags=stage.input_tags)
            ],
            previous_attestation=previous,
        )
        agent.record(domain, "started", json.dumps({"input": str(source)}).encode())
        summary = stage.work(source, target)
        agent.record(domain, "finished", json.dumps(summary).encode())
        attestation = agent.end_stage(
            [ArtifactSpec(path=str(target), license=stage.output_license, tags=stage.output_tags)]
        )
    args.attestation.write_bytes(attestation)
    print(
        f"  {args.stage}: run {begun.run_id[:12]}…  {source.name} -> {target.name}  "
        f"{json.dumps(summary)}  -> {args.attestation.name}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
