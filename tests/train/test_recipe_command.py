"""`twofold recipe show` through the CLI entry point."""

import pytest

from twofold.cli import main


def test_show_prints_the_table_and_writes_a_png(tmp_path, capsys):
    out = tmp_path / "plots" / "ettin.png"
    assert main(["recipe", "show", "ettin", "--size", "150m", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for expected in ("pretrain", "extension", "decay", "cross", "1.7T", "8.5B", "0.5→0.02"):
        assert expected in text
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_show_with_scale_and_overrides(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["recipe", "show", "demo", "--scale", "2", "--set", "phase.decay.lr_min_ratio=0.01",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "scale 2" in text and "0.5→0.01" in text and "400K" in text
    assert "under 10 optimizer steps" not in text
    assert out.stat().st_size > 0


def test_show_warns_when_a_scaled_phase_is_a_handful_of_steps(tmp_path, capsys):
    assert main(["recipe", "show", "ettin", "--size", "17m", "--scale", "1e-6", "--out", str(tmp_path / "e.png")]) == 0
    text = capsys.readouterr().out
    assert "! pretrain, extension, decay, cross: under 10 optimizer steps" in text
    # 1.7M pretraining tokens against steps of 4608 rows of ≈615 tokens: the steps column says less than one
    pretrain = next(line for line in text.splitlines() if line.startswith("pretrain "))
    assert pretrain.split()[:3] == ["pretrain", "1.7M", "<1"]
    assert "! phase pretrain gets 1.7M tokens, less than one optimizer step of 2.83M (4608 sequences of ≈615 tokens)" \
        in text
    assert "--batch-scale 0.0013 or smaller" in text


def test_show_marks_nothing_when_every_phase_holds_enough_steps(tmp_path, capsys):
    assert main(["recipe", "show", "demo", "--out", str(tmp_path / "d.png")]) == 0
    text = capsys.readouterr().out
    assert "!" not in text and "<1" not in text


@pytest.mark.parametrize("argv,expected", [
    (["recipe", "show", "ettin", "--size", "3m"], "has no size '3m'"),
    (["recipe", "show", "nope"], "unknown recipe 'nope'"),
    (["recipe", "show", "demo", "--set", "phase.decay.mask_rate=2"], "phase.decay.mask_rate = 2.0"),
    (["recipe", "show", "demo", "--scale", "0"], "--scale: 0 is out of range"),
    (["recipe", "show", "demo", "--batch-scale", "0"], "--batch-scale: 0 is out of range"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, expected):
    assert main([*argv, "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and err.count("\n") == 0
    assert not (tmp_path / "x.png").exists()


def test_bad_budget_is_one_line_and_exit_2(capsys):
    assert main(["recipe", "show", "demo", "--budget", "lots"]) == 2
    err = capsys.readouterr().err
    assert "'lots' is not a token count" in err and err.count("\n") == 1
