"""`--suite lm-eval`: lm-evaluation-harness tasks for both members of a pair.

The decoder runs through lm-eval's own `hf` model (`HFLM`) on its export. The encoder runs
through `twofold-mlm`, a masked-LM scorer registered as an lm-eval model here: log-likelihood
requests are pseudo-log-likelihoods (each continuation token masked alone, batched; see
`twofold.eval.mlm_scoring`), rolling log-likelihoods the PLL of the whole text, and generation
greedy mask filling. So the same tasks, prompts, few-shot examples and metrics score both
members. Default tasks: those Ettin reports (arXiv 2507.11412): ARC easy/challenge, HellaSwag,
LAMBADA, OpenBookQA, PIQA, SciQ, SIQA, TriviaQA, WinoGrande, WSC.

`--data-dir DIR`: lm-eval also reads the task YAMLs under `DIR/lm-eval/` (or DIR), which may
define new tasks or redefine a standard one on local files (`dataset_path: json`,
`dataset_kwargs: {data_files: …}`); such files take precedence over lm-eval's own.

lm-eval and transformers (optional, the `lmeval` extra) are imported where used.
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path

import lm_eval.models  # noqa: F401  fills lm-eval's registry (hf, vllm, …) before twofold-mlm joins it
import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm.auto import tqdm

from twofold.errors import TwofoldError
from twofold.eval.member import ENCODER, Member
from twofold.eval.mlm_scoring import count_scored_tokens, fill_greedy, pseudo_loglikelihood
from twofold.eval.settings import Settings
from twofold.eval.suites.base import require, result
from twofold.files import sha256_file
from twofold.quiet import quiet_head_load_reports, quiet_lm_eval_git
from twofold.results import Result

ETTIN_TASKS = ("arc_easy", "arc_challenge", "hellaswag", "lambada_openai", "openbookqa", "piqa", "sciq",
               "social_iqa", "triviaqa", "winogrande", "wsc273")
MINIMUM = "0.4.5"  # TaskManager(include_path=…), simple_evaluate(task_manager=…), registered LM classes


@register_model("twofold-mlm")
class MaskedLMHarness(LM):
    """An lm-eval model for masked LMs: `lm_eval --model twofold-mlm --model_args pretrained=DIR`."""

    def __init__(self, pretrained: str, batch_size: int | str = 64, device: str | None = None,
                 max_length: int | None = None, max_gen_toks: int = 64) -> None:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        super().__init__()
        self.device_name = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForMaskedLM.from_pretrained(pretrained).to(self.device_name).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(pretrained)
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 64
        self.max_length = int(max_length) if max_length else None
        self.max_gen_toks = int(max_gen_toks)

    def _score(self, pairs: list[tuple[str, str]], disable_tqdm: bool) -> list[tuple[float, bool]]:
        total = count_scored_tokens(self.tokenizer, pairs)
        with tqdm(total=total, desc="masked-LM pseudo-log-likelihood", unit="tok", disable=disable_tqdm or None,
                  dynamic_ncols=True) as bar:
            return pseudo_loglikelihood(self.model, self.tokenizer, pairs, self.batch_size, self.max_length, bar)

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [tuple(request.args[:2]) for request in requests]
        scores = self._score(pairs, disable_tqdm)
        for pair, score in zip(pairs, scores):
            self.cache_hook.add_partial("loglikelihood", pair, score)
        return scores

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """The PLL of the whole text (every token masked alone); no windows: a bidirectional model sees it all."""
        texts = [request.args[0] for request in requests]
        scores = [value for value, _ in self._score([("", text) for text in texts], disable_tqdm)]
        for text, score in zip(texts, scores):
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), score)
        return scores

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        outputs = []
        for request in tqdm(requests, desc="masked-LM greedy fill", disable=disable_tqdm or None):
            context, options = request.args[0], dict(request.args[1] or {})
            until = options.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            text = fill_greedy(self.model, self.tokenizer, context, int(options.get("max_gen_toks", self.max_gen_toks)),
                               until, self.max_length)
            self.cache_hook.add_partial("generate_until", request.args, text)
            outputs.append(text)
        return outputs


def include_path(options: Settings) -> Path | None:
    if options.data_dir is None:
        return None
    return options.data_dir / "lm-eval" if (options.data_dir / "lm-eval").is_dir() else options.data_dir


_MANAGERS: dict[tuple, object] = {}


def task_manager(options: Settings, names=()):
    """lm-eval's TaskManager: the local task files alone when they hold every task named (indexing
    lm-eval's own few thousand YAMLs takes ~15 s), else lm-eval's tasks with the local ones on top."""
    from lm_eval.tasks import TaskManager

    path = include_path(options)
    if path is not None:
        key = (str(path), False)
        if key not in _MANAGERS:
            _MANAGERS[key] = TaskManager(include_path=str(path), include_defaults=False)
        if names and set(names) <= set(_MANAGERS[key].all_tasks):
            return _MANAGERS[key]
    key = (str(path), True)
    if key not in _MANAGERS:
        _MANAGERS[key] = TaskManager(include_path=str(path) if path else None)
    return _MANAGERS[key]


def tasks(options: Settings) -> list[str]:
    require("lm-eval", MINIMUM, "--suite lm-eval", "lmeval")
    if not options.tasks:
        return list(ETTIN_TASKS)
    known = set(task_manager(options, options.tasks).all_tasks)
    unknown = [name for name in options.tasks if name not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=5)
        raise TwofoldError(f"--suite lm-eval: unknown task {unknown[0]!r}" + (f"; close: {', '.join(close)}" if close
                           else "") + f" (Ettin's: {', '.join(ETTIN_TASKS)}; `lm-eval ls tasks` lists all)")
    return list(dict.fromkeys(options.tasks))


def check_data(names: list[str], options: Settings) -> None:
    """Build every task (lm-eval loads its data) before any model work: missing data is one line."""
    manager = task_manager(options, names)
    for name in names:
        try:
            manager.load([name])
        except Exception as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            where = f"the task files under {include_path(options)}" if include_path(options) else "the hub"
            raise TwofoldError(f"lm-eval task {name}: its data does not load from {where} "
                               f"({type(error).__name__}: {message}); with no internet, give --data-dir with "
                               "task YAMLs on local copies") from None


_MODELS: dict[tuple, object] = {}


def harness_model(member: Member, options: Settings):
    """lm-eval's `hf` model for a decoder, `twofold-mlm` for an encoder (one per member, reused across tasks)."""
    key = (str(member.path), options.batch_size, options.max_length)
    if key not in _MODELS:
        _MODELS.clear()  # one model in memory at a time
        if member.kind == ENCODER:
            _MODELS[key] = MaskedLMHarness(str(member.path), batch_size=options.batch_size,
                                           max_length=options.max_length)
        else:
            from lm_eval.models.huggingface import HFLM

            extra = {"max_length": options.max_length} if options.max_length else {}
            _MODELS[key] = HFLM(pretrained=str(member.path), batch_size=options.batch_size, dtype="float32",
                                device="cuda" if torch.cuda.is_available() else "cpu", **extra)
    return _MODELS[key]


def metrics_of(scores: dict) -> dict[str, float]:
    """lm-eval's {"acc,none": …, "acc_stderr,none": …} as {"acc": …}; a filter other than none is kept."""
    named = {}
    for key, value in scores.items():
        metric, _, which = key.partition(",")
        if "_stderr" in metric or metric in ("sample_len", "sample_count", "alias") \
                or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        named[metric if which in ("none", "") else f"{metric}[{which}]"] = float(value)
    return named


def provenance(config: dict, version) -> dict:
    """The task's dataset (hub name and revision), or the sha256 of its local data files."""
    kwargs = config.get("dataset_kwargs") or {}
    data = {"dataset": config.get("dataset_path", ""), "config": config.get("dataset_name") or "",
            "revision": kwargs.get("revision") or "unpinned (latest)", "task_version": str(version)}
    files = kwargs.get("data_files")
    if files:
        names = [files] if isinstance(files, str) else list(files.values()) if isinstance(files, dict) else list(files)
        flat = [n for name in names for n in ([name] if isinstance(name, str) else name)]
        data["sha256"] = {name: sha256_file(name) for name in flat if Path(name).is_file()}
        data.pop("revision")
    return data


def run(member: Member, name: str, options: Settings) -> list[Result]:
    from lm_eval import evaluator

    quiet_head_load_reports()
    with quiet_lm_eval_git(evaluator):
        outcome = evaluator.simple_evaluate(model=harness_model(member, options), tasks=[name],
                                            task_manager=task_manager(options, [name]),
                                            num_fewshot=options.num_fewshot, limit=options.limit, bootstrap_iters=0,
                                            log_samples=False, random_seed=options.seed,
                                            numpy_random_seed=options.seed, torch_random_seed=options.seed,
                                            fewshot_random_seed=options.seed)
    scores = outcome["results"].get(name)
    if scores is None:  # a group: its subtasks' results
        raise TwofoldError(f"lm-eval returned no result named {name!r}; run its subtasks by name")
    config = outcome.get("configs", {}).get(name, {})
    samples = outcome.get("n-samples", {}).get(name, {})
    scorer = "twofold-mlm (pseudo-log-likelihood)" if member.kind == ENCODER else "hf"
    prompt = hashlib.sha256(repr(sorted((k, str(v)) for k, v in config.items())).encode()).hexdigest()[:16]
    return [result(member, "lm-eval", name, metrics_of(scores), int(samples.get("effective", 0)), "lm-eval",
                   provenance(config, outcome.get("versions", {}).get(name)), seed=options.seed, model=scorer,
                   num_fewshot=outcome.get("n-shot", {}).get(name), limit=options.limit,
                   output_type=config.get("output_type"), task_config_hash=prompt)]
