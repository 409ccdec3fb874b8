"""The training engine: configuration, Lightning module, trainer, runs and comparisons."""
