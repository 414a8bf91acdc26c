"""The two errors a user of the zoo meets, as opposed to bugs.

A ``UserError`` says what is wrong with something the user gave (a flag, a file, a value, an
environment) and how to put it right, naming the flag or the file and line. The recipes print it
as one line and exit with status 2; a traceback is kept for bugs. ``CheckpointError`` is the
``UserError`` of checkpoints and releases: missing, corrupted, tampered with, of another method or
size, or naming code that is not trusted.

Both subclass ``ValueError``, which is what Python code raises for a bad value.
"""
from __future__ import annotations


class UserError(ValueError):
    """Something the user gave is wrong; the message names it and says how to fix it."""


class CheckpointError(UserError):
    """A release or checkpoint file is missing, corrupted, or does not match its model."""
