"""``python -m semcom``: the ``semcom`` command (what ``torchrun --nproc-per-node N -m semcom train ...`` starts)."""

import sys

from semcom.cli import main

if __name__ == "__main__":
    sys.exit(main())
