"""`--checkpoint-every-seconds auto`: the interval between saves chosen from what a save costs and how often
the run dies without warning (Young 1974, Daly 2006: the interval sqrt(2·C·M) minimises the time lost to saves
and to recomputation after deaths).

- C, the cost of a save: what training waits for while it is taken plus its background write (load on a
  possibly shared filesystem), as measured by this run's saves (a moving average);
- M, the mean time between unannounced deaths: the run's process-seconds over its deaths outright (SIGKILL,
  the OOM killer, a node failure: a start whose ledger does not say how it ended); until one is observed, the
  prior: the SLURM job's time limit, or PRIOR_SECONDS outside SLURM;
- bounds: never more often than C / MAX_COST_SHARE (saves take at most 1% of the time) nor than
  MIN_SECONDS, never less often than MAX_SECONDS (the fixed default before auto). Until a save was measured,
  the first one comes after MIN_SECONDS, to measure it.
Epoch ends keep their own save."""
import math

AUTO = "auto"
MIN_SECONDS = 1.0
MAX_SECONDS = 600.0
MAX_COST_SHARE = 0.01
PRIOR_SECONDS = 3600.0  # the mean time between deaths assumed outside SLURM until one is observed
SMOOTHING = 0.5  # weight of the newest save's cost in the moving average


def young_daly(cost: float, mtbf: float) -> float:
    return math.sqrt(2 * cost * mtbf)


def bounded_interval(cost: float | None, mtbf: float) -> float:
    if not cost:
        return MIN_SECONDS
    return min(max(young_daly(cost, mtbf), cost / MAX_COST_SHARE, MIN_SECONDS), MAX_SECONDS)


class AutoCadence:
    """The interval in use, updated by every save's measured cost and the run's death history."""

    def __init__(self, earlier_seconds: float, deaths: int, cost: float | None, prior_seconds: float | None):
        self.earlier_seconds, self.deaths, self.cost = earlier_seconds, deaths, cost
        self.prior = prior_seconds or PRIOR_SECONDS

    def mtbf(self, seconds_now: float) -> float:
        """Observed once a death was; the prior until then (or the run's whole time, when that is longer)."""
        lived = self.earlier_seconds + seconds_now
        return lived / self.deaths if self.deaths else max(self.prior, lived)

    def measured(self, cost: float) -> None:
        """A save's cost: what training waited for plus what its write took."""
        self.cost = cost if self.cost is None else SMOOTHING * cost + (1 - SMOOTHING) * self.cost

    def interval(self, seconds_now: float) -> float:
        return bounded_interval(self.cost, self.mtbf(seconds_now))
