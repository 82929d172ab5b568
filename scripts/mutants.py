"""Targeted mutation check: does the test suite notice plausible wrong implementations?

Each mutant in ``tests/mutants.yaml`` replaces one exact piece of source (it must occur exactly
once, so a mutant that no longer matches the code is reported as ``stale``, never as killed) in a
temporary copy of the project, then runs the tests that must kill it against that copy. The
copy is importable on its own: its ``farmplug`` package is assembled from the copy's folders the
way ``pyproject.toml``'s ``package-dir`` maps them, and put first on ``PYTHONPATH`` (ahead of the
editable install, which the venv's meta-path finder only consults after ``sys.path``), so the
Blender child and every subprocess of a test run the mutated code too.

    make mutants                         # every mutant, after an unmutated baseline run
    .venv/bin/python scripts/mutants.py --only denoise-identity,local-ignores-command
    .venv/bin/python scripts/mutants.py --list

Outcomes: ``killed`` (the tests failed), ``survived`` (they passed: the suite has a hole),
``stale`` (the source no longer holds the text), ``error`` (pytest could not run the tests,
e.g. a collection error) and ``timeout``. The exit status is 0 only when every mutant is killed.
Run by hand, not in CI: the real-render subsets take minutes each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import yaml
from package_layout import ROOT, assemble, package_dirs
from pydantic import BaseModel, ConfigDict, Field

MUTANTS_FILE = ROOT / "tests" / "mutants.yaml"


class Mutant(BaseModel):
    """One wrong implementation: where it goes, what it replaces, and which tests must notice."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    why: str = Field(min_length=1, description="the wrong implementation, in words")
    file: str = Field(description="path relative to the project root")
    old: str = Field(min_length=1, description="exact source text, present exactly once")
    new: str
    tests: list[str] = Field(min_length=1, description="pytest node ids or paths that must kill it")


class MutantList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    mutants: list[Mutant]


Outcome = Literal["killed", "survived", "stale", "error", "timeout"]


def parse_mutants(text: str, source: str) -> list[Mutant]:
    """The mutants of a ``mutants.yaml`` text; ids must be unique."""
    mutants = MutantList.model_validate(yaml.safe_load(text)).mutants
    ids = [m.id for m in mutants]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SystemExit(f"{source}: duplicate mutant ids {duplicates}")
    return mutants


def load_mutants(path: Path = MUTANTS_FILE) -> list[Mutant]:
    return parse_mutants(path.read_text(encoding="utf-8"), str(path))


def load_mutants_at(ref: str) -> list[Mutant]:
    """The mutants as the commit ``ref`` has them."""
    name = MUTANTS_FILE.relative_to(ROOT).as_posix()
    text = subprocess.run(["git", "show", f"{ref}:{name}"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return parse_mutants(text, f"{ref}:{name}")


def project_files() -> list[str]:
    """Tracked files and untracked ones git does not ignore (so new, uncommitted tests count)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                         capture_output=True).stdout.decode()
    return [p for p in out.split("\0") if p and (ROOT / p).is_file()]


def make_copy(dest: Path, files: list[str], ref: str | None = None) -> tuple[Path, Path]:
    """Copy the project (the working tree, or the commit ``ref``) into ``dest/repo``; returns (repo, site)."""
    repo, site = dest / "repo", dest / "site"
    repo.mkdir(parents=True)
    if ref is not None:
        archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(repo)], input=archive, check=True)
        return repo, site
    for rel in files:
        target = repo / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    return repo, site


def assemble_site(repo: Path, site: Path) -> None:
    """Lay the copy's folders out as the installed ``farmplug.*`` namespace (package-dir mapping).

    The copy's own ``farmplug/`` folder is then removed: pytest runs with the copy as its working
    directory, which Python puts ahead of ``PYTHONPATH``, and a ``farmplug`` there (without the
    mapped sub-packages) would send ``farmplug.denoise`` and the others to the editable install.
    """
    mapping = package_dirs(repo)
    assemble(repo, site)
    for package, folder in mapping.items():
        if "." not in package and (repo / folder).is_dir():
            shutil.rmtree(repo / folder)


def apply(mutant: Mutant, repo: Path) -> bool:
    path = repo / mutant.file
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    if text.count(mutant.old) != 1:
        return False
    path.write_text(text.replace(mutant.old, mutant.new), encoding="utf-8")
    return True


def environment(repo: Path, site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(repo)])
    env["FARMPLUG_PROGRESS"] = "0"
    # The copy lives in a temp folder, so the shared EXR collection is not at ../shared/data.
    env.setdefault("FARMPLUG_TEST_DATA", str(ROOT.parent / "shared" / "data"))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_isolation(repo: Path, site: Path, env: dict[str, str]) -> None:
    """The copy, not the editable install, must be what ``import farmplug.*`` finds."""
    packages = sorted(package_dirs(repo))
    probe = f"import importlib; print(*(importlib.import_module(p).__file__ for p in {packages!r}))"
    found = subprocess.run([sys.executable, "-c", probe], cwd=repo, env=env, capture_output=True, text=True)
    if found.returncode != 0 or not all(f.startswith(str(site)) for f in found.stdout.split()):
        raise SystemExit(f"the copy is not importable on its own: {found.stdout.strip()} {found.stderr.strip()}")


def run_tests(tests: list[str], repo: Path, env: dict[str, str], timeout: float, log: Path) -> tuple[int | None, float]:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *tests]
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as sink:
        try:
            rc = subprocess.run(cmd, cwd=repo, env=env, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = None
    return rc, time.perf_counter() - started


def outcome(rc: int | None) -> Outcome:
    if rc is None:
        return "timeout"
    # pytest: 0 all passed, 1 some failed; 2-5 interrupted, internal error, usage error, nothing collected.
    return {0: "survived", 1: "killed"}.get(rc, "error")


def last_failure(log: Path) -> str:
    lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.startswith(("FAILED", "ERROR"))]
    return lines[0][:160] if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help="comma list of mutant ids")
    parser.add_argument("--list", action="store_true", help="list the mutants and their tests, run nothing")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the tests")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per mutant's test run")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "mutants", help="logs and results.json")
    parser.add_argument("--ref", default=None, help="test this commit (e.g. HEAD) instead of the working tree")
    args = parser.parse_args(argv)

    mutants = load_mutants() if args.ref is None else load_mutants_at(args.ref)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = sorted(set(wanted) - {m.id for m in mutants})
        if unknown:
            parser.error(f"unknown mutant ids {unknown}; valid: {', '.join(m.id for m in mutants)}")
        mutants = [m for m in mutants if m.id in wanted]
    if args.list:
        for m in mutants:
            print(f"{m.id:34s} {m.file}: {m.why}\n{'':34s} tests: {' '.join(m.tests)}")
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    files = project_files()
    results = []
    with tempfile.TemporaryDirectory(prefix="farmplug-mutants-") as scratch:
        if not args.no_baseline:
            union = sorted({t for m in mutants for t in m.tests})
            repo, site = make_copy(Path(scratch) / "baseline", files, args.ref)
            assemble_site(repo, site)
            env = environment(repo, site)
            check_isolation(repo, site, env)
            print(f"baseline: the {len(union)} test selections on the unmutated copy ...", flush=True)
            rc, wall = run_tests(union, repo, env, args.timeout * 2, args.out / "baseline.log")
            if rc != 0:
                print(f"baseline FAILED (rc {rc}, {wall:.0f} s): the tests must pass before mutants mean anything; "
                      f"see {args.out / 'baseline.log'}", file=sys.stderr)
                return 2
            print(f"baseline passed in {wall:.0f} s", flush=True)
        for number, mutant in enumerate(mutants, 1):
            work = Path(scratch) / mutant.id
            repo, site = make_copy(work, files, args.ref)
            log = args.out / f"{mutant.id}.log"
            if not apply(mutant, repo):
                result, wall, detail = "stale", 0.0, f"{mutant.file} does not hold the mutant's text exactly once"
                log.write_text(detail + "\n", encoding="utf-8")
            else:
                assemble_site(repo, site)
                env = environment(repo, site)
                check_isolation(repo, site, env)
                rc, wall = run_tests(mutant.tests, repo, env, args.timeout, log)
                result, detail = outcome(rc), last_failure(log)
            shutil.rmtree(work, ignore_errors=True)
            results.append({"id": mutant.id, "outcome": result, "seconds": round(wall, 1), "detail": detail,
                            "why": mutant.why, "tests": mutant.tests})
            print(f"[{number}/{len(mutants)}] {result:8s} {mutant.id} ({wall:.0f} s) {detail}", flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    counts = {name: sum(r["outcome"] == name for r in results) for name in ("killed", "survived", "stale", "error", "timeout")}
    print("mutants: " + ", ".join(f"{n} {name}" for name, n in counts.items() if n) + f" (of {len(results)})")
    return 0 if counts["killed"] == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
