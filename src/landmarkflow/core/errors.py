"""The one error type a user sees: bad input, named with its file, row or value and what was expected."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: a message that names the file, row or value and what was expected."""
