"""The thread policy: one place decides torch, BLAS and numba threads (threads.py)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import make_config
from siem_gad.threads import decide

SRC = Path(__file__).resolve().parents[1] / "src" / "siem_gad"


def test_auto_is_one_thread_unless_the_operator_exported_one():
    assert decide("auto", environ={}).threads == 1
    assert decide("auto", environ={"OMP_NUM_THREADS": "3"}).threads == 3
    assert decide(2, environ={"OMP_NUM_THREADS": "3"}).threads == 2
    assert decide("auto", environ={"OMP_NUM_THREADS": "junk"}).threads == 1


def test_opening_an_app_sets_the_threads_of_torch_blas_and_numba(tmp_path: Path):
    """In a fresh process: App.open applies the config's policy before torch loads, and to
    the libraries already loaded (numpy's BLAS, numba)."""
    config = make_config(tmp_path / "deploy", extra={"threads": 2})
    code = f"""
import json, os
from siem_gad.pipeline import App
app = App.open({str(config)!r})
import numba, torch
from threadpoolctl import threadpool_info
blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
print(json.dumps({{"torch": torch.get_num_threads(), "numba": numba.get_num_threads(), "blas": blas,
                   "omp": os.environ["OMP_NUM_THREADS"], "why": app.threads.source}}))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")}
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    env=env).stdout)
    assert out["torch"] == 2 and out["omp"] == "2" and out["why"] == "config"
    assert out["numba"] <= 2 and all(n == 2 for n in out["blas"])


def test_nothing_but_the_policy_sets_library_threads():
    setters = {"set_num_threads", "threadpool_limits"}
    found = []
    for path in SRC.rglob("*.py"):
        if path.name == "threads.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in setters or isinstance(node, ast.Name) and node.id in setters:
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert found == [], "set threads through siem_gad.threads only"


def test_a_second_policy_does_not_break_numba_compiling():
    """numba raises on its next compile when NUMBA_NUM_THREADS changes once its pool runs
    (seen in CI when one process opened apps with different `threads`)."""
    code = """
import numba
launched = numba.get_num_threads()  # the pool starts as wide as the machine
from siem_gad.threads import ThreadPolicy
ThreadPolicy(1, "test").apply()
ThreadPolicy(3, "test").apply()
@numba.njit
def plus_one(x):
    return x + 1
print(plus_one(1), numba.get_num_threads() <= min(3, launched))
"""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.split() == ["2", "True"]
