"""Shared helpers for the resilience tests: real subprocesses of scripts/*.py, run-directory probes,
an uninterrupted reference run (computed once per pytest session), and in-process script calls.

Every trainer process costs about 5 s of CPU before its first step (`import torch`, then torch._dynamo,
which torch.optim imports lazily), so tests start few cold processes, fork the ones they restart again
and again from a pre-imported zygote (see ZYGOTE_CODE), and do the rest in-process (the same `main()` of
the same script, through the same run_main guard, so the same exit codes and stderr).

tests/conftest.py loads this file as a plugin (`pytest_plugins`), so that its session fixture `reference`
exists once; they also import names from it first, hence no assertion rewriting: PYTEST_DONT_REWRITE.
"""
from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
PYTHON = sys.executable  # not the pyenv shim: saves a shell start per subprocess

# The tiny config: ResNet-8, 256 synthetic images (231 train / 25 val), batch 32 -> 7 steps per epoch.
STEPS_PER_EPOCH = 7
TINY = ["--synthetic", "256", "--size", "1", "--batch-size", "32"]
LONG_EPOCHS = 10  # the reference run and everything compared with it: 70 steps
LONG = [*TINY, "--epochs", str(LONG_EPOCHS)]
LONG_STEPS = LONG_EPOCHS * STEPS_PER_EPOCH
SHORT = [*TINY, "--epochs", "2"]  # runs that are not compared with the reference: 14 steps
SHORT_STEPS = 2 * STEPS_PER_EPOCH
# every step checkpointed, every epoch end kept: a copy of the reference can be cut back to any epoch
LOOP = ["--checkpoint-every-steps", "1", "--keep-every-epochs", "1"]
SLOW_ENV = "JOBS_TEST_SLOW_WRITE_SECONDS"  # jobs.testing's hook
STEP_ENV = "JOBS_STEP_FILE"  # set by a supervisor (jobs.supervise) for its trainer

# scratch of this test process: the squeue stub and the subprocesses' output files; removed at exit
_SCRATCH = Path(tempfile.mkdtemp(prefix="jobs-tests-"))
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
_STUB_DIR: Path | None = None


def stub_bin_dir() -> Path:
    """A PATH entry with a `squeue` that lists no jobs: status never waits on a real (or dead) controller."""
    global _STUB_DIR
    if _STUB_DIR is None:
        _STUB_DIR = _SCRATCH / "bin"
        _STUB_DIR.mkdir()
        stub = _STUB_DIR / "squeue"
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return _STUB_DIR


def clean_env(slow: float | None = None, **extra: str) -> dict:
    """os.environ without SLURM_* (a test run inside a SLURM job must not record or resubmit that job)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in (SLOW_ENV, STEP_ENV)}
    env["PATH"] = f"{stub_bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    # One intra-op thread, here and in-process (see `hermetic`): bit-exactness holds for a fixed thread
    # count, and on a shared 2-core machine spinning OpenMP threads make runs many times slower.
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    if slow is not None:
        env[SLOW_ENV] = str(slow)
    env.update(extra)
    return env


@contextlib.contextmanager
def isolated():
    """The same isolation for in-process calls (as a context manager, for fixtures of any scope)."""
    import torch

    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("SLURM_") or key == SLOW_ENV:
                mp.delenv(key)
        mp.setenv("PATH", f"{stub_bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the same numerics as the subprocesses (OMP_NUM_THREADS=1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


@pytest.fixture
def hermetic():
    with isolated():
        yield


# -- subprocesses --------------------------------------------------------------------------------
@dataclass
class Proc:
    """A process running scripts/<name>: a direct child (popen) or a child of the zygote."""
    pid: int
    out_path: Path
    err_path: Path
    popen: subprocess.Popen | None = None
    zygote: "Zygote | None" = None
    returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.popen.poll() if self.popen else self.zygote.poll(self.pid)
        return self.returncode

    def send(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                discard(self)
                raise AssertionError(f"pid {self.pid} did not exit within {timeout} s; stderr:\n{self.stderr}")
            time.sleep(0.01)
        return self.returncode

    def kill9(self) -> int:
        os.kill(self.pid, signal.SIGKILL)
        return self.wait(30)

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")


def _output_files(script: str) -> tuple[Path, Path]:
    out = tempfile.NamedTemporaryFile(prefix=f"{script}-", suffix=".out", dir=_SCRATCH, delete=False)
    err = tempfile.NamedTemporaryFile(prefix=f"{script}-", suffix=".err", dir=_SCRATCH, delete=False)
    out.close()
    err.close()
    return Path(out.name), Path(err.name)


def start(script: str, *args: str, slow: float | None = None, supervised: bool = False,
          env: dict | None = None) -> Proc:
    """Start `python scripts/<script> ARGS` (a cold start) in the background; output goes to files; `env`:
    extra variables.
    supervised: as the batch scripts run it, `trap '' USR2; exec python -m jobs.supervise -- python ...` (the
    Proc is then the supervisor, the trainer its child)."""
    out_path, err_path = _output_files(script)
    command = [PYTHON, str(SCRIPTS / script), *map(str, args)]
    if supervised:
        command = ["bash", "-c", "trap '' USR2; exec \"$@\"", "bash", PYTHON, "-m", "jobs.supervise", "--", *command]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        popen = subprocess.Popen(command, cwd=REPO, env=clean_env(slow, **(env or {})), stdout=out, stderr=err,
                                 stdin=subprocess.DEVNULL)
    return Proc(popen.pid, out_path, err_path, popen=popen)


# The zygote imports what every script imports anyway (torch ~2.5 s of CPU, torch._dynamo ~2.5 s more,
# which torch.optim pulls in lazily when the optimizer is built), without running any torch op (so no
# thread pool exists yet), then forks one child per request. A child takes its own stdin/stdout/stderr,
# environment and argv and runs the real scripts/<name> as __main__; its exit code is the script's.
# A kill-and-resume cycle then costs a fork instead of 5 s of imports. Requests: {"argv", "env", "out",
# "err"} -> pid; {"poll": pid} -> exit code (negative: killed by that signal) or null while it runs.
ZYGOTE_CODE = """
import json, os, runpy, sys, traceback
import torch, torch._dynamo, jobs.cli, jobs.launch.launcher, jobs.status.summary, resnet.config, resnet.task
channel = os.fdopen(os.dup(1), "w")
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
while line := sys.stdin.readline():
    request = json.loads(line)
    if "poll" in request:
        try:
            pid, status = os.waitpid(request["poll"], os.WNOHANG)
            reply = os.waitstatus_to_exitcode(status) if pid else None
        except ChildProcessError:
            reply = "unknown"
        channel.write(json.dumps(reply) + "\\n")
        channel.flush()
        continue
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            channel.close()
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(os.open(request["out"], os.O_WRONLY | os.O_TRUNC), 1)
            os.dup2(os.open(request["err"], os.O_WRONLY | os.O_TRUNC), 2)
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv = request["argv"]
            try:
                runpy.run_path(sys.argv[0], run_name="__main__")
                code = 0
            except SystemExit as e:
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
                code = e.code if isinstance(e.code, int) else int(e.code is not None)
            except BaseException:
                traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    channel.write(json.dumps(pid) + "\\n")
    channel.flush()
"""


class Zygote:
    def __init__(self):
        self.err_path = _SCRATCH / "zygote.err"
        with open(self.err_path, "wb") as err:
            self.popen = subprocess.Popen([PYTHON, "-c", ZYGOTE_CODE], cwd=REPO, env=clean_env(), text=True,
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)

    def ask(self, request: dict):
        self.popen.stdin.write(json.dumps(request) + "\n")
        self.popen.stdin.flush()
        reply = self.popen.stdout.readline()
        assert reply, f"the zygote died: {self.err_path.read_text()}"
        return json.loads(reply)

    def poll(self, pid: int) -> int | None:
        code = self.ask({"poll": pid})
        assert code != "unknown", f"pid {pid} is not a child of the zygote"
        return code

    def close(self) -> None:
        self.popen.stdin.close()  # its loop ends at EOF
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


_ZYGOTE: Zygote | None = None


def zygote() -> Zygote:
    global _ZYGOTE
    if _ZYGOTE is None:
        _ZYGOTE = Zygote()
        atexit.register(_ZYGOTE.close)
    return _ZYGOTE


def spawn(script: str, *args: str, slow: float | None = None, env: dict | None = None) -> Proc:
    """Like start(), but forked from the zygote: running within milliseconds. `env`: extra variables."""
    out_path, err_path = _output_files(script)
    z = zygote()
    pid = z.ask({"argv": [str(SCRIPTS / script), *map(str, args)], "env": clean_env(slow, **(env or {})),
                 "out": str(out_path), "err": str(err_path)})
    return Proc(pid, out_path, err_path, zygote=z)


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and every process below it, at once (torchrun starts its ranks in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def discard(proc: Proc | None) -> None:
    """SIGKILL a process this test started and no longer needs, if it still runs."""
    if proc is not None and proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        while proc.poll() is None:
            time.sleep(0.01)


def run(script: str, *args: str, slow: float | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(SCRIPTS / script), *map(str, args)], cwd=REPO, env=clean_env(slow),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def wait_for_event(run_path: Path, proc: Proc, kinds: set[str], timeout: float = 90) -> dict | None:
    """The first event of `kinds` written by `proc`; None if the process exits without writing one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in events(run_path):
            if e.get("pid") == proc.pid and e["event"] in kinds:
                return e
        if proc.poll() is not None:
            for e in events(run_path):  # written just before it exited
                if e.get("pid") == proc.pid and e["event"] in kinds:
                    return e
            return None
        time.sleep(0.01)
    raise AssertionError(f"no {kinds} event from pid {proc.pid} within {timeout} s; stderr:\n{proc.stderr}")


def enospc_after(fraction: float, match=lambda name: True, delay: float = 0.0):
    """A jobs.run.files._write_all that writes part of the data, then fails as a full disk does."""
    import jobs.run.files

    real = jobs.run.files._write_all

    def write(f, data):
        if not match(os.path.basename(f.name)):
            return real(f, data)
        f.write(data[: int(len(data) * fraction)])
        time.sleep(delay)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return write


# -- run directory probes ------------------------------------------------------------------------
def events(run_path: Path, kind: str | None = None) -> list[dict]:
    try:
        lines = (Path(run_path) / "events.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn last line (killed mid-append)
        if kind is None or record["event"] == kind:
            out.append(record)
    return out


def manifest_entries(run_path: Path) -> list[dict]:
    try:
        return json.loads((Path(run_path) / "manifest.json").read_text())["checkpoints"]
    except FileNotFoundError:
        return []


def committed_step(run_path: Path) -> int | None:
    entries = manifest_entries(run_path)
    return max(e["step"] for e in entries) if entries else None


def temp_files(run_path: Path) -> list[Path]:
    return sorted(Path(run_path).glob(".*.tmp-*"))


def checkpoint_model_digest(path: Path) -> str:
    """sha256 over the raw bytes of every model tensor, in key order, read back with torch.load.

    Written independently of jobs.checkpoint.model_digest (numpy bytes, not a uint8 view)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    digest = hashlib.sha256()
    for value in state["task"]["model"].values():
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def tree_snapshot(root: Path) -> dict:
    """Every path under `root` with its kind, mode, size, mtime and content hash: "nothing changed" is equality."""
    root = Path(root)
    snap = {}
    if not root.exists():
        return snap
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            entry = (oct(st.st_mode), st.st_mtime_ns)
            if path.is_file():
                entry += (st.st_size, hashlib.sha256(path.read_bytes()).hexdigest())
            snap[str(path.relative_to(root))] = entry
    return snap


# -- in-process calls of the scripts -------------------------------------------------------------
_SCRIPTS: dict = {}


def load_script(name: str):
    """scripts/<name>.py as a module (not run as __main__)."""
    if name not in _SCRIPTS:
        spec = importlib.util.spec_from_file_location(f"script_{name}", SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _SCRIPTS[name] = module
    return _SCRIPTS[name]


def call(name: str, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of scripts/<name>.py, in this process, through jobs.cli.run_main.

    An exception that run_main does not turn into an exit code propagates (a traceback in a real
    process), so the calling test fails on it."""
    from jobs.cli import run_main

    module = load_script(name)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run_main(lambda: module.main([str(a) for a in argv]))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        else:
            raise AssertionError("run_main returned without sys.exit")
    return code, out.getvalue(), err.getvalue()


def status_of(runs_dir: Path, run_id: str) -> dict:
    """scripts/status.py --json --run-id, in-process."""
    code, out, err = call("status", "--runs-dir", runs_dir, "--run-id", run_id, "--json")
    assert code == 0, err
    return json.loads(out)


# -- the reference run ---------------------------------------------------------------------------
@dataclass
class Reference:
    runs_dir: Path
    run_id: str
    digest: str
    status: dict
    seconds: float

    @property
    def path(self) -> Path:
        return self.runs_dir / self.run_id


_REFERENCE: Reference | None = None


def reference_run(base: Path) -> Reference:
    """One uninterrupted LONG run by a real scripts/train.py, once per session (cached here, so every
    test module shares it); its digest comes from a real scripts/status.py --json."""
    global _REFERENCE
    if _REFERENCE is None:
        runs = Path(base) / "reference-runs"
        zygote()  # it imports while the reference trains
        started = time.monotonic()
        done = run("train.py", *LONG, *LOOP, "--run-id", "ref", "--runs-dir", runs)
        assert done.returncode == 0, done.stderr
        status = run("status.py", "--runs-dir", runs, "--json")
        assert status.returncode == 0, status.stderr
        (summary,) = json.loads(status.stdout)
        assert summary["state"] == "completed" and summary["step"] == LONG_STEPS, summary
        _REFERENCE = Reference(runs, "ref", summary["model_digest"], summary, time.monotonic() - started)
    return _REFERENCE


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> Reference:
    return reference_run(tmp_path_factory.getbasetemp())


def copy_run(ref: Reference, runs_dir: Path, cut_at: int | None = None) -> Path:
    """A copy of the reference run under `runs_dir` (same run id). With `cut_at`, it looks like the run
    was SIGKILLed right after committing checkpoint `cut_at`: later checkpoints are dropped from the
    manifest and from disk."""
    dst = Path(runs_dir) / ref.run_id
    shutil.copytree(ref.path, dst)
    if cut_at is not None:
        manifest = json.loads((dst / "manifest.json").read_text())
        assert any(e["step"] == cut_at for e in manifest["checkpoints"]), cut_at
        manifest["checkpoints"] = [e for e in manifest["checkpoints"] if e["step"] <= cut_at]
        (dst / "manifest.json").write_text(json.dumps(manifest))
        for ckpt in dst.glob("ckpt-step*.pt"):
            if int(ckpt.name[len("ckpt-step"):-3]) > cut_at:
                ckpt.unlink()
                (dst / (ckpt.name + ".json")).unlink()
    return dst


WALL_CLOCK = ("time", "epoch_seconds", "eval_seconds")  # and the rates (*_per_sec): they differ between runs


def logged(run_path: Path) -> list[dict]:
    """The run's metrics.jsonl without its wall-clock fields: what two runs of the same config must share."""
    return [{k: v for k, v in record.items() if k not in WALL_CLOCK and not k.endswith("_per_sec")}
            for record in (json.loads(line) for line in (Path(run_path) / "metrics.jsonl").read_text().splitlines())]


def checkpoint_file(run_path: Path, step: int) -> Path:
    return Path(run_path) / f"ckpt-step{step:09d}.pt"


def final_digest(run_path: Path) -> str:
    entries = manifest_entries(run_path)
    newest = max(entries, key=lambda e: e["step"])
    assert newest["final"], newest
    return newest["model_digest"]
