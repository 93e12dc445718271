"""The summary of a finished run that `electra-fast pretrain` prints."""
from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass
class Summary:
    steps: int
    tokens_per_s: float
    flops_saved_fraction: Optional[float]    # 1 - FLOPs as run / FLOPs without early exit; None if no FLOPs
    heldout: dict                            # the final evaluation (electra_fast.training.evaluation.evaluate)
    checkpoint: str
    hf_export: Optional[str]                 # None: skipped (transformers is not installed, or --no-export)
    metrics: str

    @classmethod
    def from_stats(cls, stats: dict, *, steps: int, heldout: dict, checkpoint: str, hf_export: Optional[str],
                   metrics: str) -> "Summary":
        """The summary whose rates come from a run's running totals (CheckpointMeta.stats)."""
        full = stats["flops_full"]
        saved = (1.0 - stats["flops"] / full) if full else None
        return cls(steps=steps, tokens_per_s=stats["tokens"] / max(stats["time"], 1e-9),
                   flops_saved_fraction=saved, heldout=heldout, checkpoint=checkpoint, hf_export=hf_export,
                   metrics=metrics)

    def text(self) -> str:
        saved = "n/a" if self.flops_saved_fraction is None else f"{100 * self.flops_saved_fraction:.1f}%"
        lines = [
            f"steps                      {self.steps}",
            f"tokens/s                   {self.tokens_per_s:,.0f}",
            f"FLOPs saved by early exit  {saved}",
            f"held-out RTD accuracy      {self.heldout.get('rtd_accuracy', float('nan')):.4f}  "
            f"(loss {self.heldout.get('rtd_loss', float('nan')):.4f}, AUC {self.heldout.get('rtd_auc', float('nan')):.4f})",
            f"checkpoint                 {self.checkpoint}",
            f"Hugging Face export        {self.hf_export or 'skipped (pip install transformers)'}",
            f"metrics                    {self.metrics}",
        ]
        return "\n".join(lines)
