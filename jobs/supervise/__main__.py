"""`python -m jobs.supervise -- python scripts/train.py ... --run-id ID [--runs-dir DIR]`

The batch scripts exec it, so that it is the batch shell: its handlers go in before anything else is imported
(the batch shell ignored USR2 until now), and every signal from then on is recorded and forwarded."""
import signal
import sys

_received: list[int] = []  # every signal to forward, from the first moment on
for _sig in (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT):
    signal.signal(_sig, lambda signum, frame: _received.append(signum))

from jobs.signals import ignore_usr2_at_exit  # noqa: E402
from jobs.supervise.supervisor import main  # noqa: E402

ignore_usr2_at_exit()  # a warning as the finished job's batch shell exits must not fail it
sys.exit(main(received=_received))
