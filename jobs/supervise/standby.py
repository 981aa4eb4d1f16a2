"""A warm standby for the supervisor's next retry in place: a process of the trainer's own interpreter that has
imported torch and torch._dynamo (which torch's optimizers import at their first step) and waits. A retry hands
it the trainer's command and environment and it runs the script as `python SCRIPT` would: the restart skips the
interpreter's start and those imports, seconds on every retry.

The supervisor starts one once its trainer has done its first step (not to slow that trainer's start-up), only
where a retry runs in place (outside a batch job, one task), and only for `python SCRIPT ...` or
`python -m MODULE ...`. It waits on a pipe from the supervisor and exits when the pipe closes. JOBS_STANDBY=0
turns it off. This module stays torch-free until serve() runs in the standby itself."""
import json
import os
import select
import signal
import subprocess
import sys
import time

STANDBY_ENV = "JOBS_STANDBY"  # "0": no standby
PIPE_ENV = "JOBS_STANDBY_FD"  # the standby's end of the supervisor's pipe
READY_ENV = "JOBS_STANDBY_READY_FD"  # where it says that its imports are done
PRELOADED = ("torch", "torch._dynamo", "jobs.launch.launcher")
NAME, READY_NAME = "jobs-standby", "jobs-standby-ok"  # what ps and top show while it imports, once it waits
SERVE = "from jobs.supervise.standby import serve; serve()"


def can_stand_in(command: list[str]) -> bool:
    """Whether a standby can run `command`: the interpreter, then a script or `-m MODULE`, no other options."""
    if os.environ.get(STANDBY_ENV) == "0" or len(command) < 2 or not os.path.basename(command[0]).startswith("python"):
        return False
    return len(command) >= 3 if command[1] == "-m" else not command[1].startswith("-")


class Standby:
    """The supervisor's side: start the standby, hand it a trainer's environment, or discard it."""

    def __init__(self, command: list[str], preexec_fn):
        self.command = command
        read, self._pipe = os.pipe()
        self._ready, ready = os.pipe()
        env = dict(os.environ, **{PIPE_ENV: str(read), READY_ENV: str(ready)})
        try:
            self.process = subprocess.Popen([command[0], "-c", SERVE], env=env, pass_fds=(read, ready),
                                            preexec_fn=preexec_fn)
        except OSError:
            self.process = None
        finally:
            os.close(read)
            os.close(ready)

    def state(self) -> str:
        """"ready" (its imports done), "starting" (still importing) or "gone"."""
        if self.process is None or self.process.poll() is not None:
            return "gone"
        return "ready" if select.select([self._ready], [], [], 0)[0] else "starting"

    def hand_over(self, env: dict) -> subprocess.Popen | None:
        """The standby, now running the trainer with `env`; None if it is gone (start the trainer cold)."""
        request = {"argv": self.command[1:], "env": env, "started": time.clock_gettime(time.CLOCK_BOOTTIME)}
        try:
            if self.process is None or self.process.poll() is not None:
                return None
            data = json.dumps(request).encode() + b"\n"
            while data:  # a large environment goes in several writes
                data = data[os.write(self._pipe, data):]
            return self.process
        except OSError:
            return None
        finally:
            os.close(self._pipe)
            os.close(self._ready)

    def discard(self) -> None:
        os.close(self._ready)
        os.close(self._pipe)  # its read ends: it exits (and is killed, not to wait for its imports)
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def serve() -> None:
    """In the standby: import, wait for the trainer's environment, then run its script as __main__."""
    import importlib
    import runpy

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the trainer, not for a standby
    pipe, ready = os.fdopen(int(os.environ.pop(PIPE_ENV))), int(os.environ.pop(READY_ENV))

    name_process(NAME)
    for name in PRELOADED:  # at the trainer's priority: ready sooner; on CPU time the training may have wanted
        importlib.import_module(name)
    name_process(READY_NAME)
    try:
        os.write(ready, b"1")
    except OSError:
        pass  # handed its trainer while it still imported: the supervisor no longer asks
    os.close(ready)
    line = pipe.readline()
    pipe.close()
    name_process(os.path.basename(sys.executable))
    if not line:
        os._exit(0)  # discarded
    request = json.loads(line)
    from jobs.train import startup

    startup.process_started = request["started"]  # the retry's start-up begins now, not at the standby's start
    os.environ.clear()
    os.environ.update(request["env"])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    argv = request["argv"]
    if argv[0] == "-m":
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))  # as `python SCRIPT` sets it
        runpy.run_path(argv[0], run_name="__main__")


def name_process(name: str) -> None:
    """The process's name in ps and top (its main thread's; at most 15 characters)."""
    try:
        with open(f"/proc/{os.getpid()}/comm", "w") as comm:
            comm.write(name[:15])
    except OSError:
        pass
