"""Exceptions that say which file and which entry is wrong, so a bad input is fixed, not guessed at.

Notebooks: 01 teaches it; 02 uses it.
"""
from __future__ import annotations


class DataError(ValueError):
    """Bad input data. The message names the file (and the entry or index) it is about."""


class BBoxFormatError(DataError):
    """``bbox.json`` is malformed: not JSON, not an object of name -> list of boxes, or a bad box."""


class ImageReadError(DataError):
    """An image could not be read: missing, empty, truncated, not an image, or a format we do not open."""
