"""A pipeline step as a user would write one: measure the model, record what happened.

python demo/pipeline_step.py --socket /run/attestd/attestd.sock /srv/models/demo-model
"""

from __future__ import annotations

import argparse
import json
import sys

from attestd.client import AgentClient


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("model")
    args = parser.parse_args()

    with AgentClient.unix(args.socket) as agent:
        agent.record("pipeline.quantize", "started", json.dumps({"model": args.model}).encode())
        (artifact,) = agent.measure([args.model])
        print(f"pipeline: measured {artifact.name}: sha256 {artifact.digest['sha256']}")
        agent.record(
            "pipeline.quantize",
            "config",
            json.dumps({"bits": 4, "group_size": 128, "method": "awq"}).encode(),
        )
        done = agent.record(
            "pipeline.quantize",
            "finished",
            json.dumps({"model_sha256": artifact.digest["sha256"]}).encode(),
        )
        head = done.log_head.hex()[:16]
        print(f"pipeline: recorded events up to #{done.event.sequence}, head {head}…")
    return 0


if __name__ == "__main__":
    sys.exit(main())
