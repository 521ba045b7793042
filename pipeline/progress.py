"""Progress of long loops (rollouts, the update, the warm start): a tqdm bar on a terminal; elsewhere (DVC logs,
CI, files) a plain line at every tenth of the way and at the end, never carriage-return frames."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str, enabled: bool = True):
        self.total, self.desc, self.n, self.enabled = max(int(total), 0), desc, 0, enabled
        self.t0, self.shown, self.info = time.perf_counter(), 0, ""
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=desc, file=sys.stderr)

    def update(self, k: int = 1, **info) -> None:
        self.n += k
        if info:
            self.info = ", ".join(f"{key} {value}" for key, value in info.items())
        if self.bar is not None:
            self.bar.update(k)
            if info:
                self.bar.set_postfix(info)
        elif self.enabled and self.total and self.n * 10 // self.total > self.shown:
            self.shown = self.n * 10 // self.total
            self._line()

    def _line(self) -> None:
        dt = time.perf_counter() - self.t0
        rate = f", {self.n / dt:.1f}/s" if dt > 0 else ""
        extra = f", {self.info}" if self.info else ""
        print(f"{self.desc}: {self.n}/{self.total} in {dt:.1f} s{rate}{extra}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.n and self.shown < 10:
            self._line()
