"""ColBERT through PyLate, for both members. Runs in .venv-colbert (`make test` runs it there: -m colbert)."""

import json

import pytest

from twofold.finetune import RECORD, finetune, load_data

from .conftest import tiny_recipe

pytestmark = pytest.mark.colbert


@pytest.mark.parametrize("member", ["encoder", "decoder"])
def test_colbert_loads_unchanged_in_pylate(tmp_path, exports, pairs_file, member):
    import numpy as np
    from pylate import models

    result = finetune("colbert", exports[member], load_data("colbert", str(pairs_file)), tmp_path / "out",
                      tiny_recipe("colbert"), say=lambda *_: None)
    loaded = models.ColBERT(str(tmp_path / "out"), device="cpu")
    queries = loaded.encode(["read a json file"], is_query=True)
    again = models.ColBERT(str(tmp_path / "out"), device="cpu").encode(["read a json file"], is_query=True)
    assert queries[0].shape[-1] == 128 and np.array_equal(queries[0], again[0])
    record = json.loads((tmp_path / "out" / RECORD).read_text())
    assert record["library"] == "pylate" and record["environment"]["pylate"]
    assert set(result.test) == {"ndcg@10", "mrr@10"} and result.sweep[0]["batches"] > 0
