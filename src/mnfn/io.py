"""Small I/O helpers shared by data, checkpoints and results: atomic writes and safe loads.

Every file the project writes goes through a temporary file in the same folder and ``os.replace``,
so a killed job never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import re
import signal
import sys
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np
import torch

__all__ = ["STOP_ENV", "WriteError", "npz_shapes", "atomic_path", "atomic_open", "write_json", "read_json", "save_npz", "load_npz",
           "save_torch", "load_torch", "save_png", "DataFormatError"]


class DataFormatError(ValueError):
    """A file the project reads is missing, truncated or malformed; the message names the file."""


class WriteError(OSError):
    """A file could not be written (full disk, quota, I/O error); the message names the file."""

    def __str__(self) -> str:
        return str(self.strerror)


def _umask() -> int:
    old = os.umask(0)  # the only portable way to read it; set back at once
    os.umask(old)
    return old


#: Test hook of the kill tests (tests/test_faults_kill.py): ``MNFN_STOP_BEFORE_RENAME="PATTERN:N"`` makes
#: a process stop itself (``SIGSTOP``) right before its N-th rename onto a final file whose name
#: matches the glob ``PATTERN`` (the temporary file is complete, the final name not yet written),
#: after printing ``mnfn: stopped before renaming ... onto PATH`` to stderr. A killer that sees the
#: line then ``SIGKILL``s it at exactly that point: kills land on progress, not on timing guesses.
#: Unset (always, outside those tests) it costs one environment lookup per written file.
STOP_ENV = "MNFN_STOP_BEFORE_RENAME"
_stop_counts: dict[str, int] = {}


def _stop_point(path: Path) -> None:
    spec = os.environ.get(STOP_ENV)
    if not spec:
        return
    pattern, _, n = spec.rpartition(":")
    if not fnmatch.fnmatch(path.name, pattern):
        return
    _stop_counts[spec] = _stop_counts.get(spec, 0) + 1
    if _stop_counts[spec] == int(n):
        sys.stderr.write(f"mnfn: stopped before renaming #{n} matching {pattern!r} onto {path}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSTOP)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, else removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
        except OSError as exc:  # a full disk, a quota, an I/O error: say which file could not be written
            detail = exc.strerror or str(exc) or type(exc).__name__
            raise WriteError(exc.errno, f"cannot write {path}: {detail}"
                             + ("" if exc.errno else " (disk full?)")) from None
        except RuntimeError as exc:  # torch.save reports a failed write as "[enforce fail at inline_container.cc]"
            if "file write failed" not in str(exc) and "inline_container" not in str(exc):
                raise
            raise WriteError(errno.EIO, f"cannot write {path}: the write failed (disk full?)") from None
        # mkstemp makes the file 0600; give it the mode a plain open() would (0666 minus the umask)
        os.chmod(tmp_path, 0o666 & ~_umask())
        _stop_point(path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """``open`` that writes to a temporary file and renames it onto ``path`` when the block succeeds."""
    with atomic_path(path) as tmp:
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def save_png(fig: Any, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Lay out a matplotlib figure, write it atomically as a PNG (parent folders created) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return path


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=_json_default)
        fh.write("\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


#: The largest JSON file read (metadata and results are kilobytes to a few megabytes).
MAX_JSON_BYTES = 64 << 20


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; missing, oversized (:data:`MAX_JSON_BYTES`), malformed or absurdly nested
    files raise :class:`DataFormatError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"{path}: file not found")
    try:
        if path.is_file() and path.stat().st_size > MAX_JSON_BYTES:
            raise DataFormatError(f"{path}: {path.stat().st_size:,} bytes, more than the {MAX_JSON_BYTES:,} "
                                  "a metadata file may have")
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise DataFormatError(f"{path}: JSON nested too deeply to read") from None
    except (UnicodeDecodeError, OSError) as exc:  # binary garbage, a folder, no permission
        raise DataFormatError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Atomically write an uncompressed ``.npz`` (read back with ``allow_pickle=False``)."""
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_npz(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read an ``.npz`` without unpickling; missing/truncated files and missing keys name the file."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile.BadZipFile, ValueError (object arrays), EOFError, OSError ...
        raise DataFormatError(f"{path}: cannot read npz ({type(exc).__name__}: {exc}); truncated or corrupt?") from None
    missing = [k for k in required if k not in out]
    if missing:
        raise DataFormatError(f"{path}: missing arrays {missing} (has {sorted(out)})")
    return out


def npz_shapes(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array of an ``.npz`` from its member headers alone: nothing is
    decompressed or allocated, so a reader can refuse an oversized or misshapen file first."""
    import zipfile

    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"{path}: file not found")
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(fh)  # the header only
                out[info.filename[:-4]] = (tuple(int(d) for d in shape), dtype)
    except Exception as exc:  # BadZipFile, ValueError (bad magic/header), EOFError, OSError
        raise DataFormatError(f"{path}: cannot read npz headers ({type(exc).__name__}: {exc}); "
                              "truncated or corrupt?") from None
    return out


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """Atomically ``torch.save`` (tensors, numbers, strings, dicts, lists only: loadable with weights_only)."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)``: never unpickles arbitrary objects; errors name the file."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"{path}: file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        text = str(exc)
        # torch's text advises re-running with weights_only=False, which would run the file's code:
        # keep only its diagnosis
        glob = re.search(r"Unsupported global: (?:GLOBAL )?([^\s]+)", text)
        if glob:
            raise DataFormatError(f"{path}: refused: it holds a pickled Python object ({glob.group(1)}), not only "
                                  "tensors and plain containers; mnfn never unpickles code") from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        first = detail.group(1).strip()[:200] if detail else (text.splitlines() or [""])[0][:200]
        raise DataFormatError(f"{path}: cannot load ({type(exc).__name__}: {first}); "
                              "truncated, corrupt or not a weights-only torch file?") from None
