"""The training loop in-process: pairs, checkpoints, metrics, held-out loss, NaN stop, micro-batches."""

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from twofold.cli import main
from twofold.train import checkpoint, loop, runs
from twofold.train.distributed import World
from twofold.train.recipe import load_recipe


def metrics(run_dir, key="loss"):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if key in line]


def order_hashes(member_dir, phase):
    lines = (member_dir / phase / "data_order" / "rank0.jsonl").read_text().splitlines()
    return [(r["step"], r["hash"]) for r in map(json.loads, lines)]


def weights(run_dir, name):
    return load_file(str(checkpoint.find_tagged(run_dir / "checkpoints", name) / "model.safetensors"))


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory, tiny_store, tiny_recipe):
    run = tmp_path_factory.mktemp("runs") / "pair"
    code = main(["train", "--recipe", str(tiny_recipe), "--store", str(tiny_store), "--out", str(run),
                 "--pair", "--no-progress", "--eval-store", str(tiny_store), "--eval-sequences", "4"])
    assert code == 0
    return run


def test_pair_members_consume_identical_batches(pair_run):
    for phase in ("pretrain", "extension", "decay"):
        encoder, decoder = order_hashes(pair_run / "encoder", phase), order_hashes(pair_run / "decoder", phase)
        assert encoder == decoder and len(encoder) > 1
    enc, dec = (json.loads((pair_run / m / "run.json").read_text()) for m in ("encoder", "decoder"))
    assert (enc["model"]["causal"], dec["model"]["causal"]) == (False, True)
    assert (enc["options"]["objective"], dec["options"]["objective"]) == ("mlm", "clm")
    shape = lambda saved: {k: v for k, v in saved["model"].items() if k != "causal"}
    assert shape(enc) == shape(dec)


def test_checkpoints_are_tagged_by_the_optimizer_steps_of_their_phase(pair_run):
    saved = checkpoint.list_checkpoints(pair_run / "encoder" / "checkpoints")
    names = [p.name.partition("-")[2] for p in saved]
    # pretrain: batches of 2, 2, 3, 4, 6 sequences of 64 (batch warmup over 1K), then 8: step 7 passes 2K
    # tokens, step 11 ends the 4K; extension 512 tokens a step, every 1K; decay 1K in 2 steps.
    assert names == ["step7", "step11", "ext2", "ext4", "decay2"]
    counted = {}
    for line in metrics(pair_run / "encoder"):  # the tag is the phase's own step count (upstream's reset_time)
        counted[line["phase"]] = counted.get(line["phase"], 0) + 1
        counted[line["step"]] = counted[line["phase"]]
    for path in saved:
        state = checkpoint.read_state(path)
        assert int(re.fullmatch(r"[a-z]+(\d+)", state["tag"]).group(1)) == counted[state["step"]]
    final = checkpoint.load(checkpoint.find_tagged(pair_run / "encoder" / "checkpoints", "decay2"))
    assert final.progress["phase_tokens"] >= 1000 and final.recipe["name"].endswith("tiny.yaml")
    assert final.data["step"] == final.progress["phase_step"]


def test_metrics_follow_the_recipe(pair_run):
    lines = metrics(pair_run / "encoder")
    assert [line["step"] for line in lines] == list(range(1, len(lines) + 1))
    assert {line["phase"] for line in lines} == {"pretrain", "extension", "decay"}
    first, last = lines[0], lines[-1]
    assert first["batch_sequences"] == 2 and first["seq_len"] == 64 and first["mask_rate"] == 0.3
    assert first["lr"] == pytest.approx(3e-3 * 128 / 512)  # warmup, evaluated after the step's tokens
    assert last["lr"] == pytest.approx(3e-3 * 0.02) and last["mask_rate"] == 0.15
    assert all(line["loss"] > 0 and line["grad_norm"] > 0 and line["tokens_per_s"] > 0 for line in lines)
    assert lines[-1]["loss"] < lines[0]["loss"]
    evals = metrics(pair_run / "decoder", "eval_loss")
    assert len(evals) == 5 and evals[-1]["eval_loss"] < evals[0]["eval_loss"]


def test_export_writes_the_hugging_face_format(pair_run, tmp_path):
    import twofold

    out = tmp_path / "hf"
    assert main(["export", str(pair_run), "--member", "decoder", "--tag", "ext2", "--out", str(out)]) == 0
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    model = twofold.load(out)
    assert model.config.causal
    saved = weights(pair_run / "decoder", "ext2")
    for name, tensor in model.state_dict().items():
        if name in saved:
            assert torch.equal(tensor, saved[name])
    assert main(["export", str(pair_run), "--tag", "ext2", "--out", str(out)]) == 2
    assert main(["export", str(pair_run), "--member", "decoder", "--tag", "ext9", "--out", str(out)]) == 2
    assert main(["export", str(pair_run), "--member", "decoder", "--tag", "ext3", "--out", str(tmp_path / "no")]) == 2
    assert not (tmp_path / "no").exists()  # a tag that names no checkpoint writes nothing


def test_resume_of_a_finished_run_changes_nothing(pair_run):
    before = weights(pair_run / "encoder", "decay2")
    assert main(["train", "--resume", str(pair_run), "--no-progress"]) == 0
    after = weights(pair_run / "encoder", "decay2")
    assert all(torch.equal(before[k], after[k]) for k in before)


def run_member(tmp_path, tiny_store, tiny_recipe, name, objective="mlm", scale=1.0, **options):
    recipe = load_recipe(str(tiny_recipe), scale=scale)
    opts = loop.Options(stores=(str(tiny_store),), objective=objective, progress=False, **options)
    return runs.start(tmp_path / name, recipe, opts, World())


def test_micro_batches_accumulate_to_the_same_step(tmp_path, tiny_store, tiny_recipe, pair_run):
    whole = pair_run / "decoder"  # the same recipe and objective in one pass per step
    split = run_member(tmp_path, tiny_store, tiny_recipe, "split", objective="clm", micro_batch_sequences=3)
    for a, b in zip(metrics(whole), metrics(split)):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    final_a, final_b = weights(whole, "decay2"), weights(split, "decay2")
    for name in final_a:
        torch.testing.assert_close(final_a[name], final_b[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("log_every", [1, 3])
def test_nan_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path, tiny_store, tiny_recipe, monkeypatch,
                                                                 log_every):
    """Read every step or every third (as on a GPU, where reading waits for the device), the stop
    names the first non-finite step, and no checkpoint is written after it."""
    calls = {"n": 0}
    real = loop.forward

    def poisoned(model, batch):
        calls["n"] += 1
        out = real(model, batch)
        if calls["n"] == 9:  # step 9: after the step7 checkpoint (step 7 closes 2K tokens)
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(loop, "forward", poisoned)
    with pytest.raises(loop.NonFiniteLoss) as error:
        run_member(tmp_path, tiny_store, tiny_recipe, "nan", log_every_steps=log_every)
    assert calls["n"] == 9 + (log_every > 1)  # read at step 10, with steps 8 and 9
    message = str(error.value)
    assert message.startswith("step 9 (phase pretrain") and "loss is nan" in message
    assert "last good checkpoint 000000007-step7 is intact" in message and "\n" not in message
    saved = checkpoint.list_checkpoints(tmp_path / "nan" / "checkpoints")
    assert [p.name for p in saved] == ["000000007-step7"]
    checkpoint.verify(saved[0])
    monkeypatch.setattr(loop, "forward", real)
    runs.resume(tmp_path / "nan", World())  # and the run goes on from it
    assert checkpoint.find_tagged(tmp_path / "nan" / "checkpoints", "decay2")


def test_cross_objective_continuation(tmp_path, tiny_store, tiny_recipe, pair_run):
    encoder = pair_run / "encoder"
    recipe = load_recipe(str(tiny_recipe))
    opts = loop.Options(stores=(str(tiny_store),), objective="clm", progress=False, cross=True)
    config, initial = runs.initial_model(recipe, opts, str(encoder))
    final = weights(encoder, "decay2")
    assert config.causal and all(torch.equal(initial[k], final[k]) for k in final)
    run = runs.start(tmp_path / "dec-from-enc", recipe, opts, World(), init_from=str(encoder))
    lines = metrics(run)
    assert lines[0]["step"] == 1 and {line["phase"] for line in lines} == {"cross"}  # time was reset
    # 512 tokens per step, warmup 256, then a linear decay over the remaining 744 tokens to 0.02×
    assert lines[0]["lr"] == pytest.approx(1.5e-3 * (0.02 + 0.98 * (1 - 256 / 744)))
    names = [p.name.partition("-")[2] for p in checkpoint.list_checkpoints(run / "checkpoints")]
    assert names == ["cross1", "cross2"]


def test_bad_input_is_one_line(tmp_path, tiny_store, tiny_recipe, pair_run, capsys):
    def fails(argv, expected):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and "\n" not in err, err

    fails(["train", "--resume", str(tmp_path)], "is not a training run")
    base = ["train", "--recipe", str(tiny_recipe), "--store", str(tiny_store), "--no-progress"]
    fails([*base, "--out", str(tmp_path / "a"), "--objective", "mlm", "--set", "phase.decay.mixture.groups=[klingon]"],
          "klingon")
    fails([*base, "--out", str(tmp_path / "b")], "needs --pair, or --objective")
    fails([*base, "--out", str(tmp_path / "c"), "--objective", "clm", "--init-from", str(tmp_path)],
          "neither a twofold run nor a Hugging Face model directory")
    small = pair_run / "encoder"
    fails([*base, "--out", str(tmp_path / "d"), "--objective", "clm", "--init-from", str(small),
           "--set", "model=demo"], "does not fit recipe model demo")
    fails([*base, "--out", str(small), "--objective", "mlm"], "already holds a run")
    fails([*base, "--out", str(tmp_path / "e"), "--objective", "mlm", "--device", "toaster"], "is not a device")


def test_resume_refuses_a_store_with_another_fingerprint(tmp_path, tiny_store, tiny_recipe, capsys):
    import shutil

    from twofold.data.sources import SourceSpec
    from twofold.data.store import prepare_store
    from twofold.data.tokenizer import load_tokenizer

    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    run = run_member(tmp_path, store, tiny_recipe, "run", scale=0.25)
    tokenizer = load_tokenizer(tiny_store.parent / "tokenizer")
    prepare_store([SourceSpec("stdlib", packages="json")], tokenizer, store, overwrite=True, progress=False)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "token store differs from the checkpoint's" in err and err.count("\n") == 1


def test_tensorboard_scalars_mirror_the_metrics(tmp_path, tiny_store, tiny_recipe):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = run_member(tmp_path, tiny_store, tiny_recipe, "board", scale=0.5, tensorboard=True)
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in steps if "loss" in r]
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    logged = events.Scalars("loss")
    assert [e.step for e in logged] == [r["tokens"] for r in losses]
    assert [round(e.value, 5) for e in logged] == [round(r["loss"], 5) for r in losses]
    # every number of a metrics line but the x axes (step, tokens, phase_tokens), at its tokens
    assert set(events.Tags()["scalars"]) == {"loss", "lr", "grad_norm", "tokens_per_s", "batch_sequences",
                                             "micro_batch_sequences", "batch_tokens", "seq_len", "mask_rate"}
    assert [(e.step, e.value) for e in events.Scalars("seq_len")] == [(r["tokens"], r["seq_len"]) for r in losses]
