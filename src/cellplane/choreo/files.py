"""The descriptor files Choreo reads, and reading them from a checkout that is untrusted input."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

COMPONENT_YAML = ".choreo/component.yaml"
COMPONENT_CONFIG_YAML = ".choreo/component-config.yaml"
ENDPOINTS_YAML = ".choreo/endpoints.yaml"
DESCRIPTOR_FILES = (COMPONENT_YAML, COMPONENT_CONFIG_YAML, ENDPOINTS_YAML)  # Choreo's precedence order

MAX_FILE_BYTES = 1024 * 1024


def read_descriptor_files(directory: Path) -> dict[str, str]:
    """The descriptor files present under ``directory``, as ``{relative path: text}``.

    Files that cannot be trusted or read (a symlink leading outside ``directory``, anything over
    1 MiB, not a regular file, not UTF-8) are skipped and logged: a repository is untrusted input.
    """
    files, _ = read_files(Path(directory))
    return files


def read_files(directory: Path, names: tuple[str, ...] = DESCRIPTOR_FILES) -> tuple[dict[str, str], dict[str, str]]:
    """``({relative path: text}, {relative path: why it was refused})`` for the files of ``names`` present."""
    root = directory.resolve()
    files: dict[str, str] = {}
    refused: dict[str, str] = {}
    for rel in names:
        path = directory / rel
        if not os.path.lexists(path):
            continue
        try:
            text = _read_one(root, path)
        except (_Refused, OSError) as e:
            refused[rel] = str(e) if isinstance(e, _Refused) else f"cannot be read ({e.strerror})"
            log.warning("descriptor %s skipped: %s", rel, refused[rel])
            continue
        files[rel] = text
    return files, refused


class _Refused(Exception):
    """A descriptor file that is present but will not be read."""


def _read_one(root: Path, path: Path) -> str:
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise _Refused("is a broken symlink or cannot be resolved") from None
    if not resolved.is_relative_to(root):
        raise _Refused("is a symlink pointing outside the repository")
    # O_NONBLOCK so that a FIFO planted in the repository cannot hang the import.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(resolved, flags)
    except OSError as e:
        raise _Refused(f"cannot be opened ({e.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Refused("is not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise _Refused("is larger than 1 MiB")
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:  # grew since fstat
        raise _Refused("is larger than 1 MiB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _Refused("is not UTF-8 text") from None
