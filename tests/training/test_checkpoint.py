"""electra_fast.training.checkpoint: atomic writes, tied weights, extra state, and a model + AdamW + metadata
round trip through the file (TrainingCheckpoint)."""
import dataclasses

import pytest
import torch
from torch import nn

pytest.importorskip("safetensors")

from electra_fast.training.checkpoint import (  # noqa: E402
    CHECKPOINT, CheckpointMeta, TrainingCheckpoint, load_checkpoint, save_checkpoint)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT
    state = {"w": torch.arange(4.0)}
    optim = {"state": {"w": {"exp_avg": torch.ones(4)}}, "param_groups": [{"lr": 0.1, "params": ["w"]}]}
    save_checkpoint(path, model_state=state, optim_state=optim, meta={"step": 1})
    import safetensors.torch

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model_state={"w": torch.zeros(4)}, optim_state=optim, meta={"step": 2})
    model, optim_back, meta = load_checkpoint(path)
    assert meta["step"] == 1 and torch.equal(model["w"], torch.arange(4.0))
    assert torch.equal(optim_back["state"]["w"]["exp_avg"], torch.ones(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT], "no temp file left behind"


def test_tied_weights_and_extra_state_round_trip(tmp_path):
    shared = torch.arange(6.0)
    extra = {"sampler": {"counts": torch.ones(3, 3, dtype=torch.int64), "beta": torch.tensor(2.0)}}
    save_checkpoint(tmp_path / "c.safetensors",
                    model_state={"a": shared, "b": shared, "_extra_state": extra, "sub.m._extra_state": None},
                    optim_state={"state": {}, "param_groups": []}, meta={})
    model, *_ = load_checkpoint(tmp_path / "c.safetensors")
    assert torch.equal(model["a"], shared) and torch.equal(model["b"], shared)
    assert model["sub.m._extra_state"] is None
    assert torch.equal(model["_extra_state"]["sampler"]["counts"], extra["sampler"]["counts"])
    assert torch.equal(model["_extra_state"]["sampler"]["beta"], extra["sampler"]["beta"])


class TiedWithCounts(nn.Module):
    """Tied input/output embeddings, a LayerNorm, and extra state (counts), like ElectraForPretraining."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.norm = nn.LayerNorm(4)
        self.out = nn.Linear(4, 10)
        self.out.weight = self.embed.weight
        self.counts = torch.zeros(3)

    def get_extra_state(self):
        return {"counts": self.counts.clone()}

    def set_extra_state(self, state):
        self.counts = state["counts"].clone()

    def forward(self, ids):
        return self.out(self.norm(self.embed(ids)))


def _trained():
    model = TiedWithCounts()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    for _ in range(2):
        model(torch.arange(6)).logsumexp(-1).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    model.counts += torch.tensor([1.0, 2.0, 3.0])
    return model, optimizer


def test_training_checkpoint_round_trip(tmp_path):
    """A TrainingCheckpoint captured from a trained model and AdamW, saved and loaded, restores a fresh model and
    optimizer to the same state (tie, extra state, AdamW moments, learning rate) with the same metadata."""
    model, optimizer = _trained()
    meta = CheckpointMeta(step=2, data_position=16, scheduler={"last_epoch": 2, "_last_lr": [0.1]},
                          config={"vocab_size": 10}, train_config={"seed": 3, "corpus": None}, warmup=1,
                          stats={"tokens": 96, "flops": 1.5e6, "flops_full": 2e6, "time": 0.25}, world=1)
    TrainingCheckpoint.capture(model, optimizer, meta).save(tmp_path / CHECKPOINT)

    loaded = TrainingCheckpoint.load(tmp_path / CHECKPOINT)
    assert loaded.meta == meta
    fresh = TiedWithCounts()
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=0.5)
    loaded.restore(fresh, fresh_optimizer)
    assert fresh.out.weight is fresh.embed.weight, "loading keeps the tie"
    assert torch.equal(fresh.counts, model.counts)
    for name, value in model.state_dict().items():
        if not name.endswith("_extra_state"):
            assert torch.equal(fresh.state_dict()[name], value), name
    assert fresh_optimizer.param_groups[0]["lr"] == 0.1
    for p, q in zip(model.parameters(), fresh.parameters()):
        for key, value in optimizer.state[p].items():
            assert torch.equal(fresh_optimizer.state[q][key], value), key


def test_meta_with_other_fields_is_a_clear_error():
    fields = {f.name: 0 for f in dataclasses.fields(CheckpointMeta)}
    del fields["warmup"]
    with pytest.raises(ValueError, match="another version"):
        CheckpointMeta.from_dict(fields)
    with pytest.raises(ValueError, match="expected"):
        CheckpointMeta.from_dict(dict(fields, warmup=0, extra=1))
