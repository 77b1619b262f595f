"""Suites: the published evaluations, run by the libraries the field uses (`twofold eval --suite`).

    from twofold.eval.suites import Settings, plan, run_plan, member_of
    steps = plan(["glue", "lm-eval"], Settings(tasks=("cola",), data_dir=Path("data")))
    results = run_plan([member_of(Path("runs/demo/export/encoder"))], steps, options, out="runs/eval")

| suite | what | library |
|---|---|---|
| glue | the 8 GLUE tasks, each fine-tuned (classify recipe and its sweep), official metrics, average | transformers |
| mteb | any MTEB tasks (`--tasks`) on a Sentence Transformers model of the export or its embed fine-tune | mteb |
| mteb-retrieval, csn, mldr, followir | presets: MTEB(eng, v2) retrieval, CodeSearchNet, MLDR, FollowIR p-MRR | mteb |
| lm-eval | lm-evaluation-harness tasks (default: Ettin's), decoder via `hf`, encoder via `twofold-mlm` | lm-eval |
| rank1 | a first-stage run (BM25, a run file, dense) reranked by the decoder as rank1 scores | bm25s + transformers |
| ettin | the paper's protocol for a pair: glue, mteb-retrieval, csn, mldr (after the embed fine-tune), lm-eval | all |
"""

from twofold.eval.member import CLASSIFIER, DECODER, EMBEDDER, ENCODER, Member, kind_of, member_of
from twofold.eval.settings import Settings
from twofold.eval.suites.base import Suite
from twofold.eval.suites.runner import ETTIN_FAMILIES, SUITES, Step, check_kinds, families, plan, run_plan, suite_names

__all__ = ["CLASSIFIER", "DECODER", "EMBEDDER", "ENCODER", "ETTIN_FAMILIES", "SUITES", "Member", "Step", "Suite",
           "Settings", "check_kinds", "families", "kind_of", "member_of", "plan", "run_plan", "suite_names"]
