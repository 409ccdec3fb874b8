"""``python -m torch_imbalance.cli``: the same as the ``torch-imbalance`` command."""

import sys

from torch_imbalance.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
