"""Mutation testing of the pure core, run by hand (not in CI): would the tests notice a flipped operator?

For each operator in a target module, one mutant at a time:

- a comparison is negated (== !=, < >=, <= >, in / not in, is / is not), and an ordering comparison
  is also moved across its boundary (< <=, > >=): the off-by-one a boundary test must catch;
- `and` becomes `or` and `or` becomes `and` (the whole boolean expression);
- a `not` is removed.

The project is copied to a temporary directory first (the files `git ls-files` lists, tracked and
untracked-but-not-ignored, as they are in the working tree; or, with --rev, a commit's files, so a
half-finished edit elsewhere in a shared tree does not count), and every mutant is written over the
module *in that copy*, never in the working tree others edit; the copy's module is restored after each
run (also on Ctrl-C / SIGTERM) and the copy is deleted at the end. Each mutant runs
`python -m pytest -x -q <tests>` in the copy with the copy first on PYTHONPATH, under a timeout.
Failing tests (or a mutant that breaks the import) kill it; a timeout counts as killed; a pass is a
survivor. Mutants are generated with `ast` and written back with `ast.unparse`, so the unmutated
modules are first run the same way as a baseline, which must pass.

Usage (from the project root, in the venv):

    python tools/mutate.py                                   # the defaults below, --min-score 90
    python tools/mutate.py connector/plan.py --tests tests/test_plan.py
    python tools/mutate.py --list connector/validation.py    # the mutants, nothing run
    python tools/mutate.py --jobs 2 --timeout 120            # two copies in parallel
    python tools/mutate.py --rev HEAD                        # a commit, not the working tree

It prints one row per module (mutants, killed, survived, timeout, excluded, score = killed /
(mutants - excluded)) and every survivor with its line number, and exits 1 when any module scores
below --min-score. conftest.py is not loaded (`--noconftest`, the pure tests need none of its
fixtures, and it imports the whole engine); pass --conftest for a selection that needs it.

Equivalent mutants (no test can tell them apart from the original) are excluded only through
EQUIVALENT below, each with its reason.
"""

from __future__ import annotations

import argparse
import ast
import io
import os
import queue
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODULES = ("connector/plan.py", "connector/model.py", "connector/mapping.py", "connector/validation.py")
DEFAULT_TESTS = ("tests/test_plan.py", "tests/test_model.py", "tests/test_mapping.py", "tests/test_validation.py")

# (module, the original expression as ast.unparse writes it, mutation) -> why no test can kill it.
EQUIVALENT: dict[tuple[str, str, str], str] = {
    (
        "connector/validation.py",
        "remote_id is not None and title is not None and (description is not None)",
        "and -> or",
    ): "an assert narrowing types for mypy after `if errors.items: return`; every operand is true there, so `or` is true too",
    (
        "connector/validation.py",
        "start is not None and duration is not None and tz_name and organizer and application_ids",
        "and -> or",
    ): "an assert narrowing types for mypy after `if errors.items: return`; every operand is true there, so `or` is true too",
    (
        "connector/mapping.py",
        "len(seen_at) > 1",
        "> -> >=",
    ): "seen_at is () or a `repeated` list, which starts with two positions: its length is never 1",
}

NEGATE: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.LtE: ast.Gt,
    ast.Gt: ast.LtE,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
BOUNDARY: dict[type[ast.cmpop], type[ast.cmpop]] = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
SYMBOL = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}


@dataclass(frozen=True)
class Mutant:
    module: str  # path relative to the project root
    node_index: int  # position of the mutated node in ast.walk order
    op_index: int  # which operator of a chained comparison; 0 otherwise
    replacement: type[ast.AST] | None  # the new operator; None: remove the `not`
    line: int
    original: str  # the mutated expression as written by ast.unparse, before the change
    label: str  # e.g. "> -> >=", "and -> or", "not removed"

    @property
    def excluded(self) -> str | None:
        return EQUIVALENT.get((self.module, self.original, self.label))


def mutants_of(module: str, source: str) -> list[Mutant]:
    found: list[Mutant] = []
    for index, node in enumerate(ast.walk(ast.parse(source))):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Compare):
            for op_index, op in enumerate(node.ops):
                for table in (NEGATE, BOUNDARY):
                    new = table.get(type(op))
                    if new is not None:
                        label = f"{SYMBOL[type(op)]} -> {SYMBOL[new]}"
                        found.append(Mutant(module, index, op_index, new, line, ast.unparse(node), label))
        elif isinstance(node, ast.BoolOp):
            new_op: type[ast.boolop] = ast.Or if isinstance(node.op, ast.And) else ast.And
            label = "and -> or" if new_op is ast.Or else "or -> and"
            found.append(Mutant(module, index, 0, new_op, line, ast.unparse(node), label))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            found.append(Mutant(module, index, 0, None, line, ast.unparse(node), "not removed"))
    return sorted(found, key=lambda m: (m.line, m.node_index, m.op_index, m.label))


class _RemoveNot(ast.NodeTransformer):
    def __init__(self, target: ast.AST) -> None:
        self.target = target

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        return node.operand if node is self.target else node


def mutated_source(source: str, mutant: Mutant) -> str:
    tree = ast.parse(source)
    node = list(ast.walk(tree))[mutant.node_index]
    new = mutant.replacement() if mutant.replacement is not None else None
    if isinstance(node, ast.Compare) and isinstance(new, ast.cmpop):
        node.ops[mutant.op_index] = new
    elif isinstance(node, ast.BoolOp) and isinstance(new, ast.boolop):
        node.op = new
    elif isinstance(node, ast.UnaryOp) and new is None:
        tree = _RemoveNot(node).visit(tree)
    else:
        raise ValueError(f"{mutant} does not fit node {ast.dump(node)[:80]}")
    return ast.unparse(ast.fix_missing_locations(tree))


def project_files(root: Path) -> Iterator[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=root, check=True, capture_output=True).stdout.decode()
    for name in listed.split("\0"):
        if name and (root / name).is_file():  # a tracked file deleted in the working tree is skipped
            yield name


def copy_project(root: Path, rev: str | None) -> Path:
    """A copy of the working tree's project files, or of commit `rev` when given."""
    target = Path(tempfile.mkdtemp(prefix="mutate-"))
    if rev is not None:
        archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=root, check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")
        return target
    for name in project_files(root):
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, destination)
    return target


class Runner:
    """Runs pytest in one project copy; knows its child so an interrupt can end it."""

    def __init__(self, copy: Path, tests: list[str], timeout: float, conftest: bool) -> None:
        self.copy = copy
        self.command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *([] if conftest else ["--noconftest"]), *tests]
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(copy), *filter(None, [os.environ.get("PYTHONPATH")])]))
        # No bytecode: a mutant of the same size written within the same second would otherwise
        # be skipped in favour of a stale .pyc.
        self.env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.timeout = timeout
        self.child: subprocess.Popen[bytes] | None = None

    def run(self) -> tuple[str, str]:
        """("killed" | "survived" | "timeout", pytest's last output line)."""
        self.child = subprocess.Popen(self.command, cwd=self.copy, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = self.child.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return "timeout", f"no result after {self.timeout:g} s"
        finally:
            code = self.child.wait()
            self.child = None
        last = (out.decode(errors="replace").strip().splitlines() or [""])[-1]
        if code == 0:
            return "survived", last
        if code in (1, 2):  # tests failed, or collection failed (the mutant broke an import)
            return "killed", last
        raise RuntimeError(f"pytest exited {code}: {last}")

    def stop(self) -> None:
        child = self.child
        if child is not None and child.poll() is None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def run_with(runner: Runner, changes: dict[str, str]) -> tuple[str, str]:
    """Write `changes` (module -> text) into the runner's copy, run the tests, put the originals back."""
    originals = {module: (runner.copy / module).read_text("utf-8") for module in changes}
    try:
        for module, text in changes.items():
            (runner.copy / module).write_text(text, "utf-8")
        return runner.run()
    finally:
        for module, text in originals.items():
            (runner.copy / module).write_text(text, "utf-8")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("modules", nargs="*", default=list(DEFAULT_MODULES), help="modules to mutate, relative to the project root")
    parser.add_argument("--tests", nargs="+", default=list(DEFAULT_TESTS), help="the pytest selection run against each mutant")
    parser.add_argument("--min-score", type=float, default=90.0, help="percent of (non-excluded) mutants each module must kill")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per pytest run; longer counts as killed")
    parser.add_argument("--jobs", type=int, default=1, help="project copies tested in parallel")
    parser.add_argument("--conftest", action="store_true", help="load tests/conftest.py (needed by tests using its fixtures)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the project (a git work tree)")
    parser.add_argument("--rev", help="test this commit (git archive) instead of the working tree, e.g. HEAD")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()

    # Explicitly, also for SIGINT: a shell starting us in the background may have set it to be ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    copies: list[Path] = []
    runners: list[Runner] = []
    try:
        for _ in range(1 if args.list else max(1, args.jobs)):
            copies.append(copy_project(root, args.rev))
            runners.append(Runner(copies[-1], args.tests, args.timeout, args.conftest))
        sources = {module: (copies[0] / module).read_text("utf-8") for module in args.modules}
        mutants = [m for module, source in sources.items() for m in mutants_of(module, source)]
        if args.list:
            for m in mutants:
                note = f"   [excluded: {m.excluded}]" if m.excluded else ""
                print(f"{m.module}:{m.line}  {m.label:<14} {m.original}{note}")
            return 0
        stale = [key for key in EQUIVALENT if key[0] in sources and not any((m.module, m.original, m.label) == key for m in mutants)]
        for key in stale:
            print(f"note: EQUIVALENT entry matches no mutant (the code changed?): {key}", file=sys.stderr)
        started = time.monotonic()
        verdict, last = run_with(runners[0], {module: ast.unparse(ast.parse(source)) for module, source in sources.items()})
        if verdict != "survived":
            print(f"baseline: the tests do not pass on the unmutated modules ({verdict}: {last})", file=sys.stderr)
            return 2
        print(f"baseline passes in {time.monotonic() - started:.1f} s: {last}", file=sys.stderr)

        todo = [m for m in mutants if not m.excluded]
        results: dict[Mutant, str] = {}
        free: queue.Queue[Runner] = queue.Queue()
        for runner in runners:
            free.put(runner)
        lock = threading.Lock()

        def one(m: Mutant) -> None:
            runner = free.get()
            try:
                verdict, _ = run_with(runner, {m.module: mutated_source(sources[m.module], m)})
            finally:
                free.put(runner)
            with lock:
                results[m] = verdict
                mark = "SURVIVED" if verdict == "survived" else verdict
                print(f"[{len(results)}/{len(todo)}] {mark:<8} {m.module}:{m.line}  {m.label}  {m.original}", file=sys.stderr, flush=True)

        with ThreadPoolExecutor(max_workers=len(runners)) as pool:
            futures = [pool.submit(one, m) for m in todo]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                for runner in runners:
                    runner.stop()
                raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for runner in runners:
            runner.stop()
        for copy in copies:
            shutil.rmtree(copy, ignore_errors=True)

    print(f"{'module':<28} {'mutants':>7} {'killed':>7} {'survived':>8} {'timeout':>7} {'excluded':>8} {'score':>7}")
    failing = False
    for module in args.modules:
        mine = [m for m in mutants if m.module == module]
        verdicts = [results[m] for m in mine if m in results]
        killed = sum(v in ("killed", "timeout") for v in verdicts)
        timeout = verdicts.count("timeout")
        survived = verdicts.count("survived")
        excluded = sum(1 for m in mine if m.excluded)
        score = 100.0 * killed / len(verdicts) if verdicts else 100.0
        failing = failing or score < args.min_score
        print(f"{module:<28} {len(mine):>7} {killed:>7} {survived:>8} {timeout:>7} {excluded:>8} {score:>6.1f}%")
    survivors = [m for m in mutants if results.get(m) == "survived"]
    if survivors:
        print("\nsurvivors:")
        for m in survivors:
            print(f"  {m.module}:{m.line}  {m.label:<14} {m.original}")
    print(f"\nminimum score {args.min_score:g}%: {'FAILED' if failing else 'ok'}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
