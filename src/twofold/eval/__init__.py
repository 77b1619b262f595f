"""Evaluation, in two rooms that share this floor and never import each other:

- `twofold.eval.tasks`: the built-in tasks run on our models in this process (language
  modelling, code search, package classification, samples; classification and BEIR
  retrieval on the user's files): `evaluate`, `evaluate_pair`, `Settings`, `TASKS`.
- `twofold.eval.suites`: the published evaluations run by the field's libraries on Hugging
  Face directories (GLUE, MTEB, lm-eval, rank1, the Ettin protocol): `plan`, `run_plan`.

Shared here: `member` (`Member`: one model under evaluation and its results' labels, in both
rooms), `settings` (`Settings`: every knob of an evaluation, one object for both rooms),
`metrics` (pure functions, ranx, BM25), `text` (framing, padding, pooling), `mlm_scoring`,
`progress`, `stdlib` (the held-out functions). The user's files are read by
`twofold.finetune.datasets`, results are `twofold.results.Result`, tables `twofold.report`.
"""
