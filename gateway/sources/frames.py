"""The statistics frames a source keeps between queries, as Arrow files OpenDP scans.

Owns: ``FrameCache``, at most ``entries`` frames per source, keyed by dataset
and column *set* (a query naming the same columns in another order reuses the
frame). Each frame carries a stamp (load time, file version) that ``fresh``
judges; stale frames are dropped whenever one is stored, and past ``entries``
the least recently used goes, so requesters varying their columns cannot make
a source hold one frame per combination.

A frame is kept as uncompressed Arrow IPC files (one folder a frame, each
file about ``Limits.source_frame_file_rows`` rows, written as the source's
batches arrive, so the whole frame is never in this process's memory),
written once and never changed, and handed out as a lazy scan of them. OpenDP runs its own Polars:
given a frame held in this process's memory it serialises every row across
its boundary on each query (about four times the query's own cost at a
million rows), while a scan only names the file, which it maps. The files live
in one private folder per process (mode 0700), on ``/dev/shm`` where there is
one (memory, never a disk), removed when the process exits; folders that
gateway processes killed before they could remove them are removed by the
next one to start. A replaced frame's files are deleted only
``Limits.source_frame_file_grace_seconds`` later, so a query already scanning
it finishes on the data it started with.

Does not own: loading frames (each source), deciding freshness (each source's
``fresh``).
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

_PREFIX = "gateway-frames-"
_DIR: Path | None = None
_DIR_LOCK = threading.Lock()
_NAMES = itertools.count()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_orphans(base: Path) -> None:
    """Frame folders of this user's gateway processes that are gone."""
    pattern = re.compile(rf"{re.escape(_PREFIX)}(\d+)-")
    try:
        entries = list(base.iterdir())
    except OSError:
        return
    for entry in entries:
        m = pattern.match(entry.name)
        try:
            if m and entry.stat().st_uid == os.getuid() and not _alive(int(m.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def frame_dir() -> Path:
    """This process's private folder of frame files (made on first use)."""
    global _DIR
    with _DIR_LOCK:
        if _DIR is None:
            shm = Path("/dev/shm")  # noqa: S108 - only a base: mkdtemp makes a private folder
            base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
            _remove_orphans(base)
            _DIR = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=base))
            atexit.register(shutil.rmtree, _DIR, True)
        return _DIR


class FrameCache:
    """A source's statistics frames (see the module docstring)."""

    def __init__(
        self,
        entries: int,
        grace_seconds: float,
        rows_per_file: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries = entries
        self._grace = grace_seconds
        self._rows_per_file = rows_per_file
        self._clock = clock
        self._frames: OrderedDict[tuple[str, frozenset[str]], tuple[object, Path]] = OrderedDict()
        self._retired: list[tuple[float, Path]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._frames)

    def get(
        self, dataset: str, cols: Sequence[str], fresh: Callable[[object], bool]
    ) -> pl.LazyFrame | None:
        """The cached frame of ``cols`` (in that order) if its stamp is still fresh."""
        key = (dataset, frozenset(cols))
        with self._lock:
            cached = self._frames.get(key)
            if cached is None or not fresh(cached[0]):
                return None
            self._frames.move_to_end(key)
        return _scan(cached[1], cols)

    def put(
        self,
        dataset: str,
        cols: Sequence[str],
        stamp: object,
        parts: Iterable[pl.DataFrame],
        fresh: Callable[[object], bool],
    ) -> pl.LazyFrame:
        """Keep the frame of ``cols`` arriving as ``parts`` under ``stamp``; the
        frame to use. The parts are written as they arrive, about
        ``rows_per_file`` rows to a file, so no more than that is in memory."""
        folder = frame_dir() / str(next(_NAMES))
        part = folder.with_suffix(".part")
        part.mkdir()
        try:
            names = [f.name for f in _write(part, parts, self._rows_per_file)]
            os.replace(part, folder)  # a scan never sees a frame being written
        except BaseException:
            shutil.rmtree(part, ignore_errors=True)
            raise
        with self._lock:
            for key in [k for k, (s, _) in self._frames.items() if not fresh(s)]:
                self._retire(self._frames.pop(key)[1])
            old = self._frames.pop((dataset, frozenset(cols)), None)
            if old is not None:
                self._retire(old[1])
            self._frames[(dataset, frozenset(cols))] = (stamp, folder)
            while len(self._frames) > self._entries:
                self._retire(self._frames.popitem(last=False)[1][1])
            self._sweep()
        return _scan(folder, cols, [folder / n for n in names])

    def _retire(self, folder: Path) -> None:
        self._retired.append((self._clock(), folder))

    def _sweep(self) -> None:
        now = self._clock()
        keep = []
        for at, folder in self._retired:
            if now - at >= self._grace:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                keep.append((at, folder))
        self._retired = keep

    def close(self) -> None:
        """Delete every file of this cache (the source is closed: no query runs)."""
        with self._lock:
            for _, folder in [*self._frames.values(), *self._retired]:
                shutil.rmtree(folder, ignore_errors=True)
            self._frames.clear()
            self._retired.clear()


def _write(folder: Path, parts: Iterable[pl.DataFrame], rows_per_file: int) -> list[Path]:
    """``parts`` as Arrow files in ``folder``, about ``rows_per_file`` rows each."""
    import polars as pl

    files: list[Path] = []
    pending: list[pl.DataFrame] = []
    rows = 0

    def flush() -> None:
        nonlocal rows
        path = folder / f"{len(files):06d}.arrow"
        pl.concat(pending, rechunk=False).write_ipc(path, compression="uncompressed")
        files.append(path)
        pending.clear()
        rows = 0

    for part in parts:
        pending.append(part)
        rows += part.height
        if rows >= rows_per_file:
            flush()
    if pending:
        flush()
    if not files:  # a frame needs its schema: sources yield at least one (empty) part
        raise ValueError("a frame needs at least one part")
    return files


def _scan(folder: Path, cols: Sequence[str], files: Sequence[Path] = ()) -> pl.LazyFrame:
    import polars as pl

    paths = list(files) or sorted(folder.glob("*.arrow"))
    return pl.scan_ipc(paths).select(list(cols))
