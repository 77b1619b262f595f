"""`twofold model presets|info` and the CLI's error contract."""

import subprocess
import sys

import twofold
from twofold.cli import main
from twofold.model import TwofoldModel, preset


def test_presets_table_lists_published_sizes(capsys):
    assert main(["model", "presets"]) == 0
    out = capsys.readouterr().out
    assert "ettin-17m" in out and "16.9M" in out and "1031.3M" in out


def test_info_summarises_a_checkpoint(tmp_path, capsys):
    twofold.save(TwofoldModel(preset("tiny", causal=True)), tmp_path)
    assert main(["model", "info", str(tmp_path)]) == 0
    assert "decoder (causal LM)" in capsys.readouterr().out


def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "twofold", "model", "info", str(tmp_path / "missing")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "not a directory" in result.stderr
