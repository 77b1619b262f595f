"""Impossible θ and dropout values: one line naming the key, exit 2, nothing written."""

import pytest

from twofold.cli import main
from twofold.errors import TwofoldError
from twofold.model import preset


@pytest.mark.parametrize("setting,expected", [
    ("phase.extension.rope_theta_global=0", "phase.extension.rope_theta_global = 0.0 must be positive"),
    ("phase.decay.rope_theta_local=-10000", "phase.decay.rope_theta_local = -10000.0 must be positive"),
    ("dropout.attention_output=1", "dropout.attention_output = 1.0 must be in [0, 1)"),
    ("dropout.mlp=-0.1", "dropout.mlp = -0.1 must be in [0, 1)"),
    ("phase.cross.seed=-1", "phase.cross.seed = -1 must be >= 0 or null"),
])
def test_train_and_show_refuse_impossible_values(tmp_path, capsys, tiny_store, setting, expected):
    out = tmp_path / "run"
    argv = ["train", "--recipe", "demo", "--store", str(tiny_store), "--out", str(out), "--objective", "mlm",
            "--no-progress", "--set", setting]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err, err
    assert not out.exists()
    plot = tmp_path / "plot.png"
    assert main(["recipe", "show", "ettin", "--size", "17m", "--set", setting, "--out", str(plot)]) == 2
    assert expected in capsys.readouterr().err and not plot.exists()


@pytest.mark.parametrize("field,value", [("attention_output_dropout", 1.0), ("attention_dropout", -0.5),
                                         ("global_rope_theta", 0.0), ("local_rope_theta", -1.0)])
def test_model_configs_refuse_them_too(field, value):
    with pytest.raises(TwofoldError, match=f"{field} = {value} must be"):
        preset("tiny", **{field: value})
