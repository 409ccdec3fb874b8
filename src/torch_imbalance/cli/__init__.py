"""The ``torch-imbalance`` command line."""
