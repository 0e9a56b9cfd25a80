"""Per-process CPU time, context switches and RSS, read from /proc (Linux).

CPU is the process's own user + system time (``/proc/<pid>/stat`` fields
utime and stime, all threads, in clock ticks). Context switches are summed
over the process's threads (``/proc/<pid>/task/*/status``: the process's own
``status`` counts only its main thread). RSS is ``VmRSS``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    cpu_s: float
    voluntary: int
    involuntary: int

    def __sub__(self, other: Sample) -> Sample:
        return Sample(
            self.cpu_s - other.cpu_s,
            self.voluntary - other.voluntary,
            self.involuntary - other.involuntary,
        )

    @property
    def switches(self) -> int:
        return self.voluntary + self.involuntary


def cpu_seconds(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICK


def _status_fields(path: Path, *names: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in names:
                out[key] = int(value.split()[0])
    except OSError:  # a thread that ended between listing and reading
        pass
    return out


def sample(pid: int) -> Sample:
    vol = invol = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        f = _status_fields(task / "status", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
        vol += f.get("voluntary_ctxt_switches", 0)
        invol += f.get("nonvoluntary_ctxt_switches", 0)
    return Sample(cpu_seconds(pid), vol, invol)


def rss_bytes(pid: int) -> int:
    return _status_fields(Path(f"/proc/{pid}/status"), "VmRSS").get("VmRSS", 0) * 1024
