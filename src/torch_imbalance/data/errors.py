"""The data package's error type."""


class DatasetError(ValueError):
    """A dataset that cannot be used as given (missing files or columns, bad labels)."""
