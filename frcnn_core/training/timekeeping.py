"""A run that ends with its time budget: how many iterations fit, when to validate, when to stop.

The budget is wall time from the start of `train()` (model building, data reading, validation
and checkpoints included), so that a run given N minutes returns within N minutes. The number of
iterations is not known in advance: after PROBE_ITERATIONS the clock measures the time of one
iteration (median of the recent ones) and plans the total so that training, the validations
still due and the final save fit in what is left; it plans again after every iteration, so the
plan follows the time actually left (validations, checkpoints, a busy machine). The
learning-rate schedule (warm-up, then cosine to 0) follows the current plan, so it ends with the
budget. Resuming continues the same budget: the time already spent travels in the checkpoint.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass

PROBE_ITERATIONS = 8  # measured before the first plan (the first two, slower, are left out)
VALIDATIONS = 10  # validations over a whole budget at most, the last at its end
VALIDATION_SHARE = 0.15  # of the budget, at most, spent validating (fewer validations when they are slow)
FINAL_SAVE_S = 5.0  # kept for writing last.pt and final.pt
SPEED_WINDOW = 20  # iterations the speed is measured over


@dataclass
class BudgetState:
    """What a resumed run needs to go on with the same plan (saved in last.pt)."""

    spent_s: float = 0.0  # wall time already spent by earlier sessions of the run
    total: int = 0  # the planned iterations (0: not planned yet)
    validations_done: int = 0


class Clock:
    """The budget of one run session. `budget_s`: the whole run's seconds; `state`: as saved."""

    def __init__(self, budget_s: float, state: BudgetState | None = None, warmup_iters: int = 50):
        self.budget_s = budget_s
        self.state = state or BudgetState()
        self.warmup_iters = warmup_iters
        self._started = time.monotonic()
        self._iteration_s: list[float] = []
        self._validation_s: list[float] = []
        self._last_tick: float | None = None
        self.stop_requested = False  # set to end the run early (a plateau)

    # -- time --------------------------------------------------------------------------------

    def spent(self) -> float:
        """Seconds spent by the whole run so far."""
        return self.state.spent_s + time.monotonic() - self._started

    def left(self) -> float:
        return self.budget_s - self.spent()

    def iteration_done(self) -> None:
        """Call after each optimizer step: measures the iteration's time."""
        now = time.monotonic()
        if self._last_tick is not None:
            self._iteration_s = (self._iteration_s + [now - self._last_tick])[-SPEED_WINDOW:]
        self._last_tick = now

    def validation_took(self, seconds: float) -> None:
        self._validation_s.append(seconds)
        self._last_tick = None  # the next iteration's time does not include the validation
        self.state.validations_done += 1

    def seconds_per_iteration(self) -> float | None:
        measured = self._iteration_s[2:] if len(self._iteration_s) > PROBE_ITERATIONS else self._iteration_s
        return statistics.median(measured) if len(measured) >= PROBE_ITERATIONS - 2 else None

    # -- the plan ----------------------------------------------------------------------------

    def validations(self) -> int:
        """Validations over the whole budget: VALIDATIONS, fewer (at least 2) when one takes more
        than VALIDATION_SHARE / VALIDATIONS of the budget."""
        if not self._validation_s:
            return VALIDATIONS
        affordable = math.floor(VALIDATION_SHARE * self.budget_s / max(statistics.median(self._validation_s), 1e-3))
        return min(VALIDATIONS, max(2, affordable))

    def validation_due(self, iteration: int) -> bool:
        """True when the share of the budget spent has passed the next of `validations()` even
        steps, once the warm-up is over (a model still warming up has nothing to show)."""
        if not self.state.total or iteration < self.warmup(self.state.total):
            return False
        return self.spent() >= self.budget_s * (self.state.validations_done + 1) / self.validations() - self._reserve()

    def warmup(self, total: int) -> int:
        """The warm-up's iterations: `warmup_iters`, at most a tenth of the planned total."""
        return min(self.warmup_iters, max(total // 10, 1))

    def _reserve(self) -> float:
        """Seconds to keep for what follows the last iteration: a validation and the final save."""
        validation = statistics.median(self._validation_s) if self._validation_s else 0.0
        return validation + FINAL_SAVE_S

    def plan(self, iteration: int) -> int:
        """The total iterations that fit (at least `iteration`), from the measured speed; the
        current plan (0: none yet) while the speed is not measured."""
        per_iteration = self.seconds_per_iteration()
        if per_iteration is None:
            return self.state.total
        validation = statistics.median(self._validation_s) if self._validation_s else 0.0
        validations_left = max(self.validations() - self.state.validations_done - 1, 0)
        training_s = self.left() - self._reserve() - validations_left * validation
        self.state.total = max(iteration, iteration + math.floor(max(training_s, 0.0) / per_iteration))
        return self.state.total

    def time_is_up(self, iteration: int) -> bool:
        """True when one more iteration would not fit before the reserve, or the plan is done and
        planning again (with the latest speed) adds no iteration."""
        if self.left() - self._reserve() < (self.seconds_per_iteration() or 0.0):
            return True
        if self.state.total and iteration >= self.state.total:
            return self.plan(iteration) <= iteration
        return False

    def lr_factor(self, iteration: int) -> float:
        """Linear warm-up from 0.001 over the warm-up, then cosine to 0 at the planned total."""
        warmup = self.warmup(self.state.total) if self.state.total else self.warmup_iters
        warm = 1.0 if iteration >= warmup else 0.001 + (1 - 0.001) * iteration / max(warmup, 1)
        if not self.state.total:
            return warm
        return warm * 0.5 * (1 + math.cos(math.pi * min(iteration, self.state.total) / self.state.total))

    def to_dict(self) -> dict:
        return {**asdict(self.state), "spent_s": self.spent()}
