"""What a person watching a run sees: a phase's progress bar (tokens, tokens/s, ETA) and, in a
step long enough to wonder about, the micro-batches it has done."""

from __future__ import annotations

import sys
import threading
from time import monotonic, sleep  # the life watch's clock, apart from the speed's

from tqdm import tqdm

LIFE_SECONDS = 5.0  # a step running longer than this reports its micro-batches, every this often


class StepLife:
    """Shows life in a long step: once a step has run `LIFE_SECONDS`, and every `LIFE_SECONDS`
    after, the micro-batches it has done (on the bar, or in a line under --no-progress). A
    forward pre-hook counts them (outside the step); a watcher thread, alive while steps run,
    speaks up inside one long micro-batch too."""

    def __init__(self, phase: str, bar, main: bool):
        self.phase, self.bar, self.main = phase, bar, main
        self.step = None  # None: between steps (held-out evaluation is not counted)
        self.lock, self.watcher = threading.Lock(), None

    def begin(self, step: int, total: int) -> None:
        with self.lock:
            self.step, self.total, self.done = step, total, -1
            self.began = self.said = monotonic()
            if self.main and self.watcher is None:
                self.watcher = threading.Thread(target=self._watch, daemon=True)
                self.watcher.start()

    def end(self) -> None:
        with self.lock:
            self.step = None

    def __call__(self, module, args) -> None:
        if self.step is not None:
            self.done += 1  # a micro-batch begins: the ones before it are done
            self._say()

    def _watch(self) -> None:
        while True:
            sleep(max(0.05, LIFE_SECONDS / 2))
            with self.lock:
                if self.step is None:  # between steps, or the run stopped: the next step starts another
                    self.watcher = None
                    return
            self._say()

    def _say(self) -> None:
        with self.lock:
            now = monotonic()
            if not self.main or self.step is None or now - self.said < LIFE_SECONDS:
                return
            self.said = now
            done = f"{max(self.done, 0)}/{self.total} micro-batches"
            if self.bar is not None:
                self.bar.set_postfix_str(f"step {self.step}: {done}")
            else:
                print(f"twofold: {self.phase} step {self.step}: {done} done, {now - self.began:.0f} s into the step",
                      file=sys.stderr, flush=True)


def phase_bar(name: str, tokens: int, done: int, enabled: bool) -> tqdm | None:
    """The phase's bar in tokens (tqdm shows tokens/s and the ETA), or None when not shown."""
    if not enabled:
        return None
    return tqdm(total=tokens, initial=done, unit="tok", unit_scale=True, desc=name, dynamic_ncols=True)
