"""scripts/report.py (the curves and the results table) and status.py's in-terminal accuracy curve."""
import struct
import sys

import pytest

from tests.helpers_runs import LONG_STEPS, call, copy_run

pytestmark = pytest.mark.usefixtures("hermetic")


@pytest.fixture
def two_runs(tmp_path, reference):
    """The reference run, and a copy of it under another id that was cut and resumed once."""
    copy_run(reference, tmp_path)
    resumed = copy_run(reference, tmp_path / "other", cut_at=LONG_STEPS - 14)  # an epoch end: kept
    resumed.rename(tmp_path / "cut")
    code, out, err = call("resume", "--run-id", "cut", "--runs-dir", tmp_path, "--local")
    assert code == 0, err
    return tmp_path


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", data[:16]
    return struct.unpack(">II", data[16:24])


def test_report_writes_one_png_and_a_table_row_per_run(two_runs):
    output = two_runs / "report.png"
    code, out, err = call("report", "ref", "cut", "--runs-dir", two_runs, "--output", output)
    assert code == 0, err
    data = output.read_bytes()
    assert png_size(data) == (1500, 420) and 20_000 < len(data) < 1_000_000
    header, *rows = [line.strip("| ").split(" | ") for line in out.splitlines() if line.startswith("| ")]
    assert header[:4] == ["run", "model", "epochs", "best validation accuracy"] and "test accuracy" in header
    assert [row[0] for row in rows] == ["ref", "cut"]
    assert [row[header.index("restarts")] for row in rows] == ["0", "1"]
    assert all(row[header.index("speed")].endswith(" img/s") for row in rows)
    assert all(row[1] == "resnet-8 standard" and row[2] == "10/10" for row in rows)


def test_without_matplotlib_the_table_comes_and_the_plot_is_explained(two_runs, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    code, out, err = call("report", "--all", "--runs-dir", two_runs, "--output", two_runs / "r.png")
    assert code == 0, err
    assert "| ref |" in out and "| cut |" in out
    assert "no plot: matplotlib is not installed (pip install -e '.[plot]')" in err
    assert not (two_runs / "r.png").exists()


def test_status_of_one_run_shows_its_accuracy_curve(two_runs):
    code, out, err = call("status", "--run-id", "ref", "--runs-dir", two_runs)
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("validation accuracy "))
    assert "best" in line and "(epochs 1–10)" in line


@pytest.mark.parametrize("output, message", [("report", "--output: name a .png file, got "),
                                             ("missing/r.png", "--output: no directory ")])
def test_a_bad_output_is_refused_before_anything_is_printed(two_runs, output, message):
    code, out, err = call("report", "ref", "--runs-dir", two_runs, "--output", two_runs / output)
    assert code == 2 and message in err and out == ""
    assert not list(two_runs.glob("report*"))
