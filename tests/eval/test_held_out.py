"""The built-in evaluation data comes from the held-out split and never from training text."""

from collections import Counter

from twofold.data.stdlib import held_out_functions, is_held_out, stdlib_documents
from twofold.eval.tasks.classification import package_set
from twofold.eval.tasks.retrieval import code_search_set


def test_evaluation_functions_never_appear_in_the_training_corpus():
    functions = held_out_functions()
    assert len(functions) > 100 and all(is_held_out(f.module) for f in functions)
    training_text = "\x00".join(d.text for d in stdlib_documents("train"))
    leaked = [f.name for f in functions if f.code.strip() in training_text]
    assert leaked == []


def test_code_search_pairs_each_docstring_line_with_its_code():
    data = code_search_set(max_queries=50, seed=0)
    assert len(data.queries) == 50 and set(data.qrels) == set(data.queries)
    # Each held-out function's code (docstring removed) -> the first line of its docstring, and
    # the name its `def` line must carry.
    first_line = {f.code: f.docstring.strip().splitlines()[0] for f in held_out_functions()}
    names = {f.code: f.name.rsplit(".", 1)[-1] for f in held_out_functions()}
    for query, relevant in data.qrels.items():
        (doc,) = relevant
        code = data.corpus[doc]
        assert first_line[code] == data.queries[query]  # the query is this code's own docstring line
        assert f"def {names[code]}(" in code
        assert data.queries[query] not in code  # the answer is not written in the document
    assert len(set(data.corpus.values())) == len(data.corpus)
    assert code_search_set(50, seed=0) == data and code_search_set(50, seed=1) != data


def test_package_classification_split_is_stratified_and_complete():
    data = package_set(min_per_class=20, max_per_class=50, dev_fraction=0.2, seed=0)
    assert len(data.labels) >= 2
    sizes = Counter(f.package for f in held_out_functions())
    kept = sum(min(sizes[name], 50) for name in data.labels)
    assert all(sizes[name] >= 20 for name in data.labels)
    assert len(data.train) + len(data.dev) == kept
    assert 0.15 < len(data.dev) / kept < 0.25
    assert {label for _, label in data.dev} == set(range(len(data.labels)))
