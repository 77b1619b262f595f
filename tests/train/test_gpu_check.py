"""benchmarks/gpu_check.sh in its CPU smoke mode: every part of the GPU check runs and records."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_smoke_passes_on_the_cpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "GPU_CHECK_STORE": str(tmp_path / "data")}
    script = str(ROOT / "benchmarks" / "gpu_check.sh")
    subprocess.run(["bash", script, "--prepare"], env=env, check=True, capture_output=True, timeout=600)
    result = subprocess.run(["bash", script, "--smoke", str(tmp_path / "out")], env=env, capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["part"] for r in records] == ["environment", "kernel_parity", "trainer_mlm", "model_speed",
                                            "trainer_clm", "hf_parity", "resume", "pair", "trainer_400m",
                                            "microbatch"]
    assert all("result" in r for r in records), [r for r in records if "result" not in r]
    parts = {r["part"]: r["result"] for r in records}
    assert parts["resume"]["pass"] and parts["pair"]["pass"] and parts["hf_parity"]["encoder"]["pass"]
    assert parts["microbatch"]["pass"], parts["microbatch"]
    assert parts["trainer_mlm"]["fixed_compiled"]["tokens_per_s"] > 0


@pytest.mark.slow
def test_gpu_microbatch_check_smoke_passes_on_the_cpu(tmp_path):
    # CPU plumbing of the GPU check; its out-of-memory is a stand-in raised above 2 sequences
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_microbatch_check.py"), "--smoke",
                             str(tmp_path / "out")], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert result.stdout.startswith("PASS  microbatch (8 sequences a step halved to 2 per forward pass")
