"""End to end on the two-node dev cluster (slurm/dev-cluster): real sbatch jobs train tiny synthetic
runs and are interrupted every way SLURM interrupts a run; each must end with the weights of an
uninterrupted local run (the newest checkpoint's model_digest, bit for bit).

    pytest -m slurm tests/slurm/test_slurm_e2e.py -s      # -s shows the measured wall times and requeue counts

Four phases, each a module fixture that starts its scenarios at once and waits for all of them
(every training job asks for one CPU, a 2-task job one on each node):
  preemption      two `debug` runs, one in mid-run and one still starting up, preempted by an `urgent`
                  job that takes the whole node (this phase runs alone);
  time limit      `sbatch --time=1 slurm/train_standard.sh` and `scripts/submit.py --time 1`
                  (submitit, srun), each requeued by its own USR2 handler until the run is done;
                  status.py and resume.py are checked against the sbatch job while it runs; and the
                  same two with 2 tasks each, one per node (DDP, gloo: slurm/train_ddp.sh with srun
                  -N 2, and submit.py --nodes 2), compared with an uninterrupted 2-rank run;
  stops           plain scancel + resume.py; a trainer SIGKILLed inside its job (the supervisor requeues
                  it), and killed twice under --max-crash-retries 1 (the second time it is not); a run
                  that diverges (not requeued); and the requeue cap (--max-requeues 1, USR2 sent by hand),
                  which also checks status.py and resume.py against a held (PENDING) job; a 2-task
                  job cancelled, then resubmitted with its 2 tasks by resume.py;
  a node lost     (two nodes only) node1 set DOWN under a 2-node run (SLURM requeues it), then node1's
                  network cut (rank 0 ends in peer-lost within the collective timeout, its supervisor
                  requeues): one after the other, alone on the cluster.
The local reference runs (one per config, and the 2-rank one) are started once, in the background, at the
start. Each dev cluster node has twice the machine's cores (slurm/dev-cluster/start.sh), so that a phase's jobs
mostly run side by side (with SLURM_DEV_NODES=1 a 2-task job asks for --overcommit: its 2 tasks on 1 CPU).
About 3.5 minutes in all on an idle 2-CPU machine (5 under heavy CPU load).

Pacing. A job's USR2 comes from slurmctld's time-limit check, every 30 s: with --time=1 and
USR2@20 the first job gets it 10-40 s after it starts, each requeued one about 24 s after (it
restarts ~6 s after the requeue, in phase with the check). Steps are CPU-bound, and the CPUs are
shared, so a fixed number of steps can take 20 s or 90 s: too few steps and the run ends before its
second requeue, too many and the file takes minutes longer. The time-limit runs are therefore paced
by the checkpoint writes (JOBS_TEST_SLOW_WRITE_SECONDS: each write takes WRITE_S, and a save waits
for the previous write, so at most K steps per WRITE_S): LONG_STEPS steps take >= 63 s of training,
more than the longest two first windows (37 + 21 s), so every such run requeues itself at least
twice however fast the CPU is, and finishes in its third or (more often) fourth job.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.test_distributed import Ranks as LocalRanks
from tests.slurm_cluster import (
    NODES,
    REPO,
    TERMINAL,
    job_info,
    node_cpus,
    sbatch,
    scancel,
    squeue_state,
    wait_for,
    wait_job_state,
)

pytestmark = pytest.mark.slurm

PY = sys.executable
COMMON = ["--block", "standard", "--size", "1", "--batch-size", "32", "--device", "cpu"]
# Time-limit runs: 990 training images -> 30 steps per epoch, 180 steps; paced at K=2 steps per
# 0.7 s write (<= 2.9 steps/s): >= 63 s of training.
LONG_K, WRITE_S = 2, 0.7
LONG = COMMON + ["--synthetic", "1100", "--epochs", "6", "--checkpoint-every-steps", str(LONG_K)]
LONG_STEPS = 180
# Stop scenarios: 540 training images -> 16 steps per epoch, 128 steps (10-25 s of CPU), unpaced.
SHORT_K = 5
SHORT = COMMON + ["--synthetic", "600", "--epochs", "8", "--checkpoint-every-steps", str(SHORT_K)]
SHORT_STEPS = 128
CONFIGS = {"long": LONG, "short": SHORT}
USR2 = "B:USR2@20"  # the tests' SBATCH_SIGNAL: the supervisor is the batch shell and forwards it
# A 2-task job: one task on each node of the two-node dev cluster; both on node0 with SLURM_DEV_NODES=1
# (its 2 tasks on 1 CPU: --overcommit).
TWO_NODES = NODES >= 2
DDP_SHAPE = ["--nodes=2", "--ntasks-per-node=1"] if TWO_NODES else ["--ntasks=2", "--ntasks-per-node=2",
                                                                       "--overcommit"]
JOB_TIMEOUT = 420  # seconds for one scenario's jobs; a healthy run takes 30-150 s

SUBMITTED: list[int] = []  # every job these tests submit, cancelled at module teardown


# -- small helpers ------------------------------------------------------------------------------------
def read_events(run_dir: Path) -> list[dict]:
    try:
        lines = (run_dir / "events.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:  # a line being appended right now
            break
    return events


def kinds(run_dir: Path, *names: str) -> list[dict]:
    return [e for e in read_events(run_dir) if e["event"] in names]


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def script(args: list, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PY, *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def status_json(runs: Path, run_id: str, env: dict) -> dict:
    """status.py --json for one run; {"state": None, "error": ...} if it fails (the test asserts on state)."""
    done = script(["scripts/status.py", "--json", "--runs-dir", runs, "--run-id", run_id], env)
    if done.returncode != 0:
        return {"state": None, "error": f"status.py failed (rc {done.returncode}): {done.stderr.strip()}"}
    return json.loads(done.stdout)


def resume(runs: Path, run_id: str, env: dict) -> subprocess.CompletedProcess:
    return script(["scripts/resume.py", "--run-id", run_id, "--runs-dir", runs], env)


def resubmitted_job(done: subprocess.CompletedProcess) -> int:
    found = re.search(r"as SLURM job (\d+)", done.stdout)
    assert done.returncode == 0 and found, f"resume.py failed (rc {done.returncode}): {done.stdout}{done.stderr}"
    SUBMITTED.append(int(found.group(1)))
    return int(found.group(1))


def gone(job: int, env: dict) -> bool:
    """Left RUNNING/COMPLETING for good (the process has exited)."""
    return job_info(job, env).get("JobState") in TERMINAL and squeue_state(job, env) != "COMPLETING"


def signal_batch(job: int, name: str, env: dict) -> None:
    subprocess.run(["scancel", "--batch", f"--signal={name}", str(job)], env=env, check=True, timeout=30)


def scontrol(args: list, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["scontrol", *map(str, args)], env=env, capture_output=True, text=True, timeout=30)


def lost_steps(events: list[dict]) -> list[tuple[int, int]]:
    """(stop step, next resume step) of every signal-stop that was resumed."""
    pairs, stop = [], None
    for e in events:
        if e["event"] == "stop":
            stop = e["step"]
        elif e["event"] == "resume" and stop is not None:
            pairs.append((stop, e["step"]))
            stop = None
    return pairs


def explain(res: dict) -> str:
    """What to read when an assertion fails: the events (checkpoints summed up) and the job output."""
    lines, ckpts = [], []
    for e in read_events(Path(res["run_dir"])):
        if e["event"] == "checkpoint":
            ckpts.append(e["step"])
            continue
        if ckpts:
            lines.append(f"  checkpoints {ckpts[0]}..{ckpts[-1]} ({len(ckpts)})")
            ckpts = []
        extra = {k: v for k, v in e.items() if k not in ("time", "event", "host", "pid", "step", "slurm_job_id")}
        lines.append(f"  {e['event']} step {e['step']} job {e['slurm_job_id']} {extra}")
    if ckpts:
        lines.append(f"  checkpoints {ckpts[0]}..{ckpts[-1]} ({len(ckpts)})")
    outputs = []
    for path in res.get("outputs", []):
        try:
            outputs.append(f"--- {path}:\n" + "\n".join(Path(path).read_text().splitlines()[-25:]))
        except OSError:
            pass
    return "\nevents:\n" + "\n".join(lines) + "\n" + "\n".join(outputs)


def brief(info: dict) -> str:
    """The scontrol fields that say how a job ended (ExitCode 0:12: killed by USR2, 0:9: SIGKILL)."""
    return " ".join(f"{k}={info.get(k)}" for k in ("JobId", "JobState", "ExitCode", "Restarts", "Reason"))


def report(name: str, res: dict, **more) -> None:
    fields = " ".join(f"{k}={v}" for k, v in more.items())
    print(f"\n[slurm-e2e] {name}: wall {res['wall']:.1f} s, requeues {res.get('requeues')}, "
          f"restarts {res.get('restarts')} {fields}")


# -- context shared by the scenarios -------------------------------------------------------------------
class References:
    """One uninterrupted local run per config, trained in the background, in the order asked for."""

    def __init__(self, root: Path, env: dict):
        self.root, self.env = root, env
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reference")
        self.futures: dict[str, Future] = {}

    def start(self, name: str) -> None:
        if name not in self.futures:
            self.futures[name] = self.pool.submit(self._train, name)

    def _train(self, name: str) -> dict:
        started = time.monotonic()
        if name == "ddp":  # two ranks (gloo), started the way torchrun starts them
            ranks = LocalRanks(self.root, ["scripts/train.py", *LONG, "--runs-dir", str(self.root), "--run-id",
                                           f"ref-{name}"], world=2, name="ddp-reference")
            assert ranks.wait(timeout=600) == [0, 0], ranks.output()
        else:
            done = script(["scripts/train.py", *CONFIGS[name], "--runs-dir", self.root, "--run-id", f"ref-{name}"],
                          self.env, timeout=600)
            assert done.returncode == 0, f"reference run {name} failed: {done.stdout}{done.stderr}"
        summary = status_json(self.root, f"ref-{name}", self.env)
        assert summary["state"] == "completed" and summary["model_digest"], summary
        return {"digest": summary["model_digest"], "step": summary["step"], "wall": time.monotonic() - started}

    def get(self, name: str) -> dict:
        self.start(name)
        ref = self.futures[name].result(timeout=900)
        if not ref.get("shown"):
            ref["shown"] = True
            print(f"\n[slurm-e2e] local reference '{name}': {ref['step']} steps, wall {ref['wall']:.1f} s")
        return ref


def base_env(slurm_env: dict) -> dict:
    """The cluster's environment, one intra-op thread (jobs and references alike), no stray SBATCH_*."""
    env = {k: v for k, v in slurm_env.items() if not k.startswith(("SBATCH_", "SLURM_JOB", "JOBS_TEST_"))}
    return dict(env, OMP_NUM_THREADS="1", PYTHON=PY)


class Ctx:
    def __init__(self, root: Path, env: dict):
        self.runs = root / "runs"
        self.out = root / "out"
        self.runs.mkdir()
        self.out.mkdir()
        self.env = base_env(env)
        self.cpus = node_cpus(self.env)

    def sbatch_env(self, paced: bool = False) -> dict:
        env = dict(self.env, SBATCH_SIGNAL=USR2)
        if paced:
            env["JOBS_TEST_SLOW_WRITE_SECONDS"] = str(WRITE_S)
        return env

    def submit_train(self, name: str, minutes: int, flags: list, env: dict, tasks: int = 1) -> tuple[int, Path, Path]:
        """sbatch slurm/train_standard.sh on one CPU (with 2 tasks: slurm/train_ddp.sh, DDP_SHAPE);
        (job id, run dir, output file)."""
        shape = DDP_SHAPE if tasks == 2 else []
        job = sbatch([f"--job-name={name}", f"--time={minutes}", "--cpus-per-task=1", "--gres=gpu:0", "--mem=1G",
                      *shape, f"--output={self.out}/{name}-%j.out",
                      "slurm/train_ddp.sh" if tasks == 2 else "slurm/train_standard.sh", *flags,
                      "--runs-dir", self.runs], env, cwd=REPO)
        SUBMITTED.append(job)
        return job, self.runs / f"{name}-{job}", self.out / f"{name}-{job}.out"


def job_ended(ctx: Ctx, res: dict, t0: float, timeout: float = JOB_TIMEOUT, until_gone: bool = False) -> dict:
    """Into `res`: the job's terminal state (and, if asked, its processes gone), the wall time since `t0`
    and the run's final status.py summary."""
    job = res["job"]
    res["info"] = wait_job_state(job, TERMINAL, ctx.env, timeout=timeout)
    if until_gone:
        wait_for(lambda: gone(job, ctx.env), 60, what=f"job {job} to end")
    res["wall"] = time.monotonic() - t0
    res["final"] = status_json(ctx.runs, res["run_dir"].name, ctx.env)
    return res


def run_phase(drivers: dict, ctx: Ctx) -> dict[str, Future]:
    """Start every scenario of a phase at once; return when all have ended (their Futures)."""
    pool = ThreadPoolExecutor(max_workers=len(drivers), thread_name_prefix="scenario")
    futures = {name: pool.submit(driver, ctx) for name, driver in drivers.items()}
    pool.shutdown(wait=True)
    return futures


@pytest.fixture(scope="module")
def ctx(slurm_env, tmp_path_factory, request):
    context = Ctx(tmp_path_factory.mktemp("slurm_e2e"), slurm_env)
    started = time.monotonic()
    yield context
    for job in SUBMITTED:
        scancel(job, context.env)
    print(f"\n[slurm-e2e] module wall {time.monotonic() - started:.1f} s")


@pytest.fixture(scope="session")
def refs(slurm_env, tmp_path_factory, request):
    references = References(tmp_path_factory.mktemp("slurm_e2e_reference"), base_env(slurm_env))
    # start what the selected tests need now: they train while the first phase's jobs run
    selected = {item.name for item in request.session.items}
    if selected & {"test_preemption_requeues_and_loses_no_step", "test_preemption_during_start_up_is_not_fatal",
                   "test_scancel_then_resume_py",
                   "test_sigkill_of_the_trainer_is_retried_by_a_requeue"}:
        references.start("short")
    if selected & {"test_sbatch_job_requeues_itself_to_the_end", "test_submitit_job_requeues_itself_to_the_end"}:
        references.start("long")
    if selected & {"test_two_srun_tasks_requeued_by_the_time_limit_end_bit_exact",
                   "test_two_submitit_tasks_requeued_end_bit_exact",
                   "test_a_cancelled_two_task_run_resubmitted_by_resume_py_ends_bit_exact",
                   "test_a_node_set_down_requeues_the_run_which_resumes_bit_exact",
                   "test_a_network_cut_ends_in_peer_lost_and_the_requeued_run_resumes_bit_exact"}:
        references.start("ddp")
    yield references
    references.pool.shutdown(wait=True, cancel_futures=True)


# -- phase 1: preemption (alone on the node) -------------------------------------------------------------
def drive_preemption(ctx: Ctx) -> dict:
    """Two `debug` victims, preempted at once: one in mid-run, one while it still starts up."""
    t0 = time.monotonic()
    job, run_dir, output = ctx.submit_train("e2e-preempt", 5, SHORT, ctx.sbatch_env())
    res = {"job": job, "run_dir": run_dir, "outputs": [output]}
    wait_for(lambda: kinds(run_dir, "checkpoint"), 180, what="the victim's first checkpoint")
    early, early_dir, early_output = ctx.submit_train("e2e-preempt-early", 5, SHORT, ctx.sbatch_env())
    res["early"] = {"job": early, "run_dir": early_dir, "outputs": [early_output]}
    wait_for(lambda: squeue_state(early, ctx.env) == "RUNNING", 60, what=f"job {early} running")
    # Not in the same instant: once (CI, SLURM 22.05) a job that the backfill scheduler had started 54 ms
    # before the urgent job came was not preempted; its trainer still imports torch for seconds after this.
    time.sleep(1)
    # every CPU of every node: both victims are preempted, wherever they run
    urgent = sbatch(["-p", "urgent", "-N", str(NODES), "-c", str(ctx.cpus), f"--output={ctx.out}/urgent-%j.out",
                     "--wrap", "sleep 5"], ctx.env, cwd=ctx.out)
    SUBMITTED.append(urgent)
    res["preempted_at_step"] = kinds(run_dir, "checkpoint")[-1]["step"]
    res["early"]["started_before_urgent"] = bool(kinds(early_dir, "start"))
    res["info"] = wait_job_state(job, TERMINAL, ctx.env, timeout=JOB_TIMEOUT)
    res["early"]["info"] = wait_job_state(early, TERMINAL, ctx.env, timeout=JOB_TIMEOUT)
    res["urgent"] = wait_job_state(urgent, TERMINAL, ctx.env, timeout=60)
    res["wall"] = res["early"]["wall"] = time.monotonic() - t0
    res["final"] = status_json(ctx.runs, run_dir.name, ctx.env)
    res["early"]["final"] = status_json(ctx.runs, early_dir.name, ctx.env)
    return res


@pytest.fixture(scope="module")
def preemption_phase(ctx, refs):
    return run_phase({"preempt": drive_preemption}, ctx)


def check_preempted_run(name: str, res: dict, urgent: dict, ref: dict) -> list[tuple[int, int]]:
    events = read_events(res["run_dir"])
    signals = [e["signal"] for e in events if e["event"] == "signal"]
    res["requeues"] = len([e for e in events if e["event"] == "requeue"])
    res["restarts"] = int(res["info"]["Restarts"])
    pairs = lost_steps(events)
    report(name, res, signals=",".join(signals), stop_resume_steps=pairs)
    why = explain(res)
    assert urgent["JobState"] == "COMPLETED", brief(urgent)
    assert res["info"]["JobState"] == "COMPLETED" and res["restarts"] >= 1, brief(res["info"]) + why
    assert signals and signals[0] in ("SIGUSR2", "SIGTERM"), why
    assert pairs and all(stop == resumed for stop, resumed in pairs), why  # zero lost steps
    assert res["final"]["state"] == "completed" and res["final"]["step"] == SHORT_STEPS, res["final"]
    assert res["final"]["model_digest"] == ref["digest"], why
    return pairs


def test_preemption_requeues_and_loses_no_step(preemption_phase, refs):
    res = preemption_phase["preempt"].result()
    pairs = check_preempted_run(f"preemption (urgent job after step {res['preempted_at_step']})", res,
                                res["urgent"], refs.get("short"))
    assert 0 < pairs[0][0] < SHORT_STEPS, explain(res)  # it was stopped in the middle of the run


def test_preemption_during_start_up_is_not_fatal(preemption_phase, refs):
    """USR2 comes at once on preemption, maybe before the trainer has imported torch: it must not kill it
    (USR2's default action), or the job ends FAILED (ExitCode 0:12) instead of being requeued."""
    res = preemption_phase["preempt"].result()["early"]
    urgent = preemption_phase["preempt"].result()["urgent"]
    pairs = check_preempted_run("preemption during start-up", res, urgent, refs.get("short"))
    # step 0: the warning was there before the first step (it arrived while the trainer started up)
    print(f"[slurm-e2e]   stopped at step {pairs[0][0]}; 'start' event before the urgent job: "
          f"{res['started_before_urgent']}")


# -- phase 2: time-limit requeues (sbatch and submitit at once) -------------------------------------------
def while_running(ctx: Ctx, run_dir: Path, job: int, timeout: float) -> tuple[dict, subprocess.CompletedProcess]:
    """status.py and resume.py (at once) while the job trains, between two stops (a stop meanwhile: again)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and job_info(job, ctx.env).get("JobState") not in TERMINAL:
        events = read_events(run_dir)
        starts = [i for i, e in enumerate(events) if e["event"] in ("start", "resume")]
        stops = [i for i, e in enumerate(events) if e["event"] in ("signal", "stop")]
        if starts and (not stops or stops[-1] < starts[-1]):
            with ThreadPoolExecutor(2) as pool:
                summary = pool.submit(status_json, ctx.runs, run_dir.name, ctx.env)
                refused = pool.submit(resume, ctx.runs, run_dir.name, ctx.env)
                summary, refused = summary.result(), refused.result()
            if len(kinds(run_dir, "signal", "stop", "start", "resume")) == len(starts) + len(stops):
                return summary, refused
        time.sleep(0.5)
    return None, None


def drive_sbatch_requeue(ctx: Ctx) -> dict:
    t0 = time.monotonic()
    job, run_dir, output = ctx.submit_train("e2e-requeue", 1, LONG, ctx.sbatch_env(paced=True))
    res = {"job": job, "run_dir": run_dir, "outputs": [output]}
    res["running_status"], res["refused"] = while_running(ctx, run_dir, job, JOB_TIMEOUT)
    return job_ended(ctx, res, t0)


def submitit_requeue(ctx: Ctx, run_id: str, tasks: int) -> dict:
    t0 = time.monotonic()
    env = dict(ctx.env, JOBS_TEST_SLOW_WRITE_SECONDS=str(WRITE_S))  # no SBATCH_SIGNAL: submitit sets USR2@20
    shape = ["--tasks-per-node", str(tasks)]
    if tasks > 1 and TWO_NODES:
        shape = ["--nodes", str(tasks), "--tasks-per-node", "1"]
    elif tasks > 1:
        env["SBATCH_OVERCOMMIT"] = "1"
    done = script(["scripts/submit.py", *LONG, "--run-id", run_id, "--runs-dir", ctx.runs, "--time", "1",
                   "--gpus", "0", "--cpus", "1", "--signal-delay", "20", *shape], env)
    found = re.search(r"as SLURM job (\d+)", done.stdout)
    assert done.returncode == 0 and found, f"submit.py failed: {done.stdout}{done.stderr}"
    job = int(found.group(1))
    SUBMITTED.append(job)
    run_dir = ctx.runs / run_id
    folder = run_dir / "submitit" / str(job)
    outputs = [folder / f"{job}_{task}_log.{kind}" for task in range(tasks) for kind in ("out", "err")]
    return job_ended(ctx, {"job": job, "run_dir": run_dir, "outputs": outputs}, t0)


def drive_submitit_requeue(ctx: Ctx) -> dict:
    return submitit_requeue(ctx, "e2e-submitit", tasks=1)


def drive_ddp_sbatch_requeue(ctx: Ctx) -> dict:
    t0 = time.monotonic()
    # USR2 to every task (no B:), as slurm/train_ddp.sh asks for it
    env = dict(ctx.sbatch_env(paced=True), SBATCH_SIGNAL="USR2@20")
    job, run_dir, output = ctx.submit_train("e2e-ddp", 1, LONG, env, tasks=2)
    return job_ended(ctx, {"job": job, "run_dir": run_dir, "outputs": [output]}, t0)


def drive_ddp_submitit_requeue(ctx: Ctx) -> dict:
    return submitit_requeue(ctx, "e2e-ddp-submitit", tasks=2)


@pytest.fixture(scope="module")
def requeue_phase(ctx, refs):
    return run_phase({"sbatch": drive_sbatch_requeue, "submitit": drive_submitit_requeue,
                      "ddp-sbatch": drive_ddp_sbatch_requeue, "ddp-submitit": drive_ddp_submitit_requeue}, ctx)


def check_requeued_run(name: str, res: dict, ref: dict) -> None:
    events = read_events(res["run_dir"])
    requeues = [e for e in events if e["event"] == "requeue"]
    res["requeues"] = len(requeues)
    res["restarts"] = int(res["info"]["Restarts"])
    pairs = lost_steps(events)
    report(name, res, stop_resume_steps=pairs, jobs=res["job"])
    why = explain(res)
    assert res["info"]["JobState"] == "COMPLETED", brief(res["info"]) + why
    assert res["requeues"] >= 2, why
    assert res["restarts"] == res["requeues"], brief(res["info"]) + why  # every requeue was ours, each one reran
    assert all(e["signal"] == "SIGUSR2" for e in requeues), why
    assert not [e for e in events if e["event"] == "error"], why
    assert len(pairs) == res["requeues"] and all(stop == resumed for stop, resumed in pairs), why
    assert res["final"]["state"] == "completed" and res["final"]["step"] == LONG_STEPS, res["final"]
    assert res["final"]["restarts"] == res["requeues"] and res["final"]["slurm_job_id"] == str(res["job"])
    assert res["final"]["slurm_restart_count"] == res["restarts"], res["final"]  # SLURM_RESTART_COUNT
    assert res["final"]["model_digest"] == ref["digest"], why


def test_sbatch_job_requeues_itself_to_the_end(requeue_phase, refs):
    check_requeued_run("sbatch --time=1 train_standard.sh", requeue_phase["sbatch"].result(), refs.get("long"))


def test_status_and_resume_py_while_the_job_runs(requeue_phase):
    res = requeue_phase["sbatch"].result()
    running, refused = res["running_status"], res["refused"]
    assert running is not None, "no status.py sample while the job ran" + explain(res)
    assert running["state"] == "running", running
    assert running["slurm_job_id"] == str(res["job"]) and running["slurm_state"] == "RUNNING", running
    assert 0 <= running["step"] < LONG_STEPS and running["total_steps"] == LONG_STEPS, running
    # resume.py refuses to resubmit a run whose job still runs, and says which job
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert f"run {res['run_dir'].name} is still in SLURM job {res['job']} (RUNNING)" in refused.stderr, refused.stderr


def test_submitit_job_requeues_itself_to_the_end(requeue_phase, refs):
    check_requeued_run("submit.py --time 1 (submitit)", requeue_phase["submitit"].result(), refs.get("long"))


def check_ddp_run(name: str, res: dict, reference: str, min_requeues: int) -> list[dict]:
    """A 2-task run that requeued itself: every start has both ranks, every stop is one save and one requeue
    at one step (all ranks stopped there), no step lost, and the weights of the uninterrupted 2-rank run."""
    events = read_events(res["run_dir"])
    requeues = [e for e in events if e["event"] == "requeue"]
    res["requeues"] = len(requeues)
    pairs = lost_steps(events)
    report(name, res, stop_resume_steps=pairs, jobs=res["job"])
    why = explain(res)
    assert res["info"]["JobState"] == "COMPLETED", brief(res["info"]) + why
    assert len(requeues) >= min_requeues and all(e["signal"] == "SIGUSR2" for e in requeues), why
    assert not [e for e in events if e["event"] == "error"], why
    starts = [e for e in events if e["event"] in ("start", "resume")]
    assert all(e["world_size"] == 2 and e["launcher"] == "srun" for e in starts), why
    assert len(pairs) == len(requeues) and all(stop == resumed for stop, resumed in pairs), why
    signals = [e for e in events if e["event"] == "signal"]
    assert len(signals) == len(requeues) and all(e["ranks"] and set(e["ranks"]) <= {"0", "1"} for e in signals), why
    assert res["final"]["state"] == "completed" and res["final"]["step"] == LONG_STEPS, res["final"]
    assert res["final"]["world_size"] == 2, res["final"]
    if TWO_NODES:  # one rank on each node
        assert res["info"]["NodeList"] == "node[0-1]" and res["info"]["NumTasks"] == "2", brief(res["info"])
    assert res["final"]["model_digest"] == reference, why
    return events


def test_two_srun_tasks_requeued_by_the_time_limit_end_bit_exact(requeue_phase, refs):
    check_ddp_run(f"sbatch {' '.join(DDP_SHAPE[:2])} train_ddp.sh (srun)", requeue_phase["ddp-sbatch"].result(),
                  refs.get("ddp")["digest"], min_requeues=2)


def test_two_submitit_tasks_requeued_end_bit_exact(requeue_phase, refs):
    check_ddp_run("submit.py --nodes 2 --tasks-per-node 1" if TWO_NODES else "submit.py --tasks-per-node 2",
                  requeue_phase["ddp-submitit"].result(), refs.get("ddp")["digest"], min_requeues=1)


# -- phase 3: scancel, SIGKILL, requeue cap (all at once; SLURM queues what does not fit) -------------------
def cancel_then_resume(ctx: Ctx, name: str, minutes: int, flags: list, env: dict, tasks: int, after_step: int) -> dict:
    """A job cancelled (scancel) once a checkpoint at `after_step` or later is in, then resubmitted by resume.py
    (with `env`): its state ("info"), the run's status.py summary between the two jobs ("stopped"), the new
    job and its state ("new_job", "new_info"), the wall time and the final summary."""
    t0 = time.monotonic()
    job, run_dir, output = ctx.submit_train(name, minutes, flags, env, tasks=tasks)
    res = {"job": job, "run_dir": run_dir, "outputs": [output]}
    wait_for(lambda: [e for e in kinds(run_dir, "checkpoint") if e["step"] >= after_step], 180,
             what=f"a checkpoint at step {after_step} or later")
    scancel(job, ctx.env)
    res["info"] = wait_job_state(job, TERMINAL, ctx.env, timeout=60)
    wait_for(lambda: gone(job, ctx.env), 60, what=f"job {job} to end")
    res["stopped"] = status_json(ctx.runs, run_dir.name, ctx.env)
    res["new_job"] = resubmitted_job(resume(ctx.runs, run_dir.name, env))
    res["outputs"].append(ctx.out / f"{name}-{res['new_job']}.out")
    res["new_info"] = wait_job_state(res["new_job"], TERMINAL, ctx.env, timeout=JOB_TIMEOUT)
    res["wall"] = time.monotonic() - t0
    res["final"] = status_json(ctx.runs, run_dir.name, ctx.env)
    return res


def drive_scancel(ctx: Ctx) -> dict:
    return cancel_then_resume(ctx, "e2e-scancel", 5, SHORT, ctx.sbatch_env(), tasks=1, after_step=2 * SHORT_K)


def drive_ddp_scancel(ctx: Ctx) -> dict:
    """A 2-task job (unpaced) cancelled once its first checkpoint is in, resubmitted by resume.py."""
    env = dict(ctx.sbatch_env(), SBATCH_SIGNAL="USR2@20")  # the resubmission too
    if not TWO_NODES:
        env["SBATCH_OVERCOMMIT"] = "1"
    return cancel_then_resume(ctx, "e2e-ddp-cancel", 10, LONG, env, tasks=2, after_step=1)


def newest_checkpoint_on_disk(run_dir: Path) -> int | None:
    """Step of the newest checkpoint if it is committed and no write is under way; None otherwise."""
    files = [p.name for p in run_dir.iterdir()]
    if any(".tmp-" in name for name in files):
        return None
    on_disk = max(int(m.group(1)) for name in files if (m := re.fullmatch(r"ckpt-step(\d+)\.pt", name)))
    committed = read_json(run_dir / "manifest.json").get("checkpoints", [])
    return on_disk if committed and committed[-1]["step"] == on_disk else None


def freeze_between_writes(run_dir: Path, pid: int) -> int:
    """SIGSTOP the trainer at a moment when no checkpoint write is under way; the newest committed step.
    The step it is at is then bounded: at most K steps past that checkpoint (a save is due every K)."""
    for _ in range(100):
        os.kill(pid, signal.SIGSTOP)
        wait_for(lambda: Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T", 5,
                 interval=0.01, what="the trainer to stop")
        newest = newest_checkpoint_on_disk(run_dir)
        if newest is not None:
            return newest
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("never caught the trainer between two checkpoint writes")


def drive_sigkill(ctx: Ctx) -> dict:
    """SIGKILL the trainer (not the job) in mid-run, as the OOM killer does: its supervisor requeues the job."""
    t0 = time.monotonic()
    job, run_dir, output = ctx.submit_train("e2e-sigkill", 5, SHORT, ctx.sbatch_env())
    res = {"job": job, "run_dir": run_dir, "outputs": [output]}
    wait_for(lambda: [e for e in kinds(run_dir, "checkpoint") if e["step"] >= 2 * SHORT_K], 180,
             what="two checkpoints")
    time.sleep(0.3)  # a few steps past that checkpoint: the kill lands inside a checkpoint interval
    pid = read_json(run_dir / "status.json")["pid"]
    res["pid"], res["lock_pid"] = pid, read_json(run_dir / "lock.json").get("pid")
    newest = freeze_between_writes(run_dir, pid)
    res["kill_step_max"] = newest + SHORT_K
    res["kill_step_min"] = max(e["step"] for e in kinds(run_dir, "checkpoint"))
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: kinds(run_dir, "crash"), 60, what="the crash event")
    return job_ended(ctx, res, t0)


def kill_trainer_after_progress(run_dir: Path, after_step: int) -> dict:
    """SIGKILL the trainer once it has committed a checkpoint past `after_step`; its resume/start event."""
    def progressed():
        started = kinds(run_dir, "start", "resume")
        return started and [e for e in kinds(run_dir, "checkpoint")
                            if e["pid"] == started[-1]["pid"] and e["step"] > after_step]
    wait_for(progressed, 180, what=f"a checkpoint past step {after_step}")
    started = kinds(run_dir, "start", "resume")[-1]
    os.kill(started["pid"], signal.SIGKILL)
    return started


def drive_crash_cap(ctx: Ctx) -> dict:
    """--max-crash-retries 1: the first crash is retried, the second (after progress) is not."""
    t0 = time.monotonic()
    job, run_dir, output = ctx.submit_train("e2e-crashcap", 5, SHORT + ["--max-crash-retries", "1"],
                                            ctx.sbatch_env())
    res = {"job": job, "run_dir": run_dir, "outputs": [output]}
    kill_trainer_after_progress(run_dir, 0)
    wait_for(lambda: kinds(run_dir, "resume"), 120, what="the rerun after the first crash")
    kill_trainer_after_progress(run_dir, kinds(run_dir, "resume")[-1]["step"])
    return job_ended(ctx, res, t0, until_gone=True)


def drive_diverged(ctx: Ctx) -> dict:
    """--lr 1000: the run diverges in its first epoch; the job must end, not requeue itself."""
    t0 = time.monotonic()
    job, run_dir, output = ctx.submit_train("e2e-diverged", 5, SHORT + ["--lr", "1000"], ctx.sbatch_env())
    res = {"job": job, "run_dir": run_dir, "outputs": [output]}
    res["info"] = wait_job_state(job, TERMINAL, ctx.env, timeout=JOB_TIMEOUT)
    wait_for(lambda: gone(job, ctx.env), 60, what=f"job {job} to end")
    time.sleep(3)  # a requeue, were there one, would show by now
    res["info"] = job_info(job, ctx.env)
    res["wall"] = time.monotonic() - t0
    res["final"] = status_json(ctx.runs, run_dir.name, ctx.env)
    return res


def drive_requeue_cap(ctx: Ctx) -> dict:
    """--max-requeues 1, USR2 by hand (scancel --batch --signal) rather than by the time limit: seconds."""
    t0 = time.monotonic()
    job, run_dir, output = ctx.submit_train("e2e-cap", 5, SHORT + ["--max-requeues", "1"], ctx.sbatch_env())
    res = {"job": job, "run_dir": run_dir, "outputs": [output]}
    wait_for(lambda: kinds(run_dir, "start"), 180, what="the run's start")
    signal_batch(job, "USR2", ctx.env)
    wait_for(lambda: kinds(run_dir, "requeue"), 60, what="the first requeue")
    # Hold the requeued job: status.py and resume.py see it PENDING for as long as they need.
    wait_for(lambda: scontrol(["hold", job], ctx.env).returncode == 0, 30, what=f"scontrol hold {job}")
    try:
        wait_for(lambda: squeue_state(job, ctx.env) == "PENDING", 60, what=f"job {job} pending")
        with ThreadPoolExecutor(2) as pool:
            pending = pool.submit(status_json, ctx.runs, run_dir.name, ctx.env)
            refused = pool.submit(resume, ctx.runs, run_dir.name, ctx.env)
            res["pending_status"], res["refused"] = pending.result(), refused.result()
    finally:
        scontrol(["release", job], ctx.env)
    wait_for(lambda: kinds(run_dir, "resume"), 120, what="the rerun")
    signal_batch(job, "USR2", ctx.env)
    return job_ended(ctx, res, t0, timeout=60, until_gone=True)


def drive_example_workload(ctx: Ctx) -> dict:
    """examples/char_lm.py, a workload that is not the ResNet, through scripts/run.py in a batch job the way
    the batch scripts run a trainer: USR2 by hand once it trains; it saves, requeues itself and finishes.
    Its reference: the same run, uninterrupted, here."""
    t0 = time.monotonic()
    text = ctx.out / "example-text.txt"
    text.write_text(" ".join(f"word{i % 37} step{i % 11}" for i in range(3000)))
    config = json.dumps({"text": str(text), "context": 16, "batch_size": 8, "embed": 16, "hidden": 32,
                         "steps_per_epoch": 30, "epochs": 4})
    run_args = ["--workload", "examples.char_lm:WORKLOAD", "--config", config, "--runs-dir", str(ctx.runs),
                "--checkpoint-every-steps", "5"]
    trainer = [PY, "scripts/run.py", *run_args, "--run-id", "e2e-example", "--resume-if-exists"]
    job = sbatch(["--job-name=e2e-example", "--time=5", "--cpus-per-task=1", "--gres=gpu:0", "--mem=1G", "--requeue",
                  "--open-mode=append", f"--output={ctx.out}/e2e-example-%j.out",
                  "--wrap", "trap '' USR2; exec " + shlex.join([PY, "-m", "jobs.supervise", "--", *trainer])],
                 ctx.sbatch_env(paced=True), cwd=REPO)
    SUBMITTED.append(job)
    run_dir = ctx.runs / "e2e-example"
    res = {"job": job, "run_dir": run_dir, "outputs": [ctx.out / f"e2e-example-{job}.out"]}
    wait_for(lambda: kinds(run_dir, "first-step"), 180, what="the example's first step")
    signal_batch(job, "USR2", ctx.env)
    job_ended(ctx, res, t0)
    done = script(["scripts/run.py", *run_args, "--run-id", "ref-example"], ctx.env)
    assert done.returncode == 0, done.stderr
    res["reference"] = status_json(ctx.runs, "ref-example", ctx.env)
    return res


@pytest.fixture(scope="module")
def stops_phase(ctx, refs):
    return run_phase({"scancel": drive_scancel, "sigkill": drive_sigkill, "cap": drive_requeue_cap,
                      "crash-cap": drive_crash_cap, "diverged": drive_diverged, "example": drive_example_workload,
                      "ddp-scancel": drive_ddp_scancel}, ctx)


def test_a_cancelled_two_task_run_resubmitted_by_resume_py_ends_bit_exact(stops_phase, refs):
    res = stops_phase["ddp-scancel"].result()
    events = read_events(res["run_dir"])
    report("scancel + resume.py, 2 tasks", res, stop_resume_steps=lost_steps(events))
    why = explain(res)
    assert res["info"]["JobState"] == "CANCELLED" and res["new_info"]["JobState"] == "COMPLETED", why
    stops = [e for e in events if e["event"] == "stop"]
    assert len(stops) == 1 and stops[0]["signal"] == "SIGTERM" and stops[0]["checkpoint_ok"], why
    assert lost_steps(events) == [(stops[0]["step"], stops[0]["step"])], why
    resumed = [e for e in events if e["event"] == "resume"]
    assert resumed and all(e["world_size"] == 2 for e in resumed), why  # resubmitted with its 2 tasks
    if TWO_NODES:  # and its 2 nodes
        assert res["new_info"]["NodeList"] == "node[0-1]", brief(res["new_info"])
    assert res["final"]["model_digest"] == refs.get("ddp")["digest"], why


def test_scancel_then_resume_py(stops_phase, refs):
    res = stops_phase["scancel"].result()
    events = read_events(res["run_dir"])
    stops = [e for e in events if e["event"] == "stop"]
    pairs = lost_steps(events)
    res["requeues"] = len([e for e in events if e["event"] == "requeue"])
    report("scancel + resume.py", res, jobs=f"{res['job']}->{res['new_job']}", stop_resume_steps=pairs)
    why = explain(res)
    # scancel: SIGTERM, saved at a step boundary, no requeue
    assert res["info"]["JobState"] == "CANCELLED", brief(res["info"])
    assert [e["signal"] for e in stops] == ["SIGTERM"] and stops[0]["checkpoint_ok"], why
    assert res["requeues"] == 0 and res["info"]["Restarts"] == "0", why
    stopped = res["stopped"]
    assert stopped["state"] == "stopped" and "resume.py" in stopped["hint"], stopped
    assert stopped["last_checkpoint_step"] == stopped["step"] == stops[0]["step"] < SHORT_STEPS, stopped
    # resume.py resubmitted it as a new job, which finished the run without losing a step
    assert res["new_job"] != res["job"] and res["new_info"]["JobState"] == "COMPLETED", brief(res["new_info"]) + why
    assert pairs == [(stops[0]["step"], stops[0]["step"])], why
    final = res["final"]
    assert final["state"] == "completed" and final["step"] == SHORT_STEPS and final["slurm_job_id"] == str(
        res["new_job"]), final
    assert final["model_digest"] == refs.get("short")["digest"], why


def test_sigkill_of_the_trainer_is_retried_by_a_requeue(stops_phase, refs):
    res = stops_phase["sigkill"].result()
    events = read_events(res["run_dir"])
    resumes = [e for e in events if e["event"] == "resume"]
    lost_max = res["kill_step_max"] - resumes[0]["step"] if resumes else None
    report("trainer SIGKILLed in its job, requeued by the supervisor", res,
           kill_step=f"{res['kill_step_min']}..{res['kill_step_max']}",
           resumed_at=resumes[0]["step"] if resumes else None, lost_steps_at_most=lost_max)
    why = explain(res)
    assert res["pid"] == res["lock_pid"], "status.json and lock.json name different processes"
    assert res["info"]["JobState"] == "COMPLETED" and res["info"]["Restarts"] == "1", brief(res["info"]) + why
    assert not [e for e in events if e["event"] in ("signal", "stop")], why  # no warning, no final save
    (crash,) = [e for e in events if e["event"] == "crash"]
    assert crash["exit_status"] == "killed by SIGKILL" and crash["requeued"] is True, why
    assert crash["reason"] == "crash retry 1 of 3" and crash["slurm_job_id"] == str(res["job"]), why
    assert res["kill_step_min"] <= crash["step"] <= res["kill_step_max"], why  # where it died, exactly
    (requeue,) = [e for e in events if e["event"] == "requeue"]
    assert requeue["via"] == "crash" and requeue["step"] == crash["committed_step"], why
    assert [e["event"] for e in events].count("lock-broken") == 1, why  # the dead holder's record
    assert len(resumes) == 1 and resumes[0]["step"] == crash["committed_step"], why
    assert resumes[0]["step"] >= res["kill_step_max"] - SHORT_K, why  # lost <= K steps
    final = res["final"]
    assert final["state"] == "completed" and final["step"] == SHORT_STEPS and final["restarts"] == 1, final
    assert final["model_digest"] == refs.get("short")["digest"], why


def test_crash_retry_cap(stops_phase):
    res = stops_phase["crash-cap"].result()
    events = read_events(res["run_dir"])
    crashes = [e for e in events if e["event"] == "crash"]
    report("crash retry cap (--max-crash-retries 1)", res, crashes=[(c["step"], c["reason"]) for c in crashes])
    why = explain(res)
    assert [c["requeued"] for c in crashes] == [True, False], why
    assert crashes[1]["reason"] == "crash retry cap reached (1 of --max-crash-retries 1)", why
    assert crashes[1]["step"] > crashes[0]["step"] and crashes[1]["committed_step"] > crashes[0]["committed_step"]
    assert res["info"]["JobState"] == "FAILED" and res["info"]["ExitCode"] == "137:0", brief(res["info"])
    assert res["info"]["Restarts"] == "1", brief(res["info"])
    final = res["final"]
    assert final["state"] == "stopped" and "resume.py" in final["hint"], final
    assert final["last_checkpoint_step"] == crashes[1]["committed_step"], final


def test_a_diverged_run_is_not_requeued(stops_phase):
    res = stops_phase["diverged"].result()
    events = read_events(res["run_dir"])
    report("diverged (--lr 1000)", res)
    why = explain(res)
    assert res["info"]["JobState"] == "FAILED" and res["info"]["ExitCode"] == "4:0", brief(res["info"]) + why
    assert res["info"]["Restarts"] == "0", brief(res["info"]) + why
    assert [e["event"] for e in events if e["event"] in ("diverged", "crash", "requeue", "finish")] == ["diverged"]
    final = res["final"]
    assert final["state"] == "failed" and "lower the learning rate" in final["hint"], final


def test_resume_py_refuses_a_queued_job_and_status_shows_it_pending(stops_phase):
    res = stops_phase["cap"].result()
    pending, refused = res["pending_status"], res["refused"]
    assert pending["state"] == "queued", pending
    assert pending["slurm_job_id"] == str(res["job"]) and pending["slurm_state"] == "PENDING", pending
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert f"run {res['run_dir'].name} is still in SLURM job {res['job']} (PENDING)" in refused.stderr, refused.stderr
    assert "scancel" in refused.stderr


def test_requeue_cap_stops_requeuing(stops_phase):
    res = stops_phase["cap"].result()
    events = read_events(res["run_dir"])
    res["requeues"] = len([e for e in events if e["event"] == "requeue"])
    res["restarts"] = int(res["info"]["Restarts"])
    errors = [e["message"] for e in events if e["event"] == "error"]
    report("requeue cap (--max-requeues 1)", res, errors=errors)
    why = explain(res)
    assert res["requeues"] == 1 and res["restarts"] == 1, brief(res["info"]) + why
    assert [e["signal"] for e in events if e["event"] == "stop"] == ["SIGUSR2", "SIGUSR2"], why
    assert errors == ["not requeued: requeue cap reached (1 of --max-requeues 1)"], why
    assert res["info"]["JobState"] == "FAILED" and res["info"]["ExitCode"] == "75:0", brief(res["info"])  # EXIT_STOPPED
    assert res["final"]["state"] == "stopped" and res["final"]["slurm_state"] == "FAILED", res["final"]
    last_stop = [e for e in events if e["event"] == "stop"][-1]
    assert last_stop["checkpoint_ok"] and res["final"]["last_checkpoint_step"] == last_stop["step"], why


def test_another_workload_requeues_itself_to_the_end(stops_phase):
    """jobs/ is generic: examples/char_lm.py, not the ResNet, stops on USR2 in its batch job, requeues itself
    and finishes, with the weights of the uninterrupted run."""
    res = stops_phase["example"].result()
    events = read_events(res["run_dir"])
    requeues = [e for e in events if e["event"] == "requeue"]
    res["requeues"] = len(requeues)
    report("examples/char_lm.py via scripts/run.py", res, jobs=res["job"], stop_resume_steps=lost_steps(events))
    why = explain(res)
    assert res["info"]["JobState"] == "COMPLETED" and res["info"]["Restarts"] == "1", brief(res["info"]) + why
    assert [e["signal"] for e in requeues] == ["SIGUSR2"], why
    final = res["final"]
    assert final["state"] == "completed" and final["model"] == "char-gru-32" and final["restarts"] == 1, final
    assert final["model_digest"] == res["reference"]["model_digest"], why


# -- phase 4: a node lost (two nodes only; alone on the cluster, as whatever runs on node1 is hit too) -------
COLLECTIVE_S = 15  # JOBS_COLLECTIVE_TIMEOUT_SECONDS of these runs: how long a rank waits for the other, at most


def update_node1(state: str, env: dict) -> None:
    done = scontrol(["update", "nodename=node1", f"state={state}", *(["reason=e2e-test"] if state == "down" else [])],
                    env)
    assert done.returncode == 0, done.stderr


def node1_state(env: dict) -> str:
    """IDLE, MIXED, DOWN, DOWN+NOT_RESPONDING, ... (not sinfo -n: without -N it answers for the partition)."""
    return scontrol(["show", "node", "-o", "node1"], env).stdout.split("State=", 1)[1].split()[0]


def set_link_of_node1(state: str) -> None:
    subprocess.run(["ip", "netns", "exec", "node1", "ip", "link", "set", "eth0", state], check=True, timeout=30)


def sacct_states(job: int, env: dict) -> list[str]:
    """The state of each run of the job, requeued ones too (sacct --duplicates), oldest first."""
    done = subprocess.run(["sacct", "-n", "-X", "-D", "-P", "-j", str(job), "-o", "State"], env=env,
                          capture_output=True, text=True, timeout=30)
    return done.stdout.split()


def two_node_run(ctx: Ctx, name: str, env: dict) -> dict:
    """A 2-task run of LONG (unpaced), once it committed a checkpoint in mid-run: its `res`."""
    job, run_dir, output = ctx.submit_train(name, 10, LONG, env, tasks=2)
    res = {"job": job, "run_dir": run_dir, "outputs": [output], "t0": time.monotonic()}
    wait_for(lambda: [e for e in kinds(run_dir, "checkpoint") if e["step"] >= 30], 240,
             what="a checkpoint in mid-run")
    res["committed_before"] = max(e["step"] for e in kinds(run_dir, "checkpoint"))
    return res


def drive_node_down(ctx: Ctx) -> dict:
    """node1 set DOWN under a 2-node run: SLURM kills the job and requeues it (--requeue); it resumes from its
    last committed checkpoint once node1 is back."""
    res = two_node_run(ctx, "e2e-node-down", dict(ctx.sbatch_env(), SBATCH_SIGNAL="USR2@20"))
    job = res["job"]
    try:
        update_node1("down", ctx.env)
        # requeued, and waiting for node1 (a node set DOWN stays DOWN: ReturnToService=1)
        res["requeued"] = wait_for(lambda: (info := job_info(job, ctx.env)).get("Restarts") == "1"
                                   and info.get("JobState") == "PENDING" and info, 120, what=f"job {job} requeued")
        time.sleep(5)  # it stays pending while node1 is down (the requeued job may run after cred_expire, 5 s)
        res["pending"], res["down_state"] = job_info(job, ctx.env), node1_state(ctx.env)
    finally:
        if node1_state(ctx.env).startswith("DOWN"):
            update_node1("resume", ctx.env)
    job_ended(ctx, res, res["t0"])
    res["sacct"] = sacct_states(job, ctx.env)
    return res


def drive_network_cut(ctx: Ctx) -> dict:
    """node1's network cut under a 2-node run: rank 0 (node0) exits within the collective timeout with a
    `peer-lost` error, its supervisor requeues the job; the link comes back and the run continues."""
    env = dict(ctx.sbatch_env(), SBATCH_SIGNAL="USR2@20", JOBS_COLLECTIVE_TIMEOUT_SECONDS=str(COLLECTIVE_S))
    res = two_node_run(ctx, "e2e-network-cut", env)
    job = res["job"]
    try:
        set_link_of_node1("down")
        cut = time.monotonic()
        (lost,) = wait_for(lambda: [e for e in kinds(res["run_dir"], "error") if e.get("cause") == "peer-lost"],
                           COLLECTIVE_S + 60, what="rank 0's peer-lost error")
        res["lost_after"] = time.monotonic() - cut
        wait_for(lambda: kinds(res["run_dir"], "requeue"), 60, what="the supervisor's requeue")
        res["requeued_after"] = time.monotonic() - cut
    finally:
        set_link_of_node1("up")
    job_ended(ctx, res, res["t0"])
    res["sacct"] = sacct_states(job, ctx.env)
    return res


def drive_node_failures(ctx: Ctx) -> dict:
    """One after the other: both hit node1."""
    results = {}
    for name, driver in (("down", drive_node_down), ("cut", drive_network_cut)):
        future: Future = Future()
        try:
            future.set_result(driver(ctx))
        except BaseException as e:  # noqa: BLE001 - the test that reads it raises it
            future.set_exception(e)
        results[name] = future
    return results


@pytest.fixture(scope="module")
def nodes_phase(ctx, refs):
    if not TWO_NODES:
        pytest.skip("SLURM_DEV_NODES=1: one node")
    return run_phase({"nodes": drive_node_failures}, ctx)["nodes"].result()


def test_a_node_set_down_requeues_the_run_which_resumes_bit_exact(nodes_phase, refs):
    res = nodes_phase["down"].result()
    events = read_events(res["run_dir"])
    report("node1 DOWN under a 2-node run", res, sacct=res["sacct"], stop_resume_steps=lost_steps(events),
           stops=[e["signal"] for e in events if e["event"] == "stop"])
    why = explain(res)
    assert res["down_state"] == "DOWN" and res["pending"]["JobState"] == "PENDING", brief(res["pending"])
    assert res["info"]["JobState"] == "COMPLETED" and res["info"]["Restarts"] == "1", brief(res["info"]) + why
    assert res["sacct"] == ["NODE_FAIL", "COMPLETED"], res["sacct"]
    resumed = [i for i, e in enumerate(events) if e["event"] == "resume"]
    assert len(resumed) == 1 and events[resumed[0]]["world_size"] == 2, why
    # from the newest checkpoint the first job committed (SLURM's SIGTERM to the job: a save at a step boundary)
    committed = max(e["step"] for e in events[:resumed[0]] if e["event"] == "checkpoint")
    assert events[resumed[0]]["step"] == committed >= res["committed_before"], why
    assert res["final"]["model_digest"] == refs.get("ddp")["digest"], why


def test_a_network_cut_ends_in_peer_lost_and_the_requeued_run_resumes_bit_exact(nodes_phase, refs):
    res = nodes_phase["cut"].result()
    events = read_events(res["run_dir"])
    report("node1's network cut under a 2-node run", res, lost_after=f"{res['lost_after']:.1f} s",
           requeued_after=f"{res['requeued_after']:.1f} s", sacct=res["sacct"])
    why = explain(res)
    assert res["lost_after"] < COLLECTIVE_S + 20, why  # within the collective timeout, not a hang
    (lost,) = [e for e in events if e["event"] == "error"]
    assert lost["cause"] == "peer-lost" and lost["rank"] == 0, why
    (crash,) = [e for e in events if e["event"] == "crash"]
    assert crash["exit_code"] == 1 and crash["requeued"] is True, why
    (requeue,) = [e for e in events if e["event"] == "requeue"]
    assert requeue["via"] == "crash" and requeue["step"] == crash["committed_step"], why
    resumed = [e for e in events if e["event"] == "resume"]
    assert len(resumed) == 1 and resumed[0]["step"] == crash["committed_step"], why
    assert res["info"]["JobState"] == "COMPLETED" and res["info"]["Restarts"] == "1", brief(res["info"]) + why
    assert res["final"]["model_digest"] == refs.get("ddp")["digest"], why
