"""scripts/check_workload.py: a workload's resume checked in seconds, each resume continued in a fresh process
(forked from a server that imported torch, not the workload). Exact workloads pass; one that forgets its optimizer,
one whose loader shuffles from an unsaved generator and one whose epoch starts over after a resume are named for
what first differs. The script runs in this process (its main(), through run_main), but once as a command."""
import subprocess
from types import SimpleNamespace

import pytest

from tests.helpers_runs import PYTHON, REPO, SCRIPTS, call, clean_env

pytestmark = pytest.mark.usefixtures("hermetic")


def check(workload: str, config: str = "{}"):
    code, out, err = call("check_workload", "--workload", workload, "--config", config)
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


def test_it_is_a_command_too():
    done = subprocess.run([PYTHON, str(SCRIPTS / "check_workload.py"), "--workload", "examples.spirals:WORKLOAD",
                           "--config", '{"points": 256, "batch_size": 32, "epochs": 2, "workers": 2}'], cwd=REPO,
                          env=clean_env(), capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "exact: examples.spirals:WORKLOAD resumes bit-identically" in done.stdout


@pytest.mark.parametrize("workload, config", [
    ("examples.spirals:WORKLOAD", '{"points": 256, "batch_size": 32, "epochs": 2, "workers": 2}'),
    ("examples.char_lm:WORKLOAD", '{"text": "README.md", "steps_per_epoch": 6, "epochs": 2, "hidden": 16}'),
    ("resnet.task:WORKLOAD", '{"synthetic": 256, "size": 1, "batch_size": 32, "epochs": 2, "device": "cpu"}'),
])
def test_the_examples_resume_exactly(workload, config):
    done = check(workload, config)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(f"exact: {workload} resumes bit-identically at step "), done.stdout
    assert "(an epoch end) and step " in done.stdout and "(inside an epoch)" in done.stdout


@pytest.mark.parametrize("workload, named", [
    ("FORGETS_ITS_OPTIMIZER", ["resumed at step 4 (an epoch end): task.optimizer (an optimizer) is not what it was "
                               "when the checkpoint was taken: its state (momentum, Adam's moments, its step count) "
                               "is not in state_dict()"]),
    ("LOOPS_OVER_A_LOADER", ["resumed at step 4 (an epoch end): task.loader (a data loader) is not what it was when "
                             "the checkpoint was taken: it shuffles from a generator that state_dict() does not hold"]),
    ("SHUFFLES_FROM_THE_GLOBAL_RNG", ["resumed at step 6 (inside an epoch): step 7 trained on other data or other "
                                      "random numbers than the uninterrupted run"]),
])
def test_what_first_differs_is_named(workload, named):
    done = check(f"tests.broken_workloads:{workload}")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and all(line.startswith("not exact: ") for line in lines), done.stderr
    assert lines[0].startswith(f"not exact: {named[0]}"), lines


def test_a_config_too_short_for_the_check_is_one_line():
    done = check("examples.spirals:WORKLOAD", '{"points": 64, "batch_size": 32, "epochs": 1, "workers": 0}')
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: the check trains 7 steps (it resumes at step 2 (an epoch end) and step 5 "
                                   "(inside an epoch)), but this config has only 2: give it more epochs")
