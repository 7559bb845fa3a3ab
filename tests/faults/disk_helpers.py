"""A real small filesystem for disk-full tests (tmpfs, root and mount(8) needed), and filling it."""

import os
import subprocess

import pytest


def mount_tmpfs(mount_point, size, why_skip):
    """Mount a tmpfs of `size` (e.g. "8m") on `mount_point` (created); skips the test with `why_skip`
    where that is not possible. Returns the unmount function."""
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs; " + why_skip)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here ({}); {}".format(proc.stderr.strip(), why_skip))
    return lambda: subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder, chunk=65536):
    """Write a file into `folder` until the filesystem is full; returns its path (unlink it to free)."""
    path = folder / "filler"
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * chunk):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return path
