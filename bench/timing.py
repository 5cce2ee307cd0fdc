"""Not a benchmark: the wall and CPU clock the analysis benchmarks share."""

from __future__ import annotations

import time


class Timer:
    """`with Timer() as t:` then t.wall and t.cpu, in seconds (CPU: this process, time.process_time)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def __str__(self) -> str:
        return f"{self.wall:7.2f} s wall, {self.cpu:7.2f} s CPU"
