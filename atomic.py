"""One way to write a file so that readers see the old content or the whole new one, never a part.

Checkpoints, feature-cache entries, artifacts, exported encoders and the HTML report all go through
`atomic_write`: a killed worker, a full disk or an exception half-way through leaves the previous file (or none)
and no temporary file behind. Standard library only, so that every package may import it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Write `path` whole or not at all; returns it as a Path.

    `write(f)` fills a new temporary file in the same directory (a rename across file systems would not be
    atomic), which is then flushed, fsynced and renamed over `path` with os.replace. Any exception from `write`
    or the file system removes the temporary file and propagates; `path` keeps its old content. The directory
    must exist. Concurrent writers (several Optuna workers) each get their own temporary file; the last rename
    wins, and every version a reader sees is complete.
    """
    path = Path(path)
    # A hidden, unique name opened exclusively ("x"): never another writer's file; mode 0666 & ~umask like open()
    # (tempfile.mkstemp would make the result 0600, unreadable to the others who read reports and checkpoints).
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    f = open(tmp, "xb")
    try:
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: no temporary file is left behind
        tmp.unlink(missing_ok=True)
        raise
    return path
