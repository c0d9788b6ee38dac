"""Atomic writes: fsync'd, never half a file after a crash, hidden temp files cleaned, disk errors one line.

The crash is real (a subprocess killed with SIGKILL in the middle of a write); the full disk is a real
tmpfs of 64 KiB when this machine lets us mount one, and ``/dev/full`` otherwise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from lte.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    check_writable,
    clean_leftovers,
    write_error,
)
from lte.errors import UserError


def mount_tmpfs(path: Path, options: str) -> None:
    """Mount a tmpfs on ``path`` or skip the test (needs root and a kernel that allows it)."""
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or 'not permitted'})")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB file system."""
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=64k")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "ro"
    mount_tmpfs(disk, "ro,size=64k")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_write_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    atomic_write_text(target, "old\n")
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
    mode = target.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_file_and_folder_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Record what os.fsync is called on (the real fsync still runs)."""
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    target = tmp_path / "ckpt.pth"
    atomic_write_bytes(target, b"weights")
    assert len(synced) == 2
    temp, folder = (Path(p) for p in synced)
    assert temp.parent == tmp_path and temp.name.startswith(".ckpt.pth.")  # the file, pre-rename
    assert folder == tmp_path  # the rename itself


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from lte.atomic import atomic_path
    with atomic_path(sys.argv[1]) as tmp, open(tmp, "wb") as f:
        f.write(b"x" * 100000)
        f.flush()
        print("writing", flush=True)
        time.sleep(600)
    """
)


@pytest.mark.parametrize("old", [None, "old content"])
def test_sigkill_mid_write_leaves_old_or_nothing(tmp_path: Path, old: str | None) -> None:
    target = tmp_path / "photo_x2.png"
    if old is not None:
        target.write_text(old)
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    if old is None:
        assert not target.exists()
    else:
        assert target.read_text() == old
    # The killed writer's temp file is hidden (listings that skip dot files never see it) ...
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".photo_x2.png.lte-")
    assert leftovers[0].stat().st_size == 100000
    # ... and the next write to the same file removes it: its process is gone.
    atomic_write_text(target, "new")
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    assert target.read_text() == "new"


def test_temp_files_of_live_writers_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"in progress")
        # Another write to the same file meanwhile (this process is alive): our temp file stays.
        assert clean_leftovers(target) == []
        assert tmp.exists()
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    dead_pid = int(done.stdout)
    stale = tmp_path / f".out.png.lte-{dead_pid}-{tmp.name.split('-')[2]}-abcd1234.tmp"
    stale.write_bytes(b"left by a killed process")
    other = tmp_path / ".out.png.lte-1-ffffff-abcd1234.tmp"  # another machine (shared file system)
    other.write_bytes(b"maybe still writing")
    assert clean_leftovers(target) == [stale]
    assert other.exists()


def test_long_names_fit_and_too_long_names_are_one_line(tmp_path: Path) -> None:
    name = "a" * 250 + ".png"  # legal (254 bytes), but name + temp suffix would not be
    atomic_write_bytes(tmp_path / name, b"ok")
    assert (tmp_path / name).read_bytes() == b"ok"
    too_long = tmp_path / ("b" * 300 + ".png")
    for write in (lambda: atomic_write_bytes(too_long, b"x"), lambda: check_writable(too_long)):
        with pytest.raises(UserError, match="name is too long"):
            write()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_folder_as_target_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="is a folder"):
        atomic_write_text(tmp_path / "out", "x")
    with pytest.raises(UserError, match="does not exist"):
        atomic_write_text(tmp_path / "missing" / "x.txt", "x")


def test_dev_full_write_error_is_disk_full() -> None:
    with pytest.raises(OSError) as info, open("/dev/full", "wb") as f:
        f.write(b"x" * 10)
        f.flush()
    user = write_error(info.value, "/dev/full")
    assert user is not None and "disk is full" in str(user) and "/dev/full" in str(user)


def test_full_disk_keeps_old_file_and_no_temp(small_disk: Path) -> None:
    target = small_disk / "results.csv"
    atomic_write_text(target, "old")
    with pytest.raises(UserError, match="disk is full") as info:
        atomic_write_bytes(target, b"x" * 200_000)
    assert str(target) in str(info.value)
    assert target.read_text() == "old"
    assert [p.name for p in small_disk.iterdir()] == ["results.csv"]


def test_read_only_folder_is_one_line(read_only_disk: Path) -> None:
    for write in (
        lambda: atomic_write_text(read_only_disk / "x.txt", "x"),
        lambda: check_writable(read_only_disk / "x.txt"),
    ):
        with pytest.raises(UserError, match="read-only"):
            write()
