"""`twofold merge`: TIES against a reference written here from the paper's definition (Yadav et
al. 2023, arXiv 2306.01708), exact self-merges, linear = weighted sum, exports transformers loads."""

import json

import pytest
import torch

from twofold.cli import main
from twofold.data.tokenizer import train_tokenizer
from twofold.errors import TwofoldError
from twofold.files import sha256_file
from twofold.hf import load, save_pretrained
from twofold.merge import MergeSettings, merge, ties, trim
from twofold.model import TwofoldModel, preset
from twofold.train import checkpoint

# ---------------------------------------------------------------- the reference, entry by entry


def ties_reference(base, models, density, lam=1.0):
    """TIES-Merging as the paper states it, on plain lists: trim each task vector to its top
    `density` fraction by magnitude, elect the sign of the summed trimmed values, average the
    entries that agree with it (disjoint mean), add λ times that to the base."""
    n = len(base)
    trimmed = []
    for model in models:
        task = [m - b for m, b in zip(model, base)]
        keep = max(1, int(density * n))
        largest = set(sorted(range(n), key=lambda i: -abs(task[i]))[:keep])
        trimmed.append([task[i] if i in largest else 0.0 for i in range(n)])
    merged = []
    for i in range(n):
        total = sum(t[i] for t in trimmed)
        sign = (total > 0) - (total < 0)
        agreeing = [t[i] for t in trimmed if t[i] != 0 and ((t[i] > 0) - (t[i] < 0)) == sign]
        merged.append(base[i] + lam * (sum(agreeing) / len(agreeing) if agreeing else 0.0))
    return merged


BASE = [0.0, 1.0, -1.0, 0.5, 2.0, -0.5, 0.0, 1.5]
MODELS = [
    [0.9, 1.2, -1.8, 0.4, 2.05, 0.35, -0.7, 1.5],
    [-0.6, 0.1, -0.2, 0.45, 3.1, -0.9, 0.8, 1.2],
    [0.5, 1.75, -1.1, 1.6, 1.0, -0.45, -0.15, 0.2],
]


def test_hand_sized_ties_with_sign_conflicts_matches_the_paper():
    # Entry 0: task values +0.9, -0.6, +0.5 → the elected sign is + and the mean of +0.9, +0.5 is taken.
    dense = ties_reference(BASE, MODELS, density=1.0)
    assert dense[0] == pytest.approx(0.7)
    assert dense[4] == pytest.approx(2.0 + (0.05 + 1.1) / 2)  # +0.05, +1.1 outweigh -1.0
    for density in (1.0, 0.5, 0.25):
        for lam in (1.0, 0.6):
            expected = ties_reference(BASE, MODELS, density, lam)
            got = ties(torch.tensor(BASE, dtype=torch.float64), [torch.tensor(m, dtype=torch.float64) for m in MODELS],
                       [1.0] * 3, [density] * 3, lam)
            assert got.tolist() == pytest.approx(expected, abs=1e-12), (density, lam)


def test_ties_trims_each_model_to_its_density():
    # density 0.25 of 8 entries: each model keeps its 2 largest task entries only.
    expected = ties_reference(BASE, MODELS, 0.25)
    assert sum(e != b for e, b in zip(expected, BASE)) <= 6
    got = ties(torch.tensor(BASE), [torch.tensor(m) for m in MODELS], [1.0] * 3, [0.25] * 3)
    assert got.tolist() == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------- whole models through the command


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    text = ["def merge(models): return sum(models) / len(models)", "Le modèle fusionné est chargé."] * 50
    train_tokenizer(text, 300, folder)
    return folder


def make_models(folder, causal, count=3):
    """`count` tiny models with different weights, exported as HF directories with one tokenizer."""
    paths, states = [], []
    for seed in range(count):
        torch.manual_seed(seed)
        model = TwofoldModel(preset("tiny", causal=causal))
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        paths.append(save_pretrained(model, folder / f"m{seed}", tokenizer=folder.parent / "tok"))
    return paths, states


@pytest.fixture(params=[False, True], ids=["encoder", "decoder"])
def models(request, tmp_path, tokenizer_dir):
    (tmp_path / "tok").symlink_to(tokenizer_dir)
    (tmp_path / "in").mkdir()
    return make_models(tmp_path / "in", request.param)


def merged_state(path):
    return load(path).state_dict()


def test_ties_merge_of_exports_equals_the_reference(tmp_path, models):
    (base, a, b), (s_base, s_a, s_b) = models
    out = merge([str(a), str(b)], tmp_path / "ties", MergeSettings.build("ties", 2, [1.0, 2.0], [0.5, 0.3], 0.8,
                                                                        has_base=True), base=str(base))
    got = merged_state(out)
    for name, tensor in s_base.items():
        expected = ties(tensor, [s_a[name], s_b[name]], [1.0, 2.0], [0.5, 0.3], 0.8)
        assert torch.allclose(got[name], expected, atol=1e-6), name
    # Unweighted, one tensor checked entry by entry against the paper's definition.
    out = merge([str(a), str(b)], tmp_path / "plain", MergeSettings.build("ties", 2, None, [0.5], 1.0, has_base=True),
                base=str(base))
    name = "model.layers.1.mlp.Wi.weight"
    expected = ties_reference(s_base[name].flatten().tolist(), [s_a[name].flatten().tolist(),
                                                                s_b[name].flatten().tolist()], 0.5)
    assert merged_state(out)[name].flatten().tolist() == pytest.approx(expected, abs=1e-6)


def test_merging_a_model_with_itself_returns_it_exactly(tmp_path, models):
    (model, _, _), (state, _, _) = models
    for method, base, inputs in (("linear", None, [model, model]), ("linear", None, [model, model, model]),
                                 ("ties", model, [model]), ("ties", model, [model, model])):
        settings = MergeSettings.build(method, len(inputs), [0.3, 0.7][:len(inputs)] if len(inputs) == 2 else None,
                                       has_base=base is not None)
        out = merge([str(m) for m in inputs], tmp_path / f"{method}{len(inputs)}", settings,
                    base=str(base) if base else None)
        got = merged_state(out)
        assert all(torch.equal(got[k], state[k]) for k in state), (method, len(inputs))


def test_linear_merge_is_the_weighted_sum(tmp_path, models):
    (_, a, b), (_, s_a, s_b) = models
    out = merge([str(a), str(b)], tmp_path / "linear", MergeSettings.build("linear", 2, [0.3, 0.7]))
    got = merged_state(out)
    for name in s_a:
        assert torch.allclose(got[name], 0.3 * s_a[name] + 0.7 * s_b[name], atol=1e-6), name
    unnormalised = merge([str(a), str(b)], tmp_path / "linear3", MergeSettings.build("linear", 2, [3, 7]))
    assert all(torch.equal(merged_state(unnormalised)[k], got[k]) for k in got)


def test_the_merged_export_loads_in_transformers_and_records_its_inputs(tmp_path, models):
    transformers = pytest.importorskip("transformers")
    (base, a, b), _ = models
    out = tmp_path / "merged"
    assert main(["merge", "--method", "ties", "--base", str(base), str(a), str(b), "--density", "0.5",
                 "--weights", "1,2", "--lambda", "0.9", "--out", str(out), "--no-progress"]) == 0
    auto = (transformers.AutoModelForCausalLM if load(out).config.causal else transformers.AutoModelForMaskedLM)
    _, info = auto.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    record = json.loads((out / "merge.json").read_text())
    assert (record["method"], record["weights"], record["density"], record["lambda"]) == ("ties", [1, 2], [.5, .5], .9)
    assert [m["path"] for m in record["models"]] == [str(a.resolve()), str(b.resolve())]
    assert record["base"]["weights_sha256"] == {"model.safetensors": sha256_file(base / "model.safetensors")}
    assert record["models"][0]["tokenizer_sha256"] == sha256_file(a / "tokenizer.json")
    assert (out / "tokenizer.json").is_file()


def test_run_checkpoints_merge_like_their_exports(tmp_path, models):
    """A checkpoint directory (as training writes it) merges exactly as its HF export does."""
    (base, a, b), (s_base, s_a, s_b) = models
    model = TwofoldModel(load(a).config)
    model.load_state_dict(s_a)
    saved = checkpoint.save(tmp_path / "run" / "checkpoints", step=7, states=checkpoint.capture(model), progress={},
                            data={}, config=model.config.to_dict(), recipe={}, tag="decay1")
    settings = MergeSettings.build("ties", 2, None, [0.5], has_base=True)
    from_checkpoint = merged_state(merge([str(saved), str(b)], tmp_path / "x", settings, base=str(base)))
    from_export = merged_state(merge([str(a), str(b)], tmp_path / "y", settings, base=str(base)))
    assert all(torch.equal(from_checkpoint[k], from_export[k]) for k in from_export)


# ---------------------------------------------------------------- bad input


def test_bad_merges_are_one_line_exit_2_and_write_nothing(tmp_path, models, capsys, tokenizer_dir):
    (base, a, b), _ = models
    other = TwofoldModel(preset("tiny", hidden_size=32))
    wider = save_pretrained(other, tmp_path / "wider")
    retokenized = tmp_path / "retok"
    train_tokenizer(["completely different text for another vocabulary"] * 20, 290, tmp_path / "tok2")
    save_pretrained(load(b), retokenized, tokenizer=tmp_path / "tok2")
    out = tmp_path / "out"
    pair = [str(a), str(b)]
    cases = [
        (pair, ["--base", str(base), "--density", "0"], "--density: 0 is out of range: it must be a finite number in "
                                                        "(0, 1]"),
        (pair, ["--base", str(base), "--density", "1.5"], "--density: 1.5 is out of range"),
        (pair, [], "ties needs --base"),
        (pair, ["--method", "linear", "--base", str(base)], "linear averages the models and takes no --base"),
        (pair, ["--base", str(base), "--weights", "1,2,3"], "3 weights for 2 models"),
        (pair, ["--base", str(wider)], "has another shape than"),
        ([str(wider), str(b)], ["--base", str(base)], "has another shape than"),
        ([str(a), str(retokenized)], ["--base", str(base)], "the models use different tokenizers"),
        ([str(a), str(tmp_path / "missing@decay1")], ["--base", str(base)], "no such file or directory"),
    ]
    for inputs, extra, message in cases:
        assert main(["merge", *inputs, *extra, "--out", str(out), "--no-progress"]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (extra, err)
        assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_the_record_names_each_inputs_kind_and_a_checkpoints_weights(tmp_path, models):
    (base, a, b), (_, s_a, _) = models
    model = TwofoldModel(load(a).config)
    model.load_state_dict(s_a)
    saved = checkpoint.save(tmp_path / "run" / "checkpoints", step=3, states=checkpoint.capture(model), progress={},
                            data={}, config=model.config.to_dict(), recipe={}, tag="decay1")
    out = merge([str(saved), str(b)], tmp_path / "out", MergeSettings.build("ties", 2, None, [0.5], has_base=True),
                base=str(base), progress=False)
    record = json.loads((out / "merge.json").read_text())
    stored = json.loads((saved / checkpoint.CHECKSUMS).read_text())["model.safetensors"]
    assert [(m["given"], m["kind"], m["weights_sha256"]) for m in record["models"]] == [
        (str(saved), "checkpoint", {"model.safetensors": stored}),
        (str(b), "hf", {"model.safetensors": sha256_file(b / "model.safetensors")})]
    assert record["base"]["kind"] == "hf" and record["models"][0]["tokenizer_sha256"] is None


def test_inputs_that_differ_in_a_tensor_or_lack_one_are_refused(tmp_path, models):
    """Any input may be the odd one out, not only the first two; a tensor missing from every input
    cannot make a whole model."""
    from safetensors.torch import load_file, save_file

    (base, a, b), _ = models
    name = "model.layers.1.mlp.Wo.weight"
    for folder, edit in (("reshaped", lambda t: {**t, name: t[name][:, :-1].contiguous()}),
                         ("missing", lambda t: {k: v for k, v in t.items() if k != name})):
        copy = tmp_path / folder
        copy.mkdir()
        for file in a.iterdir():
            (copy / file.name).write_bytes(file.read_bytes())
        save_file(edit(load_file(copy / "model.safetensors")), copy / "model.safetensors", metadata={"format": "pt"})
        settings = MergeSettings.build("ties", 2, None, [0.5], has_base=True)
        with pytest.raises(TwofoldError, match=rf"merge: {copy} and {base} differ in tensors \['{name}'\]"):
            merge([str(copy), str(b)], tmp_path / "out", settings, base=str(base))
    missing = tmp_path / "missing"
    with pytest.raises(TwofoldError, match=rf"do not make a whole model \(missing \['{name}'\], unexpected \[\]\)"):
        merge([str(missing), str(missing)], tmp_path / "out", MergeSettings.build("linear", 2))
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))  # the partial output removed


def test_settings_are_checked_and_default_to_the_papers(tmp_path):
    ties_default = MergeSettings.build("ties", 2, has_base=True)
    assert ties_default.to_dict() == {"method": "ties", "weights": [1.0, 1.0], "density": [1.0, 1.0], "lambda": 1.0}
    assert MergeSettings.build("linear", 4).weights == (0.25,) * 4
    refused = [(("linear", 2, [1, -1]), "weights must be > 0"), (("linear", 2, [0, 1]), "weights must be > 0"),
               (("linear", 2, [float("inf"), 1]), "weights must be > 0"),
               (("ties", 2, None, [0.5, 0.5, 0.5]), "merge: 3 density for 2 models"),
               (("ties", 2, None, [0.0]), "density must be in (0, 1]"), (("ties", 2, None, [1.5]), "got 1.5"),
               (("ties", 2, None, None, 0.0), "lambda must be > 0"), (("ties", 2, None, None, -1.0), "got -1.0"),
               (("ties", 2, None, None, float("inf")), "lambda must be > 0")]
    for args, message in refused:
        with pytest.raises(TwofoldError, match=message.replace("(", r"\(").replace(")", r"\)")):
            MergeSettings.build(*args, has_base=args[0] == "ties")


def test_ties_keeps_at_least_one_entry_and_weights_in_full_precision():
    task = torch.tensor([0.1, -3.0, 0.2, 0.5, -0.4, 0.3, 0.05, 1.0])
    assert trim(task, 0.1).tolist() == [0.0, -3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # int(0.8) = 0: still one kept
    assert ties(torch.zeros(2), [torch.tensor([1.0, -1.0])], [1.0], [1.0]).tolist() == [1.0, -1.0]
    base = torch.zeros(3, dtype=torch.float64)
    models = [torch.tensor([0.3, 0.1, -0.2], dtype=torch.float64), torch.tensor([0.7, -0.5, -0.1], dtype=torch.float64)]
    weights = [0.1, 0.7]  # not exact in float32: the disjoint mean must use them as given
    expected = [(0.1 * 0.3 + 0.7 * 0.7) / 0.8, -0.5, (0.1 * -0.2 + 0.7 * -0.1) / 0.8]
    assert ties(base, models, weights, [1.0, 1.0]).tolist() == pytest.approx(expected, abs=1e-15)


def test_a_merge_of_run_checkpoints_carries_the_runs_tokenizer_and_replaces_a_stale_partial(tmp_path, models,
                                                                                             capsys, disk):
    from twofold._version import __version__

    (_, a, b), (_, s_a, s_b) = models
    saved = []
    for name, state in (("with", s_a), ("without", s_b)):
        model = TwofoldModel(load(a).config)
        model.load_state_dict(state)
        run = tmp_path / name
        saved.append(checkpoint.save(run / "checkpoints", step=1, states=checkpoint.capture(model), progress={},
                                     data={}, config=model.config.to_dict(), recipe={}, tag="decay1"))
    store = tmp_path / "store"
    store.mkdir()
    (store / "manifest.json").write_text(json.dumps({"tokenizer": {"path": str(tmp_path / "tok")}}))
    (tmp_path / "with" / "run.json").write_text(json.dumps({"options": {"stores": [str(store)]}}))
    (tmp_path / "without" / "run.json").write_text(json.dumps({"options": {"stores": []}}))  # its tokenizer gone
    (tmp_path / "out").mkdir()  # an empty folder is a fine output
    (tmp_path / ".out.merge-partial").mkdir()  # left by a killed merge
    (tmp_path / ".out.merge-partial" / "stale.bin").write_text("x")
    out = merge([f"{tmp_path / 'without'}@decay1", f"{tmp_path / 'with'}@decay1"], tmp_path / "out",
                MergeSettings.build("linear", 2), progress=False)
    assert capsys.readouterr().err == ""  # no progress bar when asked for none
    assert (out / "tokenizer.json").is_file()  # the run's, as the export writes it for the member
    assert not (out / "stale.bin").exists() and not (tmp_path / ".out.merge-partial").exists()
    disk.published_whole(out)
    record = json.loads((out / "merge.json").read_text())
    assert record["twofold_version"] == __version__
    assert [m["tokenizer_sha256"] for m in record["models"]] == [None, sha256_file(tmp_path / "tok" / "tokenizer.json")]
    alone = merge([str(saved[1]), str(saved[1])], tmp_path / "alone", MergeSettings.build("linear", 2),
                  progress=False)
    assert not (alone / "tokenizer.json").exists()  # no input has one: none is written


def copy_of(folder, target, config_changes=None, drop_files=(), weights=None):
    """A copy of an export with its config edited, files left out or its weights edited."""
    from safetensors.torch import load_file, save_file

    target.mkdir()
    for file in folder.iterdir():
        if file.name not in drop_files:
            (target / file.name).write_bytes(file.read_bytes())
    if config_changes is not None:
        config = json.loads((target / "config.json").read_text())
        for key, value in config_changes.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        (target / "config.json").write_text(json.dumps(config))
    if weights is not None:
        save_file(weights(load_file(target / "model.safetensors")), target / "model.safetensors",
                  metadata={"format": "pt"})
    return target


def test_inputs_are_read_as_their_folders_say(tmp_path, models):
    """The mask token from tokenizer.json when the config leaves it out, the settings that do not change
    the weights' meaning kept from the first model, a model without a tokenizer, bad configs named."""
    (base, a, b), _ = models
    mask = load(a).config.mask_token_id
    no_mask = copy_of(a, tmp_path / "no-mask", {"mask_token_id": None})
    dropout = copy_of(base, tmp_path / "dropout", {"embedding_dropout": 0.25})
    out = merge([str(no_mask), str(b)], tmp_path / "ties", MergeSettings.build("ties", 2, None, [0.5], has_base=True),
                base=str(dropout), progress=False)
    config = json.loads((out / "config.json").read_text())
    assert (config["mask_token_id"], config["embedding_dropout"]) == (mask, 0.25)  # the first model's (the base)
    assert load(merge([str(no_mask), str(no_mask)], tmp_path / "lin", MergeSettings.build("linear", 2),
                      progress=False)).config.mask_token_id == mask
    bare = copy_of(a, tmp_path / "bare", drop_files=("tokenizer.json", "tokenizer_config.json",
                                                    "special_tokens_map.json"))
    record = json.loads((merge([str(bare), str(b)], tmp_path / "bare-out", MergeSettings.build("linear", 2),
                               progress=False) / "merge.json").read_text())
    assert [m["tokenizer_sha256"] for m in record["models"]] == [None, sha256_file(b / "tokenizer.json")]
    own_mask = copy_of(a, tmp_path / "own-mask", {"mask_token_id": 3})  # the config's word wins over the tokenizer's
    assert load(merge([str(own_mask), str(own_mask)], tmp_path / "own", MergeSettings.build("linear", 2),
                      progress=False)).config.mask_token_id == 3
    (tmp_path / "pair").mkdir()
    for member in ("encoder", "decoder"):
        copy_of(a, tmp_path / "pair" / member)
    with pytest.raises(TwofoldError, match=rf"^merge input {tmp_path / 'pair'} is "):
        merge([str(tmp_path / "pair"), str(b)], tmp_path / "x", MergeSettings.build("linear", 2))
    odd = copy_of(a, tmp_path / "odd", {"hidden_activation": "relu"})
    with pytest.raises(TwofoldError, match=rf"^{odd / 'config.json'}: hidden_activation 'relu' is not supported"):
        merge([str(odd), str(b)], tmp_path / "x", MergeSettings.build("linear", 2))
    with pytest.raises(TwofoldError, match=rf"^merge input {tmp_path}: .*give a Hugging Face model directory"):
        merge([str(tmp_path), str(b)], tmp_path / "x", MergeSettings.build("linear", 2))  # a folder of models


def test_a_decoder_missing_one_of_its_split_projections_is_refused(tmp_path, models):
    (base, a, b), _ = models
    if not load(a).config.causal:
        pytest.skip("the encoder's export keeps Wqkv fused")
    name = "model.layers.0.attn.k_proj.weight"
    torn = copy_of(a, tmp_path / "torn", weights=lambda t: {k: v for k, v in t.items() if k != name})
    with pytest.raises(TwofoldError, match=r"model.layers.0.attn.Wqkv.weight has 2 of q_proj/k_proj/v_proj; the "
                                           "checkpoint is incomplete"):
        merge([str(torn), str(b)], tmp_path / "out", MergeSettings.build("linear", 2))
