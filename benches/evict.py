#!/usr/bin/env python3
"""Evict a tree's file pages from the page cache: posix_fadvise(DONTNEED)
on every regular file below each argument (symlinks are not followed).
This is how benches/compare.sh measures a cold cache without dropping the
caches of the whole machine. Directory and inode caches stay warm."""
import os
import sys


def evict(top):
    n = 0
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            p = os.path.join(dirpath, name)
            try:
                fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                n += 1
            except OSError:
                pass
            finally:
                os.close(fd)
    return n


if __name__ == "__main__":
    total = sum(evict(t) for t in sys.argv[1:])
    print(f"evicted {total} files", file=sys.stderr)
