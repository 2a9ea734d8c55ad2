"""Writing benchmark results: whole files or nothing, readable by everyone.

No third-party imports: bench/gpu_saved.py runs on machines with only numpy."""
from __future__ import annotations

import datetime
import os
import tempfile


def write_atomic(path: str, text: str | bytes) -> None:
    """Write `text` (str or bytes) to `path` through a temporary file in the same folder and a rename, so that a
    reader (or an interrupted run) never sees half a table."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def utc_stamp() -> str:
    """The time a results table was written, as every table header shows it."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
