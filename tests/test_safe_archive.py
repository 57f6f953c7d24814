"""Crafted run archives: each is refused with one line and nothing is written anywhere."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from nas.artifacts.safe_archive import DEFAULT_LIMITS, ArchiveError, ArchiveLimits, unpack_archive

Builder = Callable[[tarfile.TarFile], None]


def _file(tar: tarfile.TarFile, name: str, data: bytes = b"x", size: int | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if size is None else size
    tar.addfile(info, io.BytesIO(data))


def _dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def _link(tar: tarfile.TarFile, name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    tar.addfile(info)


def _archive(path: Path, build: Builder) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    return path


def _good(tar: tarfile.TarFile) -> None:
    _dir(tar, "run")
    _dir(tar, "run/measure")
    _file(tar, "run/spec.toml", b"seed = 1\n")
    _file(tar, "run/measure/latency.csv", b"a,b\n1,2\n")


def _cve_2025_4517(tar: tarfile.TarFile) -> None:
    """The realpath-overflow shape: a deep chain of long directory names and links, then a link
    whose resolution escapes once the path passes PATH_MAX, then a write through it."""
    _dir(tar, "run")
    steps = "abcdefghijklmnopq"
    comp = "d" * 247
    path = "run"
    for step in steps:
        _dir(tar, f"{path}/{comp}")
        _link(tar, f"{path}/{step}", comp)
        path = f"{path}/{comp}"
    link_path = "run/" + "/".join(steps)
    long_link = f"{link_path}/{'l' * 254}"
    _link(tar, long_link, "../" * len(steps))
    _link(tar, "run/escape", f"{long_link}/../../sibling")
    _file(tar, "run/escape/owned.txt", b"owned")


CRAFTED: dict[str, Builder] = {
    "absolute name": lambda t: (_dir(t, "run"), _file(t, "/tmp/owned.txt")),
    "dot-dot name": lambda t: (_dir(t, "run"), _file(t, "run/../sibling/owned.txt")),
    "outside run/": lambda t: (_dir(t, "run"), _file(t, "other/x")),
    "symlink": lambda t: (_dir(t, "run"), _link(t, "run/measure", "../sibling")),
    "run is a symlink": lambda t: _link(t, "run", "sibling"),
    "hard link": lambda t: (_dir(t, "run"), _link(t, "run/h", "/etc/passwd", tarfile.LNKTYPE)),
    "device": lambda t: (_dir(t, "run"), _device(t)),
    "run is a file": lambda t: _file(t, "run", b"not a directory"),
    "no run/": lambda t: _file(t, "spec.toml"),
    "duplicate member": lambda t: (_dir(t, "run"), _file(t, "run/a"), _file(t, "run/a", b"y")),
    "file then dir": lambda t: (_dir(t, "run"), _file(t, "run/a"), _file(t, "run/a/b")),
    "backslash": lambda t: (_dir(t, "run"), _file(t, "run/..\\..\\x")),
    "CVE-2025-4517 shape": _cve_2025_4517,
}


def _device(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("run/dev")
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    tar.addfile(info)


@pytest.fixture
def place(tmp_path: Path) -> tuple[Path, Path]:
    """An output directory to unpack into and a sibling folder an attacker would aim at."""
    sibling = tmp_path / "sibling"
    sibling.mkdir()
    (sibling / "keep.txt").write_text("mine")
    return tmp_path / "out", sibling


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_a_good_archive_unpacks_as_plain_files(tmp_path: Path, place: tuple[Path, Path]) -> None:
    out, _ = place
    archive = _archive(tmp_path / "good.tar.gz", _good)
    assert unpack_archive(archive, out) == out.resolve()
    assert _tree(out) == {"spec.toml", "measure", "measure/latency.csv"}
    assert (out / "measure" / "latency.csv").read_bytes() == b"a,b\n1,2\n"


def test_an_empty_destination_directory_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    unpack_archive(_archive(tmp_path / "good.tar.gz", _good), out)
    assert (out / "spec.toml").is_file()


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_archives_are_refused_and_write_nothing(
    case: str, tmp_path: Path, place: tuple[Path, Path]
) -> None:
    out, sibling = place
    archive = _archive(tmp_path / "crafted.tar.gz", CRAFTED[case])
    before = _tree(tmp_path)
    with pytest.raises(ArchiveError) as err:
        unpack_archive(archive, out)
    message = str(err.value)
    assert "\n" not in message and str(archive) in message
    assert not out.exists() and not out.is_symlink()
    assert _tree(tmp_path) == before  # no staging folder left, nothing new anywhere
    assert _tree(sibling) == {"keep.txt"} and (sibling / "keep.txt").read_text() == "mine"
    assert not Path("/tmp/owned.txt").exists()


def test_the_rule_broken_is_named(tmp_path: Path, place: tuple[Path, Path]) -> None:
    out, _ = place
    cases = {
        "symlink": "is a link",
        "run is a file": "run is not a directory",
        "dot-dot name": "'..' part",
        "absolute name": "absolute path",
    }
    for case, rule in cases.items():
        archive = _archive(tmp_path / f"{case}.tar.gz", CRAFTED[case])
        with pytest.raises(ArchiveError, match=rule):
            unpack_archive(archive, out)


def test_a_member_over_the_cap_is_refused_on_bytes_read(
    tmp_path: Path, place: tuple[Path, Path]
) -> None:
    out, _ = place
    limits = ArchiveLimits(max_members=10, max_member_bytes=1000, max_total_bytes=1500)
    big = _archive(
        tmp_path / "big.tar.gz", lambda t: (_dir(t, "run"), _file(t, "run/b", b"0" * 2000))
    )
    with pytest.raises(ArchiveError, match="over"):
        unpack_archive(big, out, limits=limits)
    total = _archive(
        tmp_path / "total.tar.gz",
        lambda t: (_dir(t, "run"), _file(t, "run/a", b"0" * 900), _file(t, "run/b", b"0" * 900)),
    )
    with pytest.raises(ArchiveError, match="unpacks to over"):
        unpack_archive(total, out, limits=limits)
    many = _archive(
        tmp_path / "many.tar.gz",
        lambda t: [_dir(t, "run")] + [_file(t, f"run/{i}") for i in range(11)],
    )
    with pytest.raises(ArchiveError, match="over 10 members"):
        unpack_archive(many, out, limits=limits)
    assert not out.exists()


def test_a_gzip_bomb_stops_at_the_cap(tmp_path: Path, place: tuple[Path, Path]) -> None:
    """A few KB that would unpack to 64 MiB stop at a 1 MiB cap, with little written."""
    out, _ = place
    limits = ArchiveLimits(max_member_bytes=1 << 20, max_total_bytes=1 << 20)
    archive = tmp_path / "bomb.tar.gz"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        _dir(tar, "run")
        info = tarfile.TarInfo("run/zeros")
        info.size = 64 << 20
        tar.addfile(info, io.BytesIO(bytes(64 << 20)))
    archive.write_bytes(gzip.compress(raw.getvalue()))
    assert archive.stat().st_size < 200_000
    with pytest.raises(ArchiveError, match="over 1 MiB"):
        unpack_archive(archive, out, limits=limits)
    assert not out.exists()


@pytest.mark.parametrize("content", [b"", b"not gzip at all", b"\x1f\x8b\x08\x00garbage"])
def test_an_unreadable_archive_is_one_line(
    content: bytes, tmp_path: Path, place: tuple[Path, Path]
) -> None:
    out, _ = place
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(content)
    with pytest.raises(ArchiveError, match="not a readable gzip tar archive"):
        unpack_archive(archive, out)
    assert not out.exists()


def test_a_truncated_archive_leaves_nothing(tmp_path: Path, place: tuple[Path, Path]) -> None:
    out, _ = place
    whole = _archive(tmp_path / "whole.tar.gz", _good).read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ArchiveError):
        unpack_archive(cut, out)
    assert not out.exists()


def test_a_destination_that_is_a_file_or_link_is_refused(
    tmp_path: Path, place: tuple[Path, Path]
) -> None:
    out, sibling = place
    archive = _archive(tmp_path / "good.tar.gz", _good)
    os.symlink(sibling, out)
    with pytest.raises(ArchiveError, match="link or a file"):
        unpack_archive(archive, out)
    assert _tree(sibling) == {"keep.txt"}


def test_the_readme_states_the_caps_in_force() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert DEFAULT_LIMITS.describe() in " ".join(readme.split())
