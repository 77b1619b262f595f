"""Local copies of hub datasets, read with the real `datasets`: two copies with the same folder name
(another sample of a set, an edited copy) each give their own rows, wherever twofold reads one — a
fine-tune's data, a generation set, a pretraining source. `datasets` alone serves the second copy
the first one's cached data."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset

from twofold.data.sources import SourceSpec, read_documents
from twofold.finetune.datasets import load_labelled
from twofold.finetune.generation_data import load_generation
from twofold.local_datasets import own_cache


def hub_copy(folder, rows: list[dict]):
    """A dataset repository's layout: a parquet shard per config, the configs in the README."""
    for config in ("first", "second"):
        Dataset.from_list(rows).to_parquet(str(folder / config / "train-00000-of-00001.parquet"))
    configs = "".join(f"- config_name: {c}\n  data_files:\n  - split: train\n    path: {c}/train-*.parquet\n"
                      for c in ("first", "second"))
    (folder / "README.md").write_text(f"---\nconfigs:\n{configs}---\n")
    return folder


@pytest.fixture
def shared_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")  # one cache for both copies


def test_two_copies_named_alike_are_read_apart(tmp_path, shared_cache):
    rows = lambda tag: [{"source": f"{tag} source {i}", "target": f"{tag} target {i}", "text": f"{tag} text {i}",
                         "sentence": f"{tag} sentence {i}",
                         "label": ["yes", "no"][i % 2]} for i in range(12)]
    sample = hub_copy(tmp_path / "sample" / "set", rows("sample"))
    full = hub_copy(tmp_path / "full" / "set", rows("full"))

    prompts = [{e.prompt.split()[0] for e in load_generation(f"hf:{copy}:second", seed=0).train}
               for copy in (sample, full)]
    assert prompts == [{"sample"}, {"full"}]
    texts = [{text.split()[0] for (text,), _ in load_labelled(f"hf:{copy}:first", seed=0).train}
             for copy in (sample, full)]
    assert texts == [{"sample"}, {"full"}]
    documents = [{d.text.split()[0] for d in read_documents(SourceSpec(str(copy), kind="hf", hf_config="first"))}
                 for copy in (sample, full)]
    assert documents == [{"sample"}, {"full"}]


def test_each_local_copy_is_read_through_a_datasets_cache_of_its_own_without_progress_bars():
    import datasets
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    before = datasets.config.HF_DATASETS_CACHE
    enable_progress_bars()
    with own_cache():
        first = datasets.config.HF_DATASETS_CACHE
        assert are_progress_bars_disabled()
    with own_cache():
        second = datasets.config.HF_DATASETS_CACHE
    assert datasets.config.HF_DATASETS_CACHE == before and not are_progress_bars_disabled()
    assert first != second and Path(first).parent == Path(before) and Path(first).is_dir()
    assert Path(first).name.startswith("twofold-local-copy-")
    disable_progress_bars()
    try:
        with own_cache():
            pass
        assert are_progress_bars_disabled()  # left as found
    finally:
        enable_progress_bars()
