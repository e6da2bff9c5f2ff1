"""Writing files so that a reader never sees a half-written one."""

from __future__ import annotations

import os
import pathlib
import tempfile


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
  """Writes ``data`` (text goes out as UTF-8, newlines untouched) to a unique
  temporary file next to ``path``, flushes it to disk, then renames it over
  ``path``, keeping an existing file's permissions. On any failure the
  temporary file is removed and ``path`` is left as it was."""
  path = pathlib.Path(path)
  payload = data.encode('utf-8') if isinstance(data, str) else data
  mode = path.stat().st_mode & 0o7777 if path.exists() else None
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
    if mode is not None:
      os.chmod(tmp, mode)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
