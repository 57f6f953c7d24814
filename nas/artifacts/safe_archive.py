"""Unpack a run archive that came from elsewhere (a cluster's job folder) without trusting it.

``tarfile``'s extraction filters are not relied on for safety: on Python 3.11.7 the ``data``
filter has the CVE-2025-4517 realpath bypass, and later bypasses were reported too. Instead
every member is checked here before anything is written, and only what passes is written, by
this module, as plain directories and plain files:

- regular files and directories only (no symbolic or hard links, devices, FIFOs, sparse files);
- relative names with no ``..``, no empty, ``.``-only, NUL or backslash parts, all under one
  top directory (``run/``), which must be a directory;
- no name twice; caps on member count, per-member bytes and total bytes (checked on the bytes
  actually read, not on the sizes the headers claim).

Members are written into a fresh folder beside the destination and the top directory is then
renamed into place in one step, so a refused or broken archive leaves the destination as it
was. A refusal raises :class:`ArchiveError`, one line naming the archive and the rule it broke.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from nas.errors import IncompatibleArtifactError

_CHUNK = 1 << 20


class ArchiveError(IncompatibleArtifactError):
    """An archive was refused: unreadable, or one member broke a rule. Nothing was written."""


@dataclass(frozen=True)
class ArchiveLimits:
    """How much one archive may unpack to. The defaults hold a run directory many times over."""

    max_members: int = 20_000
    max_member_bytes: int = 1 << 30  # 1 GiB
    max_total_bytes: int = 4 << 30  # 4 GiB

    def describe(self) -> str:
        """The caps in words, for error lines and the README.

        >>> ArchiveLimits().describe()
        'at most 20000 members, 1024 MiB per member, 4096 MiB in all'
        """
        return (
            f"at most {self.max_members} members, {self.max_member_bytes >> 20} MiB per member, "
            f"{self.max_total_bytes >> 20} MiB in all"
        )


DEFAULT_LIMITS = ArchiveLimits()


def member_parts(name: str, top: str) -> tuple[str, ...]:
    """The checked parts of a member's name, or :class:`ValueError` naming the rule it breaks.

    >>> member_parts("run/measure/latency.csv", "run")
    ('run', 'measure', 'latency.csv')
    >>> member_parts("run/../x", "run")
    Traceback (most recent call last):
    ...
    ValueError: member 'run/../x' has a '..' part
    """
    if not name or "\x00" in name or "\\" in name:
        raise ValueError(f"member {name!r} has an empty name, a NUL or a backslash")
    if name.startswith("/"):
        raise ValueError(f"member {name!r} is an absolute path")
    parts = tuple(p for p in PurePosixPath(name).parts if p != ".")
    if any(p == ".." for p in parts):
        raise ValueError(f"member {name!r} has a '..' part")
    if not parts or parts[0] != top:
        raise ValueError(f"member {name!r} is not under {top}/")
    return parts


def _check_kind(member: tarfile.TarInfo) -> None:
    if member.issym() or member.islnk():
        raise ValueError(f"member {member.name!r} is a link (links are refused)")
    if member.issparse() or not (member.isreg() or member.isdir()):
        raise ValueError(f"member {member.name!r} is not a regular file or directory")


def _copy_counted(
    source: IO[bytes], target: Path, member: str, limits: ArchiveLimits, total: int
) -> int:
    """Copy ``source`` into a new file ``target``; return the bytes (caps count real bytes)."""
    fd = os.open(
        target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644
    )
    written = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > limits.max_member_bytes:
                raise ValueError(f"member {member!r} is over {limits.max_member_bytes >> 20} MiB")
            if total + written > limits.max_total_bytes:
                raise ValueError(f"the archive unpacks to over {limits.max_total_bytes >> 20} MiB")
            out.write(chunk)
    return written


def _unpack_into(tar: tarfile.TarFile, staging: Path, top: str, limits: ArchiveLimits) -> None:
    seen: dict[tuple[str, ...], bool] = {}  # parts -> is a directory
    total = 0
    count = 0
    while (member := tar.next()) is not None:
        count += 1
        if count > limits.max_members:
            raise ValueError(f"the archive has over {limits.max_members} members")
        parts = member_parts(member.name, top)
        _check_kind(member)
        if parts in seen:
            raise ValueError(f"member {member.name!r} appears twice")
        if len(parts) == 1 and not member.isdir():
            raise ValueError(f"{top} is not a directory")
        for depth in range(1, len(parts)):
            if seen.get(parts[:depth]) is False:
                raise ValueError(f"member {member.name!r} is under a file")
        target = staging.joinpath(*parts)
        if os.path.commonpath([staging, target]) != str(staging):  # belt and braces
            raise ValueError(f"member {member.name!r} resolves outside the destination")
        seen[parts] = member.isdir()
        if member.isdir():
            target.mkdir(mode=0o755, parents=True, exist_ok=True)
            continue
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if member.size > limits.max_member_bytes:
            raise ValueError(f"member {member.name!r} is over {limits.max_member_bytes >> 20} MiB")
        source = tar.extractfile(member)
        if source is None:  # pragma: no cover - isreg() members always have data
            raise ValueError(f"member {member.name!r} has no data")
        with source:
            total += _copy_counted(source, target, member.name, limits, total)
    if (top,) not in seen:
        raise ValueError(f"the archive holds no {top}/ directory")


def unpack_archive(
    archive: str | Path,
    destination: str | Path,
    *,
    top: str = "run",
    limits: ArchiveLimits = DEFAULT_LIMITS,
    label: str | None = None,
) -> Path:
    """Unpack ``top/`` of the gzip tar ``archive`` as ``destination``; all or nothing.

    ``destination`` must not exist, or be an empty directory (it is replaced in one rename).
    Raises :class:`ArchiveError` (one line: archive, or ``label`` when given, and the rule) and
    leaves ``destination`` as it was.
    """
    archive, destination = Path(archive), Path(destination)
    name = label or str(archive)
    if destination.is_symlink() or (destination.exists() and not destination.is_dir()):
        raise ArchiveError(f"{destination}: the destination is a link or a file, not a directory")
    if destination.is_dir() and any(destination.iterdir()):
        raise ArchiveError(f"{destination}: the destination is not empty")
    parent = destination.parent.resolve()
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{destination.name}.unpacking-"))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                _unpack_into(tar, staging, top, limits)
        except ValueError as exc:  # a rule broken (tarfile's own errors are not ValueErrors)
            raise ArchiveError(f"{name}: refused: {exc}") from None
        except (tarfile.TarError, zlib.error, EOFError) as exc:
            raise ArchiveError(
                f"{name}: not a readable gzip tar archive ({type(exc).__name__}: {exc})"
            ) from None
        except OSError as exc:
            raise ArchiveError(f"{name}: could not be unpacked ({exc})") from None
        os.rename(staging / top, parent / destination.name)  # replaces an empty directory
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return parent / destination.name


__all__ = ["DEFAULT_LIMITS", "ArchiveError", "ArchiveLimits", "member_parts", "unpack_archive"]
