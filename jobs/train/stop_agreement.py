"""The stop agreement: at every step boundary all ranks agree whether to stop (a signal may reach one rank only)
and whether rank 0's checkpoint cadence asks for a save. One all-reduce of one integer per rank with several
processes; nothing to agree on with one."""
from jobs.distributed.ranks import Ranks
from jobs.signals import StopFlag

# The stop signals by precedence, when ranks received different ones: TERM (SLURM cancels or preempts: it
# decides about the requeue) over USR2 (the time-limit warning: requeue) over INT.
SIGNAL_CODES = {"SIGINT": 1, "SIGUSR2": 2, "SIGTERM": 3}
SIGNAL_NAMES = {code: name for name, code in SIGNAL_CODES.items()}
SAVE_DUE = 8  # added to rank 0's code: the checkpoint cadence (a clock only rank 0 reads) asks for a save


class StopAgreement:
    def __init__(self, flag: StopFlag, ranks: Ranks):
        self.flag, self.ranks = flag, ranks
        self.signal: str | None = None  # the stop signal all ranks agreed on
        self.by_rank: dict[int, str] = {}  # which rank received which stop signal

    def at_boundary(self, save_due: bool) -> bool:
        """Agree on a stop (self.signal); return whether rank 0's cadence asks every rank to save now."""
        code = SIGNAL_CODES.get(self.flag.first, 0) + (SAVE_DUE if self.ranks.is_writer and save_due else 0)
        signal, by_rank, save = agree(self.ranks.per_rank(code))
        if signal:
            self.signal, self.by_rank = signal, by_rank
        return save


def agree(codes: list[int]) -> tuple[str | None, dict[int, str], bool]:
    """(the stop signal all ranks take, which rank received which, whether to save) from every rank's code."""
    by_rank = {rank: SIGNAL_NAMES[c % SAVE_DUE] for rank, c in enumerate(codes) if c % SAVE_DUE}
    signal = SIGNAL_NAMES[max(c % SAVE_DUE for c in codes)] if by_rank else None
    return signal, by_rank, codes[0] >= SAVE_DUE
