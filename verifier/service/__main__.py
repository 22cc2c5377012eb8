"""``python -m attestd.verifier.service``: the ``attestd-verifier`` daemon.

    python3 -m attestd.verifier.service --config /etc/attestd-verifier/verifier.toml

The container image runs this (a console script's ``#!`` names the build
stage's interpreter, which the runtime image lacks).
"""

from __future__ import annotations

import sys

from attestd.verifier.service.main import main

if __name__ == "__main__":
    sys.exit(main())
