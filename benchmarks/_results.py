"""Write one benchmark's section of benchmarks/RESULTS.md, leaving the other sections alone.

Each benchmark owns the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; the
section starts with the machine, the date and the command that made it.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
_TITLE = "# Benchmark results\n\nEach section is rewritten by the script named in it.\n"


def spaced_times(fn, repeats: int, pause: float) -> list[float]:
    """Seconds of `repeats` calls of `fn` after one warm-up, each after `pause` seconds idle
    (the OpenMP workers of the previous call stop spinning)."""
    fn()
    times = []
    for _ in range(repeats):
        time.sleep(pause)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def machine() -> str:
    """CPU model and core count, as lscpu reports them where it exists."""
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            line.split(":", 1)[1].strip() for line in out.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"


def write_section(name: str, title: str, body: str, *, stamp: bool = True) -> None:
    """Replace the section `name` of RESULTS.md with `title` and `body`.

    With `stamp`, the machine, the date and the command come first; a benchmark that writes
    a richer line of its own (threads, load) passes ``stamp=False``.
    """
    header = f"## {title}\n\n"
    if stamp:
        command = " ".join([Path(sys.executable).name, *sys.argv])
        header += (
            f"Machine: {machine()}. Date: {datetime.date.today().isoformat()}. "
            f"Command: `{command}`.\n\n"
        )
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = RESULTS.read_text() if RESULTS.exists() else _TITLE
    block = f"{start}\n{header}{body.strip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
