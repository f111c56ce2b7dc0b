"""atomic_write: the new content appears whole, and a failure part-way leaves the old file and no temporary one."""

import os
import stat

import pytest

from atomic import atomic_write


def test_new_content_appears_whole(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    result = atomic_write(path, lambda f: (f.write(b"new "), f.write(b"content")))
    assert result == path and path.read_bytes() == b"new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_creates_a_missing_file_and_accepts_a_string_path(tmp_path):
    atomic_write(str(tmp_path / "fresh.json"), lambda f: f.write(b"{}"))
    assert (tmp_path / "fresh.json").read_bytes() == b"{}"


@pytest.mark.parametrize("error", [RuntimeError("writer crashed"), KeyboardInterrupt()])
def test_a_crash_inside_the_writer_keeps_the_old_file(tmp_path, error):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"old checkpoint")

    def write(f):
        f.write(b"half of a new checkp")
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, write)
    assert path.read_bytes() == b"old checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # the temporary file is gone


def test_a_failed_rename_keeps_the_old_file(tmp_path):
    target = tmp_path / "report.html"
    target.mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(OSError):
        atomic_write(target, lambda f: f.write(b"<html>"))
    assert target.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_a_missing_directory_is_an_oserror_with_nothing_written(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "absent" / "x", lambda f: f.write(b"x"))
    assert list(tmp_path.iterdir()) == []


def test_permissions_follow_the_umask_like_open(tmp_path):
    """Not mkstemp's 0600: a report or checkpoint stays readable to whoever could read a plainly written file."""
    atomic_write(tmp_path / "a", lambda f: f.write(b"a"))
    with open(tmp_path / "b", "wb"):
        pass
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == stat.S_IMODE(os.stat(tmp_path / "b").st_mode)
