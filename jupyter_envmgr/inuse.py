"""Which revisions running kernels use: each kernel holds a shared lock on its revision's in-use file.

The kernel takes the lock when it loads the %envmgr extension and keeps it until its process ends
(the operating system releases it even after a crash), so pruning and GC, which test for an
exclusive lock, never remove a revision under a running kernel, whichever server started it.
Standard library only: this module is copied next to the magics that kernels import.
"""
import fcntl
import os
import sys

FILE = ".envmgr-in-use"
_held = []  # the open descriptor: keep it for the life of the kernel


def hold(prefix: str = sys.prefix) -> bool:
    """In a kernel: mark its revision as in use for as long as it runs."""
    try:
        fd = os.open(os.path.join(prefix, FILE), os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:
        try:
            fd = os.open(os.path.join(prefix, FILE), os.O_RDONLY)
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    try:
        os.utime(os.path.join(prefix, FILE))  # last use, for GET .../usage
    except OSError:
        pass
    _held.append(fd)
    return True


def in_use(prefix: str) -> bool:
    """Whether any kernel holds the revision at `prefix` (a failed exclusive try means yes)."""
    try:
        fd = os.open(os.path.join(prefix, FILE), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def last_used(prefix: str):
    """When a kernel last started on this revision (seconds since the epoch), or None."""
    try:
        return os.stat(os.path.join(prefix, FILE)).st_mtime
    except OSError:
        return None
