"""electra_fast.training.checkpoint: atomic writes, tied weights, extra state, and a model + AdamW + metadata
round trip through the file (TrainingCheckpoint), and integrity: a checksum verified on load, the previous
checkpoint kept and fallen back to, temp files of killed saves removed."""
import dataclasses
import os

import pytest
import torch
from torch import nn

pytest.importorskip("safetensors")

from electra_fast.training.checkpoint import (  # noqa: E402
    CHECKPOINT, CORRUPT, PREVIOUS, CheckpointError, CheckpointMeta, TrainingCheckpoint, load_checkpoint, load_latest,
    remove_orphans, save_checkpoint)


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
                          stats={"tokens": 96, "flops": 1.5e6, "flops_full": 2e6, "time": 0.25}, world=1,
                          identity={"tokenizer_sha256": "ab", "train_sha256": "cd", "train_sequences": 5})
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


# ------------------------------------------------------------------------------------------- integrity
def _save(path, value=1.0, step=1):
    save_checkpoint(path, model_state={"w": torch.full((256,), value)}, optim_state={"state": {}, "param_groups": []},
                    meta={"step": step})


def test_garbage_bytes_in_the_data_are_detected(tmp_path):
    """16 bytes overwritten in the middle of the tensor data: the file still parses, the checksum does not match."""
    path = tmp_path / CHECKPOINT
    _save(path)
    raw = bytearray(path.read_bytes())
    middle = len(raw) - 512
    raw[middle:middle + 16] = b"\x13" * 16
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="does not match its checksum") as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)


def test_an_edited_metadata_value_is_detected(tmp_path):
    path = tmp_path / CHECKPOINT
    _save(path, step=12)
    path.write_bytes(path.read_bytes().replace(b'\\"step\\": 12', b'\\"step\\": 13'))
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        load_checkpoint(path)


@pytest.mark.parametrize("damage", ["empty", "truncated", "header", "missing"])
def test_unreadable_files_are_one_line_errors_naming_the_file(tmp_path, damage):
    path = tmp_path / CHECKPOINT
    _save(path)
    raw = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "header":
        path.write_bytes(raw[:8] + b"\xff" * 16 + raw[24:])
    else:
        path.unlink()
    with pytest.raises(CheckpointError) as e:
        TrainingCheckpoint.load(path)
    message = str(e.value)
    assert str(path) in message and "\n" not in message


def test_a_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / CHECKPOINT
    _save(path, 1.0, step=1)
    _save(path, 2.0, step=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [PREVIOUS, CHECKPOINT]
    assert load_checkpoint(tmp_path / PREVIOUS)[2]["step"] == 1 and load_checkpoint(path)[2]["step"] == 2


def _meta_for_load():
    return CheckpointMeta(step=2, data_position=4, scheduler={}, config={}, train_config={}, warmup=0, stats={},
                          world=1, identity={})


def test_load_latest_falls_back_to_the_previous_checkpoint(tmp_path):
    model, optimizer = _trained()
    TrainingCheckpoint.capture(model, optimizer, dataclasses.replace(_meta_for_load(), step=1)).save(
        tmp_path / CHECKPOINT)
    TrainingCheckpoint.capture(model, optimizer, _meta_for_load()).save(tmp_path / CHECKPOINT)
    assert load_latest(tmp_path).meta.step == 2
    (tmp_path / CHECKPOINT).write_bytes(b"garbage")
    said = []
    assert load_latest(tmp_path, log=said.append).meta.step == 1
    assert len(said) == 1 and "resuming from the previous checkpoint" in said[0] and CHECKPOINT in said[0]
    assert (tmp_path / CORRUPT).read_bytes() == b"garbage", "the unreadable file is kept aside"
    assert not (tmp_path / CHECKPOINT).exists(), "so the next save cannot push the good previous one out"
    (tmp_path / PREVIOUS).write_bytes(b"")
    with pytest.raises(CheckpointError, match="and the previous one"):
        load_latest(tmp_path)


def test_orphan_temp_files_of_dead_processes_are_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    orphan, live = tmp_path / f".{CHECKPOINT}.{dead}.tmp", tmp_path / f".{CHECKPOINT}.{os.getpid()}.tmp"
    orphan.write_bytes(b"half a file")
    live.write_bytes(b"being written")
    assert remove_orphans(tmp_path) == [orphan.name]
    assert not orphan.exists() and live.exists()
