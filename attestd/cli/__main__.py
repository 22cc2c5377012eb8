"""``python -m attestd.cli``: the same as ``attestctl``."""

import sys

from attestd.cli import main

sys.exit(main())
