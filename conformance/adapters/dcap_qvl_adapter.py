#!/usr/bin/env python3
"""A third-party adapter: Phala's dcap-qvl judges the suite's TDX quote cases.

    attestctl conformance run --suite conformance/ \\
        --adapter "python conformance/adapters/dcap_qvl_adapter.py"

A documented example of wrapping a verifier that is not attestd (docs/conformance.md,
"Wrapping a third-party verifier"). It uses only dcap-qvl (``pip install dcap-qvl``)
and the standard library, and speaks the adapter protocol:

- ``quote`` cases with a ``collateral`` input: ``dcap_qvl.verify_with_root_ca`` with
  the case's root (``root``, PEM) or, without one, ``dcap_qvl.verify`` (Intel's root).
  It prints ``accept``, or ``refuse REASON`` with dcap-qvl's own reason text
  (the error's first word, snake_cased): the runner reports such reasons as they
  are, and they agree with attestd's only in accept/refuse (run without --strict);
- ``quote`` cases without collateral: dcap-qvl cannot verify a quote without its
  DCAP collateral, so it says ``unsupported`` rather than guess;
- every other kind (evidence, chain, ear): ``unsupported``.

It exits 0 whenever it could answer, so a dcap-qvl error is a refusal, not a crash.
"""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path

import dcap_qvl

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)


def _reason(message: str) -> str:
    """dcap-qvl's error as a reason name: its first word, CamelCase to snake_case."""
    word = re.split(r"[^A-Za-z0-9]", message.strip().removeprefix("Verification failed: "))[0]
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", word).lower()
    return f"dcap_qvl_{snake}" if snake else "dcap_qvl_error"


def _root_der(pem: bytes) -> bytes:
    match = _PEM.search(pem)
    if match is None:
        raise ValueError("root file holds no PEM certificate")
    return base64.b64decode(b"".join(match.group(1).split()))


def judge(kind: str, now: str, inputs: dict[str, Path]) -> str:
    """The protocol line for one case."""
    if kind != "quote" or "collateral" not in inputs:
        return "unsupported"
    from datetime import datetime

    seconds = int(datetime.fromisoformat(now.replace("Z", "+00:00")).timestamp())
    quote = inputs["quote"].read_bytes()
    try:
        collateral = dcap_qvl.QuoteCollateralV3.from_json(inputs["collateral"].read_text())
        if "root" in inputs:
            root = _root_der(inputs["root"].read_bytes())
            dcap_qvl.verify_with_root_ca(quote, collateral, root, seconds)
        else:
            dcap_qvl.verify(quote, collateral, seconds)
    except ValueError as err:
        return f"refuse {_reason(str(err))}"
    return "accept"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: dcap_qvl_adapter.py KIND NOW ROLE=PATH...", file=sys.stderr)
        return 2
    kind, now = argv[0], argv[1]
    inputs = {}
    for item in argv[2:]:
        role, _, path = item.partition("=")
        inputs[role] = Path(path)
    print(judge(kind, now, inputs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
