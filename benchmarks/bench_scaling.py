"""Training-step cost as the work grows: ours against the Hugging Face baseline over sequence length and batch.

Two sweeps of [batch, seq_len] token ids on one preset: seq_len over SEQ_LENS at batch BASE_BATCH, and batch
over BATCHES at seq_len BASE_SEQ_LEN (the shared cell is timed once). At every cell ours (ElectraForPretraining,
no early exit) and HF (dense Gumbel) are the runners of bench_train_step.py, interleaved step by step on the
same batches of the bundled corpus (one warm-up round at the cell's shape, then `rounds`; the two models are
built once and carry on training from cell to cell), and the cell reports their median step times, tokens/s,
microseconds per token and ours/HF. Microseconds per token flat along a sweep means linear scaling; rising
along seq_len is attention's quadratic term, falling along batch is fixed per-step cost being amortised.

Rows (scaling.csv/json): sweep (seq_len | batch), preset, batch, seq_len, ours_ms, hf_ms, ours_over_hf,
ours_tokens_per_s, hf_tokens_per_s, ours_us_per_token, hf_us_per_token, repeats.

    python benchmarks/bench_scaling.py [--quick] [--preset small] [--rounds 7] [--out DIR]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train_step import Corpus, Runner, build_runners, interleave, load_corpus, summarise  # noqa: E402

SEQ_LENS = (128, 256, 512)
BATCHES = (1, 8, 32)
BASE_BATCH, BASE_SEQ_LEN = 8, 128
PLANS = {
    "full": dict(preset="small", seq_lens=SEQ_LENS, batches=BATCHES, base_batch=BASE_BATCH,
                 base_seq_len=BASE_SEQ_LEN, rounds=7),
    "quick": dict(preset="tiny", seq_lens=(16, 32), batches=(1, 2), base_batch=2, base_seq_len=16, rounds=1),
}


def time_cell(runners: Sequence[Runner], corpus: Corpus, rounds: int) -> Dict[str, float]:
    """Median step times of ours and HF on the corpus's batches, interleaved after one warm-up round."""
    for runner in runners:
        runner.times.clear()
    interleave(runners, corpus.batches, rounds)
    batch, seq_len = corpus.batches[0]["input_ids"].shape
    by = {r["family"]: r for r in summarise(runners, "", batch, seq_len)}
    return {"ours_ms": by["ours"]["step_ms"], "hf_ms": by["hf"]["step_ms"], "repeats": by["ours"]["repeats"]}


def scaling(preset: str = "small", seq_lens: Sequence[int] = SEQ_LENS, batches: Sequence[int] = BATCHES, *,
            base_batch: int = BASE_BATCH, base_seq_len: int = BASE_SEQ_LEN, rounds: int = 7) -> List[Dict[str, object]]:
    """Both sweeps; one row per (sweep, cell), the shared cell reported in both sweeps from one timing."""
    from electra_fast.models import ElectraConfig

    vocab = ElectraConfig.preset(preset).vocab_size
    sweeps = [("seq_len", base_batch, t) for t in seq_lens] + [("batch", b, base_seq_len) for b in batches]
    timed: Dict[Tuple[int, int], Dict[str, float]] = {}
    runners: List[Runner] = []
    rows = []
    for sweep, batch, seq_len in sweeps:
        if (batch, seq_len) not in timed:
            corpus = load_corpus(vocab, batch, seq_len, rounds + 1)
            # the models take any [batch, seq_len]: built once (for the tokenizer's special ids, the same at
            # every length), each cell starts with a warm-up round at its shape
            runners = runners or build_runners(preset, corpus, keeps=(), thresholds=(), statistical=(),
                                               hf_samplings=("gumbel",))
            timed[(batch, seq_len)] = time_cell(runners, corpus, rounds)
        t = timed[(batch, seq_len)]
        tokens = batch * seq_len
        rows.append({"section": "scaling", "sweep": sweep, "preset": preset, "batch": batch, "seq_len": seq_len,
                     "ours_ms": t["ours_ms"], "hf_ms": t["hf_ms"], "ours_over_hf": t["ours_ms"] / t["hf_ms"],
                     "ours_tokens_per_s": tokens / t["ours_ms"] * 1e3, "hf_tokens_per_s": tokens / t["hf_ms"] * 1e3,
                     "ours_us_per_token": t["ours_ms"] * 1e3 / tokens, "hf_us_per_token": t["hf_ms"] * 1e3 / tokens,
                     "repeats": t["repeats"]})
    return rows


COLUMNS = ["sweep", "batch", "seq_len", "ours_ms", "hf_ms", "ours_over_hf", "ours_us_per_token", "hf_us_per_token"]


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, object]]:
    from common import RESULTS_DIR, print_table, write_results

    parser = argparse.ArgumentParser(description="training-step time against sequence length and batch, ours vs HF")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {PLANS['quick']}")
    parser.add_argument("--preset", default=None, help="preset (default: small; tiny with --quick)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per cell (default: 7; 1 with --quick)")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    plan = dict(PLANS["quick" if args.quick else "full"])
    plan.update({k: v for k, v in (("preset", args.preset), ("rounds", args.rounds)) if v is not None})
    rows = scaling(**plan)
    print_table(rows, COLUMNS)
    write_results("scaling", rows, args.out)
    return rows


if __name__ == "__main__":
    main()
