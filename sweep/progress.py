"""One live line per stage: items done of the total, rate, time left, and a short note ("best mean objective
0.12"). A terminal gets a tqdm bar that redraws in place; anything else (a log file, CI, a pipe) gets a plain
line every `every_s` seconds and one at the end, so a log holds a readable history instead of carriage returns."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm


class Progress:
    def __init__(self, stage: str, total: int, unit: str, stream: TextIO | None = None, every_s: float = 30.0) -> None:
        self.stage, self.total, self.unit, self.done, self.note = stage, total, unit, 0, ""
        self._stream = stream or sys.stderr
        self._every_s, self._started = every_s, time.monotonic()
        self._last_line, self._printed = self._started, -1
        self._bar = (tqdm(total=total, desc=stage, unit=f" {unit}", file=self._stream, dynamic_ncols=True,
                          bar_format="{desc} {n_fmt}/{total_fmt}{unit} · {rate_fmt} · {postfix} ETA {remaining}")
                     if self._stream.isatty() else None)

    def update(self, n: int = 1, note: str | None = None) -> None:
        self.done += n
        if note is not None:
            self.note = note
        if self._bar is not None:
            self._bar.set_postfix_str(self.note, refresh=False)
            self._bar.update(n)
        elif time.monotonic() - self._last_line >= self._every_s:
            self._print()

    def line(self) -> str:
        """The plain line: 'tune 312/520 trials · 5.1/s · best mean objective 0.12 · ETA 0:41'."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self.done / elapsed
        left = tqdm.format_interval((self.total - self.done) / rate) if rate > 0 else "?"
        note = f" · {self.note}" if self.note else ""
        return f"{self.stage} {self.done}/{self.total} {self.unit} · {rate:.1f}/s{note} · ETA {left}"

    def _print(self) -> None:
        print(self.line(), file=self._stream, flush=True)
        self._last_line, self._printed = time.monotonic(), self.done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._printed != self.done:
            self._print()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
