"""Two attested stages written with attestd.pipeline: the few lines a pipeline adds.

python demo/pipeline_api_example.py --socket /run/attestd/attestd.sock --work /srv/work

``--work`` must lie inside the agent's artifact roots. The script writes
``raw.txt``, ``dataset.jsonl`` and ``model.bin`` there, and each stage's
attestation as ``prepare.attestation.json`` and ``train.attestation.json``,
which ``attestctl chain verify`` checks against a layout (docs/pipeline-api.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from attestd.pipeline import Artifact, attested_stage, current_stage, stage

PIPELINE = "api-example"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", help="default: $ATTESTD_SOCKET, else /run/attestd/attestd.sock")
    parser.add_argument("--work", required=True, type=Path)
    args = parser.parse_args()
    work: Path = args.work.resolve()
    raw, dataset, model = work / "raw.txt", work / "dataset.jsonl", work / "model.bin"
    raw.write_text("".join(f"sentence {i} about confidential computing\n" for i in range(100)))

    # Stage 1, a `with` block: inputs measured on entry, outputs on a clean exit.
    with stage(
        "prepare",
        pipeline=PIPELINE,
        inputs=[Artifact(raw, licence="CC-BY-4.0")],
        outputs=[Artifact(dataset, licence="CC-BY-4.0", tags=["pii:none"])],
        socket=args.socket,
        attestation_path=work / "prepare.attestation.json",
    ) as prepare:
        rows = [json.dumps({"text": line}) for line in raw.read_text().splitlines()]
        dataset.write_text("\n".join(rows) + "\n")
        prepare.record("pipeline.prepare", "rows", {"kept": len(rows)})

    # Stage 2, a decorated function, linked to stage 1 through its attestation file.
    @attested_stage(
        pipeline=PIPELINE,
        inputs=[Artifact(dataset, licence="CC-BY-4.0", tags=["pii:none"])],
        outputs=[Artifact(model, licence="Apache-2.0")],
        previous=work / "prepare.attestation.json",
        socket=args.socket,
        attestation_path=work / "train.attestation.json",
    )
    def train(epochs: int) -> None:
        weights = hashlib.sha256(dataset.read_bytes())
        for epoch in range(epochs):
            weights = hashlib.sha256(weights.digest())
            current_stage().record("pipeline.train", "epoch_end", {"epoch": epoch})
        model.write_bytes(hashlib.shake_256(weights.digest()).digest(4096))

    train(3)
    print(f"api example: run {prepare.run_id}: prepare and train attested in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
