"""Generation data: prompt -> completion pairs from JSONL/TSV/CSV files (as given, or source/target through a
template), parallel text files, a local `datasets` folder through `hf:` and the built-in set; the splits held
out when none are given, and every bad row named by its file and line."""

import json

import pytest

from twofold.errors import TwofoldError
from twofold.finetune.generation_data import (
    STDLIB_CODE_LINES,
    Example,
    GenerationData,
    load_generation,
    read_examples,
    stdlib_docstrings,
    stdlib_examples,
)


def write(path, text):
    path.write_text(text)
    return str(path)


def jsonl(path, rows):
    return write(path, "".join(json.dumps(row) + "\n" for row in rows))


def test_jsonl_prompt_completion_and_source_target_through_a_template(tmp_path):
    given = tmp_path / "given.jsonl"
    given.write_text("".join(json.dumps({"prompt": f"Q: {i}+2\nA:", "completion": f" {i + 2}"}) + "\n"
                             for i in range(10)))
    data = load_generation(str(given), seed=3)
    assert len(data.train) == 8 and len(data.dev) == len(data.test) == 1
    assert sorted(data.train + data.dev + data.test, key=lambda e: int(e.completion)) == \
        [Example(f"Q: {i}+2\nA:", f" {i + 2}") for i in range(10)]
    rendered = tmp_path / "rendered.jsonl"
    rendered.write_text('{"source": "x", "target": "y", "id": 1}\n' * 3)
    data = load_generation(str(rendered), template="In: {source} {not a field}\nOut:")
    assert data.test == [Example("In: x {not a field}\nOut:", "y")]


def test_dotted_fields_read_a_record_column_and_hf_reads_a_local_dataset_with_its_splits(tmp_path):
    """A dataset saved with `datasets` in the hub's layout (data/SPLIT-*.parquet), rows holding a `translation`
    record, loaded by name through `hf:` as `datasets.load_dataset` loads it."""
    from datasets import Dataset

    def rows(n, offset):
        return [{"translation": {"src_lang": "kel", "tgt_lang": "vor", "src_text": f"ama {i}",
                                 "tgt_text": f"tusi {i}"}} for i in range(offset, offset + n)]

    for split, n, offset in (("train", 6, 0), ("validation", 2, 100), ("test", 3, 200)):
        path = tmp_path / "kelo" / "data" / f"{split}-00000-of-00001.parquet"
        Dataset.from_list(rows(n, offset)).to_parquet(str(path))
    data = load_generation(f"hf:{tmp_path / 'kelo'}", template="{source} =", source_field="translation.src_text",
                           target_field="translation.tgt_text")
    assert data.name == "kelo" and (len(data.train), len(data.dev), len(data.test)) == (6, 2, 3)
    assert data.test[0] == Example("ama 200 =", "tusi 200") and data.dev[1] == Example("ama 101 =", "tusi 101")


def test_parallel_files_pair_line_i_with_line_i_and_skip_blank_pairs(tmp_path):
    (tmp_path / "a.txt").write_text("ama beko\n\ncilu\nx\ny\n")
    (tmp_path / "b.txt").write_text("tusi rano\n\npewa\nX\nY\n")
    data = load_generation(f"{tmp_path / 'a.txt'},{tmp_path / 'b.txt'}", test=f"{tmp_path / 'a.txt'},"
                           f"{tmp_path / 'b.txt'}", dev=f"{tmp_path / 'a.txt'},{tmp_path / 'b.txt'}")
    assert data.test == [Example("ama beko\n", "tusi rano"), Example("cilu\n", "pewa"), Example("x\n", "X"),
                         Example("y\n", "Y")]


def test_the_built_in_set_trains_on_train_modules_and_tests_on_held_out_ones():
    from twofold.data.stdlib import documented_functions

    packages = ("json", "email")
    data = stdlib_docstrings(packages)
    first_lines = lambda part: {f.docstring.strip().splitlines()[0].strip()
                                for f in documented_functions(part, packages)}
    held_out, train = first_lines("held-out"), first_lines("train")
    assert data.test and {e.completion.strip() for e in data.test} <= held_out - train
    assert {e.completion.strip() for e in data.train + data.dev} <= train
    assert all(e.prompt.endswith("\n# Summary:") and e.completion.startswith(" ") for e in data.test)
    assert stdlib_docstrings(("json", "email"), seed=1).test == data.test  # every seed scores the same functions


def test_a_row_is_prompt_completion_as_given_or_source_target_rendered_with_the_default_template(tmp_path):
    given = jsonl(tmp_path / "given.jsonl", [{"prompt": "P:", "completion": " c", "source": "unused"}] * 3)
    assert read_examples(given) == [Example("P:", " c")] * 3
    plain = jsonl(tmp_path / "plain.jsonl", [{"source": "s", "target": "t"}])
    assert read_examples(plain) == [Example("s\n", "t")]  # the source, then the target on the next line
    named = jsonl(tmp_path / "named.jsonl", [{"de": "Hallo", "en": "Hello", "prompt": "ignored", "completion": "x"}])
    assert read_examples(named, source_field="de", target_field="en") == [Example("Hallo\n", "Hello")]
    with pytest.raises(TwofoldError, match=r"named.jsonl:1: no 'target' field"):  # naming the source names no target
        read_examples(named, source_field="de")
    with pytest.raises(TwofoldError, match=r"named.jsonl:1: no 'source' field"):  # nor the target a source
        read_examples(named, target_field="en")
    templated = jsonl(tmp_path / "templated.jsonl", [{"source": "s", "target": "t"}])
    assert read_examples(templated, template="[{source}]") == [Example("[s]", "t")]
    numbers = write(tmp_path / "numbers.tsv", "source\ttarget\n1\t2\n")
    assert read_examples(numbers) == [Example("1\n", "2")]


def test_a_dotted_field_that_is_missing_or_not_a_record_names_the_field_and_the_columns(tmp_path):
    rows = jsonl(tmp_path / "rows.jsonl", [{"tr": {"src": "a", "tgt": "b"}}, {"tr": "flat", "id": 1}])
    with pytest.raises(TwofoldError, match=r"rows.jsonl:2: no 'tr.src' field \(columns: tr, id\); generation data "
                                           r"needs prompt \+ completion, or source \+ target"):
        read_examples(rows, source_field="tr.src", target_field="tr.tgt")
    other = jsonl(tmp_path / "other.jsonl", [{"tr": {"src": "a"}}])
    with pytest.raises(TwofoldError, match=r"other.jsonl:1: no 'tr.tgt' field"):
        read_examples(other, source_field="tr.src", target_field="tr.tgt")
    half = jsonl(tmp_path / "half.jsonl", [{"prompt": "p"}])
    with pytest.raises(TwofoldError, match=r"half.jsonl:1: no 'completion' field"):
        read_examples(half)
    target_only = jsonl(tmp_path / "target.jsonl", [{"completion": "c"}])
    with pytest.raises(TwofoldError, match=r"target.jsonl:1: no 'prompt' field"):
        read_examples(target_only)


def test_a_template_on_prompt_completion_rows_and_an_empty_target_are_refused(tmp_path):
    given = jsonl(tmp_path / "given.jsonl", [{"prompt": "p", "completion": "c"}])
    with pytest.raises(TwofoldError, match=r"given.jsonl:1: prompt/completion rows are used as they are, and "
                                           r"--template renders source/target rows"):
        read_examples(given, template="Q: {source}")
    empty = jsonl(tmp_path / "empty.jsonl", [{"source": "s", "target": "t"}, {"source": "s", "target": " \t"}])
    with pytest.raises(TwofoldError, match=r"empty.jsonl:2: empty target; every example needs a text"):
        read_examples(empty)
    with pytest.raises(TwofoldError, match=r"drops the source: it must contain \{source\}"):
        read_examples(given, template="Translate:")
    nothing = write(tmp_path / "nothing.jsonl", "\n")
    with pytest.raises(TwofoldError, match=r"nothing.jsonl: no examples$"):
        read_examples(nothing)
    with pytest.raises(TwofoldError, match=r"absent.jsonl: no such file; pass a .jsonl/.tsv/.csv file"):
        read_examples(str(tmp_path / "absent.jsonl"))


def test_parallel_files_are_named_by_their_languages_and_checked_line_by_line(tmp_path):
    hat, eng = write(tmp_path / "train.hat", "a\nb\nc\n"), write(tmp_path / "train.eng", "A\nB\nC\n")
    data = load_generation(f"{hat},{eng}", seed=0)
    assert data.name == "hat-eng" and data.files == [tmp_path / "train.hat", tmp_path / "train.eng"]
    same = write(tmp_path / "src.txt", "a\nb\nc\n"), write(tmp_path / "tgt.txt", "A\nB\nC\n")
    assert load_generation(",".join(same)).name == "src"
    bare = write(tmp_path / "src", "a\nb\nc\n"), write(tmp_path / "tgt", "A\nB\nC\n")
    assert load_generation(",".join(bare)).name == "src"
    assert read_examples(f"{hat},{eng}", template="Q: {source} A:")[0] == Example("Q: a A:", "A")
    gap = write(tmp_path / "gap.eng", "A\n\nC\n")
    with pytest.raises(TwofoldError, match=rf"^{tmp_path / 'gap.eng'}:2: empty line where {hat}:2 has a sentence"):
        read_examples(f"{hat},{gap}")
    with pytest.raises(TwofoldError, match=rf"^{tmp_path / 'none.eng'}: no such file; parallel text is "
                                           "SOURCE_FILE,TARGET_FILE"):
        read_examples(f"{hat},{tmp_path / 'none.eng'}")
    with pytest.raises(TwofoldError, match=rf"^{tmp_path / 'none.hat'}: no such file; parallel text"):
        read_examples(f"{tmp_path / 'none.hat'},{eng}")
    comma = jsonl(tmp_path / "a,b.jsonl", [{"prompt": "p", "completion": "c"}])  # one file named with a comma
    assert read_examples(comma) == [Example("p", "c")]


def test_held_out_splits_only_where_none_is_given_and_the_size_limits(tmp_path):
    rows = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(20)]
    train, dev, test = (jsonl(tmp_path / f"{n}.jsonl", part) for n, part in
                        (("train", rows[:12]), ("dev", rows[12:16]), ("test", rows[16:])))
    given = load_generation(train, dev, test)
    assert (given.train, given.dev, given.test) == tuple([Example(r["prompt"], r["completion"]) for r in part]
                                                        for part in (rows[:12], rows[12:16], rows[16:]))
    assert given.files == [tmp_path / "train.jsonl", tmp_path / "dev.jsonl", tmp_path / "test.jsonl"]
    only_dev = load_generation(train, dev=dev, seed=1)  # the test split is held out of train; dev kept as given
    assert only_dev.dev == given.dev and len(only_dev.test) == 1 and len(only_dev.train) == 11
    assert sorted(only_dev.train + only_dev.test, key=given.train.index) == given.train
    only_test = load_generation(train, test=test, seed=1)
    assert only_test.test == given.test and len(only_test.dev) == 1 and len(only_test.train) == 11
    cut = load_generation(train, dev, test, max_train=5, max_test=3)
    assert (cut.train, cut.dev, cut.test) == (given.train[:5], given.dev[:3], given.test[:3])
    empty_dev = write(tmp_path / "empty.jsonl", "")
    with pytest.raises(TwofoldError, match=r"the dev split has no examples; give some"):
        load_generation(train, empty_dev, test)
    with pytest.raises(TwofoldError, match=r"the test split has no examples; give some"):
        load_generation(train, dev, empty_dev)
    with pytest.raises(TwofoldError, match=rf"^{empty_dev}: no examples$"):
        load_generation(empty_dev, dev, test)


def test_the_fingerprint_follows_every_split_and_the_template():
    one = [Example("p", "c")]
    base = GenerationData("d", one, one, one, template="{source}")
    changed = [GenerationData("d", [Example("p", "C")], one, one, template="{source}"),
               GenerationData("d", one, [Example("P", "c")], one, template="{source}"),
               GenerationData("d", one, one, [Example("p", "c")] * 2, template="{source}"),
               GenerationData("d", one, one, one, template=None)]
    prints = [base.fingerprint, *(d.fingerprint for d in changed)]
    assert len(set(prints)) == 5
    assert GenerationData("other", one, one, one, template="{source}").fingerprint == prints[0]  # the texts only


def test_the_built_in_set_takes_a_functions_first_lines_and_its_docstrings_first_line():
    from twofold.data.stdlib import documented_functions

    [function, *_] = documented_functions("train", ("json",))
    [example, *_] = stdlib_examples("train", ("json",))
    lines = function.code.splitlines()
    assert len(lines) > STDLIB_CODE_LINES  # the fixture cuts: the prompt holds only the first lines
    assert example.prompt == "\n".join(lines[:STDLIB_CODE_LINES]).rstrip() + "\n# Summary:"
    assert example.completion == " " + function.docstring.strip().splitlines()[0].strip()
    data = stdlib_docstrings(("json", "email"), seed=0)
    every = stdlib_examples("train", ("json", "email"))
    assert len(data.dev) == round(len(every) * 0.1) and sorted(data.train + data.dev, key=every.index) == every
    assert data.train == sorted(data.train, key=every.index) and data.dev == sorted(data.dev, key=every.index)
    assert stdlib_docstrings(("json", "email"), seed=1).dev != data.dev
    with pytest.raises(TwofoldError, match=r"^--template / --source-field / --target-field shape file data"):
        load_generation("stdlib", template="{source}")


def test_a_local_dataset_with_configs_is_read_by_the_config_named(tmp_path, monkeypatch):
    """`hf:FOLDER:CONFIG`, the hub's layout of a dataset with two configs (README front matter). `datasets`
    caches what it reads in a folder of this test's own (its shared cache may hold another folder of this name)."""
    import datasets
    from datasets import Dataset

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")

    folder = tmp_path / "multi"
    for config in ("a", "b"):
        Dataset.from_list([{"source": f"{config}{i}", "target": f"t{i}"} for i in range(10)]).to_parquet(
            str(folder / config / "train-00000-of-00001.parquet"))
    configs = "".join(f"- config_name: {c}\n  data_files:\n  - split: train\n    path: {c}/train-*.parquet\n"
                      for c in "ab")
    (folder / "README.md").write_text(f"---\nconfigs:\n{configs}---\n")
    data = load_generation(f"hf:{folder}:b", seed=0)
    assert data.name == "multi" and data.files == [] and len(data.train) == 8
    assert {e.prompt for e in data.train + data.dev + data.test} == {f"b{i}\n" for i in range(10)}
    with pytest.raises(TwofoldError, match=rf"^hf:{folder}: cannot load the dataset \(ValueError: Config name is "
                                           "missing"):
        load_generation(f"hf:{folder}")


def test_a_hub_dataset_is_named_by_its_id_its_dev_split_may_be_called_dev_and_bad_rows_are_named(monkeypatch):
    """No internet here: `datasets.load_dataset` is replaced by one that returns real `datasets` splits for
    a hub id (and raises for an unknown one), as the hub would."""
    import datasets

    asked = []

    def load_dataset(name, config=None, **kwargs):
        asked.append((name, config))
        if name == "org/absent":
            raise ConnectionError("no route to the hub")
        rows = lambda n, k: datasets.Dataset.from_list([{"source": f"{k}{i}", "target": f"t{i}"} for i in range(n)])
        splits = {"train": rows(6, "s"), "dev": rows(2, "d")}
        if name == "org/broken":
            splits["test"] = datasets.Dataset.from_list([{"source": "a", "target": "b"}, {"source": "c"}])
        if name == "org/no-train":
            splits = {"test": rows(2, "x")}
        return datasets.DatasetDict(splits)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    data = load_generation("hf:org/mt:kel-vor", seed=0)
    assert asked == [("org/mt", "kel-vor")] and data.name == "org_mt"
    assert [e.prompt for e in data.dev] == ["d0\n", "d1\n"] and (len(data.train), len(data.test)) == (5, 1)
    assert load_generation("hf:org/mt", seed=0).test == data.test and asked[-1] == ("org/mt", None)
    with pytest.raises(TwofoldError, match=r"^hf:org/broken\[test\]:2: no 'target' field \(columns: source, target\)"):
        load_generation("hf:org/broken")
    with pytest.raises(TwofoldError, match=r"^hf:org/no-train: no train split \(splits: test\); fine-tuning needs one"):
        load_generation("hf:org/no-train")
    with pytest.raises(TwofoldError, match=r"^hf:org/absent: cannot load the dataset \(ConnectionError: no route to "
                                           r"the hub\)$"):
        load_generation("hf:org/absent")


def test_a_target_file_with_a_comma_in_its_name_and_an_hf_spec_never_read_as_parallel_files(tmp_path):
    source, target = write(tmp_path / "a.src", "x\ny\nz\n"), write(tmp_path / "b,c.tgt", "X\nY\nZ\n")
    assert read_examples(f"{source},{target}")[0] == Example("x\n", "X")
    with pytest.raises(TwofoldError, match=r"^hf:x,y: no such file; pass a .jsonl/.tsv/.csv file"):
        read_examples("hf:x,y")


def test_the_split_is_seeded_and_the_template_recorded(tmp_path):
    rows = jsonl(tmp_path / "rows.jsonl", [{"source": f"s{i}", "target": f"t{i}"} for i in range(30)])
    first, again, other = (load_generation(rows, seed=s, template="Q: {source}") for s in (3, 3, 4))
    assert (first.dev, first.test) == (again.dev, again.test) and first.dev != other.dev
    assert first.template == "Q: {source}" and load_generation(rows).template is None
    assert load_generation(rows).dev == load_generation(rows, seed=0).dev  # the default seed is 0
    assert stdlib_docstrings(("json", "email")).dev == stdlib_docstrings(("json", "email"), seed=0).dev


def test_the_built_in_set_through_load_generation_with_its_name_template_seed_and_limits():
    packages = ("json", "email")
    data = load_generation("stdlib", seed=3, packages=packages, max_train=5, max_test=4)
    full = stdlib_docstrings(packages, seed=3)
    assert (data.train, data.dev, data.test) == (full.train[:5], full.dev[:4], full.test[:4])
    assert (data.name, data.template) == ("stdlib-docstrings", "{source}\n# Summary:")
    assert stdlib_docstrings(packages, seed=3).dev == full.dev != stdlib_docstrings(packages, seed=4).dev
    assert load_generation("stdlib", packages=("email",)).train != load_generation("stdlib", packages=packages).train
    for option in ({"source_field": "code"}, {"target_field": "doc"}):
        with pytest.raises(TwofoldError, match=r"^--template / --source-field / --target-field shape file data"):
            load_generation("stdlib", **option)
    small = stdlib_docstrings(("ctypes",))  # six train functions: round(0.6) = 1 held out for dev
    assert (len(small.train), len(small.dev)) == (5, 1)


def test_a_split_given_in_its_own_file_leaves_its_share_of_the_examples_to_training(tmp_path):
    rows = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(20)]
    train, dev = jsonl(tmp_path / "train.jsonl", rows), jsonl(tmp_path / "dev.jsonl", rows[:2])
    only_dev = load_generation(train, dev=dev, seed=1)
    assert (len(only_dev.train), len(only_dev.test)) == (18, 2)
    assert sorted(only_dev.train + only_dev.test, key=lambda e: int(e.prompt[1:])) == \
        [Example(r["prompt"], r["completion"]) for r in rows]


def test_two_training_examples_suffice_when_dev_and_test_are_given(tmp_path):
    rows = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(2)]
    train = jsonl(tmp_path / "train.jsonl", rows)
    data = load_generation(train, train, train)
    assert len(data.train) == len(data.dev) == len(data.test) == 2
