"""maskwatch: find every face and tell with_mask from without_mask."""
__version__ = "0.1.0"
