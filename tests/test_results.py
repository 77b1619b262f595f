"""Result files: the name each is saved under, the JSON written, which files a folder's reading takes
and which it leaves, and the one-line refusals of an edited or foreign file."""

import json
import re

import numpy as np
import pytest

from twofold.errors import TwofoldError
from twofold.results import Result, load_results, result_filename, save_results


def result(**changes) -> Result:
    fields = dict(task="code-search", model="Enc-A", metrics={"ndcg@10": 0.5}, seed=0, n=12)
    return Result(**(fields | changes))


def record(**changes) -> dict:
    return result().to_dict() | changes


def test_file_names_keep_model_checkpoint_task_and_variant_and_replace_the_rest():
    assert result_filename(result()) == "Enc-A__code-search.json"  # no variant, no empty part
    assert result_filename(result(variant="last", checkpoint="step1")) == "Enc-A@step1__code-search__last.json"
    assert result_filename(result(model="my model/v2", task="beir", variant="sci fact: 1")) == (
        "my_model_v2__beir__sci_fact_1.json")


def test_saved_json_is_indented_and_numpy_numbers_become_plain(tmp_path):
    (path,) = save_results([result(metrics={"ndcg@10": np.float32(0.25)}, n=12)], tmp_path / "new" / "folder")
    text = path.read_text()
    assert text == json.dumps(json.loads(text), indent=2) + "\n"
    assert load_results(path)[0].metrics == {"ndcg@10": 0.25}


def test_a_folder_reads_results_and_leaves_other_json_and_suites_work(tmp_path):
    save_results([result(), result(task="lm", metrics={"perplexity": 9.0})], tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 64}))  # not a result
    (tmp_path / "torn.json").write_text('{"task": "x", "mod')  # a file being written
    (tmp_path / "ids.json").write_text("[1, 2]")
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "glue" / "work" / "sst2").mkdir(parents=True)  # a suite's fine-tunes
    (tmp_path / "glue" / "work" / "sst2" / "finetune.json").write_text(json.dumps(record(task="ft")))
    (tmp_path / "glue" / "work" / "summary.json").write_text(json.dumps(record(task="ft-summary")))
    (tmp_path / "glue" / "work.json").write_text(json.dumps(record(task="named-work")))
    (tmp_path / "mteb").mkdir()
    (tmp_path / "mteb" / "both.json").write_text(json.dumps([record(task="a"), record(task="b")]))
    assert sorted(r.task for r in load_results(tmp_path)) == ["a", "b", "code-search", "lm", "named-work"]


def test_a_file_with_the_three_keys_of_a_result_is_read_and_its_gaps_named(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"task": "t", "model": "m", "metrics": {}}))
    with pytest.raises(TwofoldError, match=re.escape(f"{tmp_path / 'r.json'}: not an evaluation result "
                                                     "(missing n, seed); pass the JSON files")):
        load_results(tmp_path)


@pytest.mark.parametrize("changes, problem", [
    (dict(seed=True), "seed is True, not a whole number"),
    (dict(n="12"), "n is '12', not a whole number"),
    (dict(tokens=1.5), "tokens is 1.5, not a whole number or null"),
    (dict(metrics={"ndcg@10": "0.5"}), "metric 'ndcg@10' is '0.5', not a number"),
    (dict(metrics={"ndcg@10": False}), "metric 'ndcg@10' is False, not a number"),
])
def test_an_edited_field_is_refused_naming_the_file(tmp_path, changes, problem):
    path = tmp_path / "r.json"
    path.write_text(json.dumps([record(), record(**changes)]))
    with pytest.raises(TwofoldError, match=f"^{re.escape(f'{path}: {problem}')}"):
        load_results(path)


def test_unknown_keys_are_left_out_and_a_bare_record_is_named_result():
    loaded = Result.from_dict(record(note="added by hand", tokens=None))
    assert loaded == result() and loaded.tokens is None
    with pytest.raises(TwofoldError, match=r"^result: not an evaluation result \(missing seed\)"):
        Result.from_dict({k: v for k, v in record().items() if k != "seed"})


@pytest.mark.parametrize("text, problem", [
    ('{"task": ', "not valid JSON"), ("3", "expected JSON holding an object or a list"),
])
def test_a_file_that_is_no_result_list_or_object_is_refused_in_one_line(tmp_path, text, problem):
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(TwofoldError, match=f"^{re.escape(str(path))}: {problem}.*; pass the JSON files that "
                                           "`twofold eval` writes$"):
        load_results(path)
