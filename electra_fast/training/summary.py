"""The summary of a finished run that `electra-fast pretrain` prints."""
from __future__ import annotations

import dataclasses
from typing import Optional


START_METRICS = ("auc_uniform", "auc_unigram", "mlm_accuracy")  # also taken before the first step


@dataclasses.dataclass
class Summary:
    steps: int
    tokens_per_s: float
    flops_saved_fraction: Optional[float]    # 1 - FLOPs as run / FLOPs without early exit; None if no FLOPs
    heldout: dict                            # the final evaluation (electra_fast.training.evaluation.evaluate)
    start: dict                              # START_METRICS before the first step
    checkpoint: str
    hf_export: Optional[str]                 # None: skipped, for the reason in hf_skipped
    metrics: str
    hf_skipped: str = "pip install transformers"  # why there is no export ("--no-export", or no transformers)

    @classmethod
    def from_stats(cls, stats: dict, *, steps: int, heldout: dict, checkpoint: str, hf_export: Optional[str],
                   metrics: str, hf_skipped: str = "pip install transformers") -> "Summary":
        """The summary whose rates come from a run's running totals (CheckpointMeta.stats)."""
        full = stats["flops_full"]
        saved = (1.0 - stats["flops"] / full) if full else None
        return cls(steps=steps, tokens_per_s=stats["tokens"] / max(stats["time"], 1e-9),
                   flops_saved_fraction=saved, heldout=heldout, start=stats.get("start_eval", {}),
                   checkpoint=checkpoint, hf_export=hf_export, metrics=metrics, hf_skipped=hf_skipped)

    def _before_after(self, key: str) -> str:
        end = self.heldout.get(key)
        if end is None:
            return "n/a"
        start = self.start.get(key)
        return f"{end:.4f}" if start is None else f"{start:.4f} -> {end:.4f}"

    def text(self) -> str:
        saved = "n/a" if self.flops_saved_fraction is None else f"{100 * self.flops_saved_fraction:.1f}%"
        h = self.heldout
        mlm = (self._before_after("mlm_accuracy") if "mlm_accuracy" in h
               else "n/a (statistical generator)")
        lines = [
            f"steps                      {self.steps}",
            f"tokens/s                   {self.tokens_per_s:,.0f}",
            f"FLOPs saved by early exit  {saved}",
            f"held-out RTD accuracy      {h.get('rtd_accuracy', float('nan')):.4f}  (majority class "
            f"{h.get('rtd_majority', float('nan')):.4f}: answering 'original' everywhere; loss "
            f"{h.get('rtd_loss', float('nan')):.4f}, AUC {h.get('rtd_auc', float('nan')):.4f}; own generator)",
            f"fixed-set AUC, unigram     {self._before_after('auc_unigram')}  (hard: frequency-matched replacements)",
            f"fixed-set AUC, uniform     {self._before_after('auc_uniform')}  (easy: random-token replacements)",
            f"generator MLM accuracy     {mlm}",
            f"checkpoint                 {self.checkpoint}",
            f"Hugging Face export        {self.hf_export or f'skipped ({self.hf_skipped})'}",
            f"metrics                    {self.metrics}",
        ]
        return "\n".join(lines)
