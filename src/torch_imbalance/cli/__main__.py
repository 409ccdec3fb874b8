import sys

from torch_imbalance.cli.main import main

sys.exit(main())
