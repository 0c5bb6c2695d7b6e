"""Checks that an output can be written where the user asked, made before any work starts: a
bundle, a world, an index or a results file that cannot be written must fail in one line at
once, not after an hour of encoding."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError


def check_new_folder(path: Path | str) -> Path:
    """`path` must not exist and its parent must be a writable folder (whole-or-nothing
    outputs are written beside it and renamed into place)."""
    path = Path(path)
    if path.exists():
        raise UserError(f"{path}: already exists; choose a new output folder or delete it first")
    check_writable_parent(path)
    return path


def check_writable_parent(path: Path | str) -> None:
    parent = Path(path).resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UserError(f"{path}: cannot write there (no such folder, or not writable)")


def check_writable_file(path: Path | str) -> None:
    """A file may be replaced, but not a folder, and its folder must be writable."""
    check_writable_parent(path)
    if Path(path).is_dir():
        raise UserError(f"{path}: is a folder; give a file name")
