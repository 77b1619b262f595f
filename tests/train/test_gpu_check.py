"""benchmarks/gpu_check.sh in its CPU smoke mode: every step of the GPU readiness check runs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_smoke_passes_on_the_cpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--smoke", str(tmp_path / "out")],
                            env=env, capture_output=True, text=True, timeout=1200)
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    for step in ("parity", "data", "pair", "resume", "model_speed", "train_speed"):
        assert f"PASS  {step} (" in summary, summary
    assert "failed steps: 0" in summary and "FAIL" not in summary
