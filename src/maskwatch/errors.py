"""Errors that carry a message meant for a person.

Every error raised on purpose by maskwatch is a :class:`MaskwatchError`. Its text says what was
expected, what arrived and what to do; the CLI prints it as one line and exits non-zero, the HTTP
API turns it into a 4xx with a JSON ``detail``.
"""

from __future__ import annotations


class MaskwatchError(Exception):
    """Base class for errors with a message a user can act on."""

    exit_code: int = 2


class InputError(MaskwatchError):
    """A path, image, video or camera given by the user cannot be used."""


class ImageDecodeError(InputError):
    """Bytes that should be an image could not be decoded (corrupt, truncated, not an image)."""


class ImageTooLargeError(InputError):
    """An image exceeds the pixel limit (decompression-bomb guard)."""


class ModelError(MaskwatchError):
    """A model file is missing, corrupt or not a maskwatch model."""


class DataError(MaskwatchError):
    """A training or evaluation dataset does not have the expected layout."""


class DependencyError(MaskwatchError):
    """An optional dependency (an extra) is needed but not installed."""
