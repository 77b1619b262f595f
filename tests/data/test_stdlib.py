import ast

from twofold.data.stdlib import held_out_functions, is_held_out, stdlib_documents, stdlib_modules


def test_split_is_by_module_and_about_a_tenth_is_held_out():
    modules = [name for name, _ in stdlib_modules()]
    held = [m for m in modules if is_held_out(m)]
    assert 0.05 < len(held) / len(modules) < 0.15
    assert not any(m.startswith(("test.", "idlelib")) for m in modules)


def test_training_part_never_contains_a_held_out_module_or_function():
    packages = ["email", "json", "unittest", "difflib"]
    train = list(stdlib_documents("train", packages))
    held = list(stdlib_documents("held-out", packages))
    train_modules = {d.doc_id.split(":", 1)[1] for d in train}
    held_modules = {d.doc_id.split(":", 1)[1] for d in held}
    assert train_modules and held_modules and not train_modules & held_modules
    assert all(is_held_out(m) for m in held_modules)
    functions = held_out_functions(packages)
    assert functions
    training_text = "\n".join(d.text for d in train)
    assert not any(f.code in training_text for f in functions)


def test_held_out_functions_have_docstring_apart_from_code_and_a_package_label():
    functions = held_out_functions(["unittest", "difflib"])
    assert {f.package for f in functions} <= {"unittest", "difflib"}
    for function in functions:
        assert function.name.startswith(function.module + ".")
        assert function.docstring not in function.code
        tree = ast.parse(_dedent(function.code))
        assert ast.get_docstring(tree.body[0]) is None  # the code parses, without docstring


def test_the_corpus_is_deterministic_and_has_code_and_prose():
    first = [(d.doc_id, d.group, len(d.text)) for d in stdlib_documents("train", ["json"])]
    assert first == [(d.doc_id, d.group, len(d.text)) for d in stdlib_documents("train", ["json"])]
    assert {group for _, group, _ in first} == {"code", "prose"}
    topics = [d for d in stdlib_documents() if d.doc_id.startswith("topic:")]
    assert len(topics) > 50  # the language reference from pydoc_data


def _dedent(code: str) -> str:
    import textwrap

    return textwrap.dedent(code)


def test_prose_holds_every_docstring_that_ast_finds():
    from twofold.data.stdlib import _docstrings

    for module, file in stdlib_modules(["json", "email", "asyncio"]):
        source = file.read_text()
        tree = ast.parse(source)
        expected = {ast.get_docstring(node) for node in ast.walk(tree)
                    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))}
        assert expected - {None} <= set(_docstrings(source)), module
