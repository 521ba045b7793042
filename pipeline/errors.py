"""The one error class stages turn into a one-line message and a non-zero exit: bad input a user can fix (a
file that is missing, damaged or of the wrong kind). Its message names the file, or the key."""

from __future__ import annotations


class InputError(ValueError):
    """Input that cannot be used as it is; the message says which file or key and why."""
