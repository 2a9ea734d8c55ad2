"""Writing a user's output file whole or not at all: a temporary file in the same folder, renamed."""
from __future__ import annotations

import os
import tempfile


def write_atomic(path: str, data: str | bytes, prefix: str = ".lrc-") -> None:
    """Write `data` (text or bytes) to `path`; an interrupted write leaves `path` as it was."""
    d = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(dir=d, prefix=prefix)
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
