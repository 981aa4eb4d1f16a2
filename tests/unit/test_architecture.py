"""The shape of jobs/ (docs/design.md, "Layout"), checked from its source: sizes, one-way arrows, light package
files, torch-free tools, and citations of the design that resolve."""
import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "jobs"
MODULES = sorted(JOBS.rglob("*.py"))
# the shared modules at the top of jobs/: every package may use them, and they use no package
SHARED = {"errors", "exit_codes", "environment", "workload", "readable", "signals", "step_file", "testing"}
# modules that sit above everything: the entry points' helpers, and the shim of a persisted name
ON_TOP = {"cli", "submitit_job"}
# what status.py, resume.py (before it trains) and the supervisor run: they must not import torch
TORCH_FREE = ["jobs.status.summary", "jobs.status.table", "jobs.supervise.supervisor", "jobs.supervise.crash",
              "jobs.cli", "jobs.checkpoint.manifest", "jobs.slurm.requeue", "jobs.signals"]


def name_of(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, module_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def part_of_jobs(name: str) -> str:
    """The package (or shared module) of jobs/ that a module belongs to: jobs.train.trainer -> train."""
    return name.split(".")[1]


def test_no_module_over_300_lines_no_class_over_150_and_a_short_loop():
    for path in MODULES:
        lines = len(path.read_text().splitlines())
        assert lines <= 300, f"{name_of(path)}: {lines} lines"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                length = node.end_lineno - node.lineno + 1
                assert length <= 150, f"{name_of(path)}.{node.name}: {length} lines"
    trainer = ast.parse((JOBS / "train" / "trainer.py").read_text())
    (loop,) = [n for n in ast.walk(trainer) if isinstance(n, ast.FunctionDef) and n.name == "_loop"]
    assert loop.end_lineno - loop.lineno + 1 <= 80


def test_jobs_never_imports_a_workload():
    for path in MODULES:
        workloads = {name for name in imports(path) if name.split(".")[0] in ("resnet", "examples")}
        assert not workloads, f"{name_of(path)} imports {workloads}"


def test_the_arrows_between_the_packages_point_one_way():
    graph: dict[str, set[str]] = {}
    for path in MODULES:
        if path.relative_to(JOBS).parts[0] == "__init__.py":
            continue
        mine = part_of_jobs(name_of(path))
        used = {part_of_jobs(name) for name in imports(path) if name.startswith("jobs.")} - {mine}
        graph.setdefault(mine, set()).update(used)
    for shared in SHARED:
        assert graph.get(shared, set()) <= SHARED, f"jobs.{shared} imports {graph[shared] - SHARED}"
    for part, used in graph.items():
        assert not used & ON_TOP or part in ON_TOP, f"jobs.{part} imports {used & ON_TOP}"

    def reachable(start: str, seen: set[str]) -> set[str]:
        for nxt in graph.get(start, set()) - seen:
            seen.add(nxt)
            reachable(nxt, seen)
        return seen

    cycles = [part for part in graph if part in reachable(part, set())]
    assert not cycles, f"packages that import themselves through others: {cycles}"


def test_package_init_files_are_light():
    for init in JOBS.rglob("__init__.py"):
        body = ast.parse(init.read_text()).body
        assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body), init


@pytest.mark.parametrize("module", TORCH_FREE)
def test_what_status_resume_and_the_supervisor_run_imports_no_torch(module):
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = REPO / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if not path.exists():  # an attribute of a module (from jobs.x import y), or not ours
            continue
        found = imports(path, module_level_only=True)
        assert not {n for n in found if n.split(".")[0] == "torch"}, f"{name} imports torch (from {module})"
        todo += [n for n in found if n.startswith("jobs.")]
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(2, len(parts))]  # the packages it sits in


def headings(markdown: str) -> set[str]:
    return {line.lstrip("#").strip() for line in markdown.splitlines() if line.startswith("#")}


def test_every_citation_of_the_design_resolves_to_a_section_of_it():
    design = headings((REPO / "docs" / "design.md").read_text())
    invariants = {int(m.group(1)) for h in design for m in [re.match(r"Invariant (\d+):", h)] if m}
    assert invariants == set(range(1, 8))
    sources = [p for p in REPO.rglob("*") if p.suffix in (".py", ".md", ".sh") and ".git" not in p.parts
               and "data" not in p.relative_to(REPO).parts[:2] and p != REPO / "docs" / "design.md"]
    cited = 0
    for path in sources:
        text = path.read_text()
        for match in re.finditer(r"docs/design\.md, invariants? ([\d, and]+)", text):
            numbers = {int(n) for n in re.findall(r"\d+", match.group(1))}
            assert numbers <= invariants, f"{path}: {match.group(0)}"
            cited += 1
        for match in re.finditer(r'docs/design\.md, "([^"]+)"', text):
            assert match.group(1) in design, f"{path}: {match.group(0)}"
            cited += 1
        assert "DESIGN" + " invariant" not in text, path  # the old form, citing no document of this repository
    assert cited >= 10


def test_the_designs_layout_names_every_module_once():
    design = (REPO / "docs" / "design.md").read_text()
    block = design.split("## Layout", 1)[1].split("```")[1]
    listed = sorted(re.findall(r"^\s+([a-z_]+\.py)\s", block, flags=re.M))
    assert listed == sorted(p.name for p in MODULES if p.name != "__init__.py")
