"""`twofold demo`: the Ettin experiment in miniature — offline, on a laptop CPU, in minutes.

Stages (the first two reuse what an earlier demo already built, unless `fresh`):
1. the built-in `stdlib` corpus -> a byte-level BPE trained on its *train* split;
2. token stores of the train split (training) and the held-out split (held-out loss);
3. jobs, run side by side on worker processes (`twofold.demo.lanes`), each as soon as what it
   needs is done: an encoder and a decoder trained with the scaled three-phase `demo` recipe on
   identical batches (always retrained: the demo is about watching that happen), the cross
   arm (the decoder continued as an encoder), each exported in the Hugging Face format and
   evaluated from its export; the same fine-tunes of all three, per task and seed; baselines;
4. `report.md` with the finding, the scores, samples, the training curves and the times.

Modules: `run` (`run_demo`, the stages in order), `layout` (the folder, sizes, what an earlier
run keeps), `jobs` (stage 3 and its progress), `report` (the prose), `lanes` (worker
processes), `downstream` (the fine-tunes over seeds), `completion` (multiple-choice code
completion). This file imports none of them: a worker process that only needs `lanes` (or
one job's module) loads no more than that.

    from twofold.demo.run import run_demo
    report = run_demo("runs/demo", budget=300_000)
"""
