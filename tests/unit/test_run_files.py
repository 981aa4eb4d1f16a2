"""The run directory's small files: events appended whole, torn lines skipped, the pids that prove a holder gone."""
import os
import socket
import time

from jobs.run.files import read_json_lines
from jobs.run.processes import alive, dead_here
from jobs.run.run_dir import RunDir


def test_a_torn_last_line_never_costs_the_next_event(tmp_path):
    run = RunDir(tmp_path, "torn")
    run.path.mkdir()
    run.events_file.write_text('{"event": "start", "step": 0}\n{"event": "checkpoint", "st')  # cut by a crash
    run.event("resume", 5)
    run.event("finish", 9)
    assert [(e["event"], e["step"]) for e in run.events()] == [("start", 0), ("resume", 5), ("finish", 9)]
    lines = run.events_file.read_text().splitlines()
    assert lines[1] == '{"event": "checkpoint", "st' and len(lines) == 4  # the torn line stays on its own


def test_a_torn_line_anywhere_is_skipped_and_a_kind_is_read_alone(tmp_path):
    log = tmp_path / "events.jsonl"
    log.write_text('{"event": "start"}\n{"event": "resu\n[1, 2]\n{"event": "resume", "step": 3}\n')
    assert read_json_lines(log) == [{"event": "start"}, {"event": "resume", "step": 3}]
    assert read_json_lines(log, containing="resume") == [{"event": "resume", "step": 3}]
    assert read_json_lines(tmp_path / "missing.jsonl") == []


def test_a_holder_is_gone_only_when_its_pid_is_dead_on_this_host():
    here = socket.gethostname()
    zombie = os.fork()
    if zombie == 0:
        os._exit(0)  # a child that has exited and that nobody has reaped yet
    time.sleep(0.2)
    assert not alive(zombie)
    os.waitpid(zombie, 0)
    assert alive(os.getpid()) and not alive(2**22 + 7) and not alive(None)
    assert dead_here({"host": here, "pid": 2**22 + 7}) and not dead_here({"host": here, "pid": os.getpid()})
    assert not dead_here({"host": "another-node", "pid": 2**22 + 7})  # nothing is proven on another host
