"""electra_fast.train.pretrain end to end: logging and evaluation, resume equivalence, refusals, gradient
accumulation == DDP (2 gloo processes), and the same on the tiny preset once the model's ops exist."""
import dataclasses
import json
import os
import pathlib
import socket

import pytest
import torch

pytest.importorskip("datasets")
pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")

from electra_fast import data, train  # noqa: E402
from electra_fast.training.checkpoint import CHECKPOINT, load_checkpoint  # noqa: E402

from .training.helpers import StandIn, fake_flops, write_corpus  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "docs.txt")


def _cfg(tmp_path, corpus, name, **kw):
    base = dict(preset="tiny", corpus=[str(corpus)], vocab_size=200, steps=6, batch_size=2, seq_len=16,
                warmup_steps=2, output=str(tmp_path / name), cache_dir=str(tmp_path / "cache"), progress=False,
                export_hf=False, log_every=1, eval_sequences=4, heldout_fraction=0.1)
    base.update(kw)
    return train.TrainConfig(**base)


def _run(cfg, factory=StandIn):
    return train.pretrain(cfg, model_factory=factory, step_flops=fake_flops, log=lambda *_: None)


def _weights(output):
    return load_checkpoint(pathlib.Path(output) / CHECKPOINT)


@pytest.fixture(scope="module", autouse=True)
def _shared_tokenizer_cache(tmp_path_factory, corpus):
    """Train the corpus tokenizer once (training is not deterministic, so every run below must share it)."""
    cache = tmp_path_factory.mktemp("tok_cache")
    tok = data.tokenizer_for([corpus], vocab_size=200, cache_dir=cache)
    path = cache / "tokenizer.json"
    tok.save(str(path))
    return path


# --------------------------------------------------------------------------------------- the loop
def test_loop_trains_logs_and_evaluates(tmp_path, corpus, _shared_tokenizer_cache):
    cfg = _cfg(tmp_path, corpus, "run", tokenizer=str(_shared_tokenizer_cache), steps=8, eval_every=4, lr=1e-2)
    summary = _run(cfg)
    assert summary.steps == 8
    records = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    steps = [r for r in records if "eval" not in r]
    evals = [r for r in records if "eval" in r]
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert [r["step"] for r in evals] == [0, 4, 8]  # before the first step, then every 4
    assert steps[-1]["loss"] < steps[0]["loss"], "the stand-in learns"
    assert summary.start["auc_uniform"] == evals[0]["eval"]["auc_uniform"]
    assert 0 < summary.heldout["rtd_majority"] < 1 and "fixed-set AUC, unigram" in summary.text()
    assert steps[0]["exit_fraction"] == pytest.approx(0.25)
    assert summary.flops_saved_fraction == pytest.approx(0.25)
    assert 0 <= summary.heldout["rtd_accuracy"] <= 1 and summary.heldout["tokens"] > 0
    assert evals[0]["eval"]["tokens"] == evals[1]["eval"]["tokens"]
    lrs = [r["lr"] for r in steps]
    assert lrs[:2] == pytest.approx([0.5e-2, 1e-2]) and lrs[-1] == pytest.approx(1e-2 / 6)
    model, optim, meta = _weights(tmp_path / "run")
    assert meta["step"] == 8 and meta["data_position"] == 8 * 2
    assert (tmp_path / "run" / "tokenizer.json").is_file() and (tmp_path / "run" / "config.json").is_file()
    assert set(optim["state"]) == {f"discriminator.{n}" for n in ("embed.weight", "norm.weight", "norm.bias", "head.weight", "head.bias")}
    text = summary.text()
    for needle in ("steps", "tokens/s", "FLOPs saved by early exit  25.0%", "held-out RTD accuracy", "checkpoint"):
        assert needle in text


class Interrupting(StandIn):
    """Raises KeyboardInterrupt (a Ctrl-C) in the forward of step `at`."""
    at = 4

    def forward(self, *args, step=None, **kwargs):
        if step == self.at and self.training:
            raise KeyboardInterrupt
        return super().forward(*args, step=step, **kwargs)


@pytest.mark.parametrize("accumulation", [1, 2])
def test_resume_is_bit_identical(tmp_path, corpus, _shared_tokenizer_cache, accumulation):
    kw = dict(tokenizer=str(_shared_tokenizer_cache), steps=7, accumulation=accumulation, lr=1e-2)
    _run(_cfg(tmp_path, corpus, "straight", **kw))
    with pytest.raises(KeyboardInterrupt):
        _run(_cfg(tmp_path, corpus, "killed", **kw), factory=Interrupting)
    assert _weights(tmp_path / "killed")[2]["step"] == Interrupting.at
    _run(_cfg(tmp_path, corpus, "killed", resume=True, **kw))
    a_model, a_optim, a_meta = _weights(tmp_path / "straight")
    b_model, b_optim, b_meta = _weights(tmp_path / "killed")
    assert a_meta["step"] == b_meta["step"] == 7 and a_meta["data_position"] == b_meta["data_position"]
    for name in a_model:
        assert torch.equal(a_model[name], b_model[name]), name
    for fqn, state in a_optim["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b_optim["state"][fqn][key]), (fqn, key)
    a_log = [json.loads(x) for x in open(tmp_path / "straight" / "metrics.jsonl") if "eval" not in x]
    b_log = [json.loads(x) for x in open(tmp_path / "killed" / "metrics.jsonl") if "eval" not in x]
    assert [r["loss"] for r in a_log] == [r["loss"] for r in b_log]


def test_different_seeds_differ(tmp_path, corpus, _shared_tokenizer_cache):
    """The equivalence tests above could pass vacuously if nothing depended on the seed."""
    _run(_cfg(tmp_path, corpus, "s0", tokenizer=str(_shared_tokenizer_cache), steps=2, seed=0))
    _run(_cfg(tmp_path, corpus, "s1", tokenizer=str(_shared_tokenizer_cache), steps=2, seed=1))
    a, b = _weights(tmp_path / "s0")[0], _weights(tmp_path / "s1")[0]
    assert not torch.equal(a["discriminator.embed.weight"], b["discriminator.embed.weight"])


def test_resume_refusals(tmp_path, corpus, _shared_tokenizer_cache):
    cfg = _cfg(tmp_path, corpus, "r", tokenizer=str(_shared_tokenizer_cache), steps=2)
    with pytest.raises(FileNotFoundError, match="--resume"):
        _run(dataclasses.replace(cfg, resume=True))
    _run(cfg)
    before = (tmp_path / "r" / CHECKPOINT).read_bytes()
    with pytest.raises(FileExistsError, match="already holds a checkpoint"):
        _run(cfg)
    assert (tmp_path / "r" / CHECKPOINT).read_bytes() == before


# --------------------------------------------------------------------------------------- DDP
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, cfg, factory_name):
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    _run(cfg, factory=globals()[factory_name])


def _ddp_equivalence(tmp_path, cfg_single, cfg_ddp, factory_name, atol):
    import torch.multiprocessing as mp

    _run(cfg_single, factory=globals()[factory_name])
    mp.spawn(_ddp_worker, args=(2, _free_port(), cfg_ddp, factory_name), nprocs=2, join=True)
    single, _, s_meta = _weights(cfg_single.output)
    ddp, _, d_meta = _weights(cfg_ddp.output)
    assert s_meta["data_position"] == d_meta["data_position"]
    assert single.keys() == ddp.keys()
    for name in single:
        if single[name] is None or isinstance(single[name], dict):
            _assert_same_state(single[name], ddp[name], name)
        else:
            torch.testing.assert_close(ddp[name], single[name], rtol=1e-5, atol=atol, msg=name)


def test_ddp_two_processes_equal_one_process_with_the_combined_batch(tmp_path, corpus, _shared_tokenizer_cache):
    """2 gloo ranks x 2 rows == 1 process x (2 micro-batches of 2 rows): the combined batch of 4 rows per
    step, each micro-batch keeping the Philox stream and dropout seed of the rank it stands for."""
    kw = dict(tokenizer=str(_shared_tokenizer_cache), steps=4, lr=1e-2, eval_sequences=2)
    single = _cfg(tmp_path, corpus, "single", accumulation=2, **kw)
    ddp = _cfg(tmp_path, corpus, "ddp", accumulation=1, **kw)
    _ddp_equivalence(tmp_path, single, ddp, "StandIn", atol=1e-6)


# --------------------------------------------------------------------------------------- tiny preset
def _model_ready():
    try:
        from electra_fast.models import ElectraConfig, ElectraForPretraining

        config = ElectraConfig.preset("tiny", vocab_size=64, pad_token_id=0, cls_token_id=2, sep_token_id=3,
                                      mask_token_id=4, seq_len=8, batch_size=2)
        model = ElectraForPretraining(config)
        ids = torch.randint(5, 64, (2, 8))
        model(ids, torch.ones_like(ids), seed=0, offset=0, step=0).loss.backward()
        import electra_fast.flops  # noqa: F401
    except (ImportError, AttributeError, NotImplementedError):
        return False
    return True


needs_model = pytest.mark.skipif(not _model_ready(), reason="the model's ops or electra_fast.flops are not there yet")


def _real_model(config, sampler):
    from electra_fast.models import ElectraForPretraining

    return ElectraForPretraining(config, sampler=sampler)


def _tiny(tmp_path, corpus, name, tokenizer, **kw):
    base = dict(preset="tiny", corpus=[str(corpus)], tokenizer=str(tokenizer), steps=5, batch_size=2,
                seq_len=32, warmup_steps=2, output=str(tmp_path / name), cache_dir=str(tmp_path / "cache"),
                progress=False, export_hf=False, log_every=1, eval_sequences=2, heldout_fraction=0.1)
    base.update(kw)
    return train.TrainConfig(**base)


def _assert_same_state(a, b, where=""):
    assert (a is None) == (b is None), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same_state(a[key], b[key], f"{where}.{key}")
    elif a is not None:
        assert torch.equal(a, b), where


@needs_model
@pytest.mark.parametrize("kw", [
    dict(generator="network"), dict(early_exit_threshold=0.6), dict(generator="cluster"),
    dict(early_exit_keep=[0.5], early_exit_layers=[2], early_exit_warmup_steps=2),
], ids=["network", "threshold-exit", "cluster", "budget-exit"])
def test_tiny_preset_resume_is_bit_identical(tmp_path, corpus, _shared_tokenizer_cache, kw):
    from electra_fast.train import pretrain

    generator = kw.get("generator", "network")
    pretrain(_tiny(tmp_path, corpus, "straight", _shared_tokenizer_cache, **kw), model_factory=_real_model,
             log=lambda *_: None)

    def interrupting(config, sampler):
        model = _real_model(config, sampler)
        original = model.forward

        def forward(*args, step=None, **kwargs):
            if step == 3 and model.training:
                raise KeyboardInterrupt
            return original(*args, step=step, **kwargs)

        model.forward = forward
        return model

    with pytest.raises(KeyboardInterrupt):
        pretrain(_tiny(tmp_path, corpus, "killed", _shared_tokenizer_cache, **kw), model_factory=interrupting,
                 log=lambda *_: None)
    pretrain(_tiny(tmp_path, corpus, "killed", _shared_tokenizer_cache, resume=True, **kw),
             model_factory=_real_model, log=lambda *_: None)
    a, _, _ = _weights(tmp_path / "straight")
    b, _, _ = _weights(tmp_path / "killed")
    _assert_same_state(a, b, "model")
    if generator == "cluster":
        counts = a["_extra_state"]["sampler"]["counts"]
        assert not torch.equal(counts, torch.ones_like(counts)), "the C-RTS counts were updated and saved"


@needs_model
def test_tiny_preset_ddp_equals_one_process(tmp_path, corpus, _shared_tokenizer_cache):
    kw = dict(steps=3, lr=1e-3)
    single = _tiny(tmp_path, corpus, "single", _shared_tokenizer_cache, accumulation=2, **kw)
    ddp = _tiny(tmp_path, corpus, "ddp", _shared_tokenizer_cache, accumulation=1, **kw)
    _ddp_equivalence(tmp_path, single, ddp, "_real_model", atol=1e-5)


# --------------------------------------------------------------------------------------- the run record
def test_resume_without_repeating_the_flags_continues_the_same_run(tmp_path, corpus, _shared_tokenizer_cache):
    """A run started with --seed 7 and resumed without it trains on with seed 7: the same weights as the run
    that was never interrupted (before the record, it silently went on with seed 0)."""
    kw = dict(tokenizer=str(_shared_tokenizer_cache), steps=7, lr=1e-2)
    _run(_cfg(tmp_path, corpus, "straight", seed=7, **kw))
    with pytest.raises(KeyboardInterrupt):
        _run(_cfg(tmp_path, corpus, "killed", seed=7, **kw), factory=Interrupting)
    _run(_cfg(tmp_path, corpus, "killed", resume=True, **kw))
    a, _, a_meta = _weights(tmp_path / "straight")
    b, _, b_meta = _weights(tmp_path / "killed")
    assert b_meta["train_config"]["seed"] == 7 and a_meta["identity"] == b_meta["identity"]
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_resume_refuses_what_contradicts_the_record(tmp_path, corpus, _shared_tokenizer_cache):
    cfg = _cfg(tmp_path, corpus, "r", tokenizer=str(_shared_tokenizer_cache), steps=3, seed=7)
    _run(cfg)
    before = (tmp_path / "r" / CHECKPOINT).read_bytes()
    with pytest.raises(ValueError, match="--seed 3 contradicts the checkpoint, whose run has 7"):
        _run(dataclasses.replace(cfg, resume=True, seed=3, steps=5))
    with pytest.raises(ValueError, match="--generator 'uniform' contradicts"):
        _run(dataclasses.replace(cfg, resume=True, generator="uniform", steps=5))
    with pytest.raises(ValueError, match="the checkpoint is at step 3 and --steps 2 is not past it"):
        _run(dataclasses.replace(cfg, resume=True, steps=2))
    other = tmp_path / "other.txt"
    other.write_text("A different corpus of a few lines.\n" * 40)
    with pytest.raises(ValueError, match="--corpus gives other training data than the checkpoint's run"):
        _run(dataclasses.replace(cfg, resume=True, corpus=[str(other)], steps=5))
    assert (tmp_path / "r" / CHECKPOINT).read_bytes() == before


def test_a_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path, corpus, _shared_tokenizer_cache):
    kw = dict(tokenizer=str(_shared_tokenizer_cache), lr=1e-2, save_every=1)
    _run(_cfg(tmp_path, corpus, "straight", steps=5, **kw))
    with pytest.raises(KeyboardInterrupt):  # after saving steps 1 to 4
        _run(_cfg(tmp_path, corpus, "damaged", steps=5, **kw), factory=Interrupting)
    path = tmp_path / "damaged" / CHECKPOINT
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 16] = b"\x13" * 16
    path.write_bytes(bytes(raw))
    said = []
    train.pretrain(_cfg(tmp_path, corpus, "damaged", steps=5, resume=True, **kw), model_factory=StandIn,
                   step_flops=fake_flops, log=said.append)
    assert any("does not match its checksum" in s and "resuming from the previous checkpoint" in s
               and "(step 3)" in s for s in said)
    a, _, _ = _weights(tmp_path / "straight")
    b, _, b_meta = _weights(tmp_path / "damaged")
    assert b_meta["step"] == 5
    for name in a:
        assert torch.equal(a[name], b[name]), name


# --------------------------------------------------------------------------------------- FSDP
def test_fsdp_two_processes_equal_one_process_with_the_combined_batch(tmp_path, corpus, _shared_tokenizer_cache):
    """As the DDP test, under FullyShardedDataParallel (gloo, CPU): the gradient clipping must use the norm over
    every rank's shard, and the checkpoint gathers the shards; then the FSDP run resumes."""
    kw = dict(tokenizer=str(_shared_tokenizer_cache), steps=4, lr=1e-2, eval_sequences=2, grad_clip=0.05)
    single = _cfg(tmp_path, corpus, "single", accumulation=2, **kw)
    fsdp = _cfg(tmp_path, corpus, "fsdp", accumulation=1, fsdp=True, **kw)
    _ddp_equivalence(tmp_path, single, fsdp, "StandIn", atol=1e-6)
    import torch.multiprocessing as mp

    longer = dict(kw, steps=6)
    _run(_cfg(tmp_path, corpus, "single", accumulation=2, resume=True, **longer))
    mp.spawn(_ddp_worker, args=(2, _free_port(), _cfg(tmp_path, corpus, "fsdp", fsdp=True, resume=True, **longer),
                                "StandIn"), nprocs=2, join=True)
    a, _, a_meta = _weights(tmp_path / "single")
    b, _, b_meta = _weights(tmp_path / "fsdp")
    assert a_meta["step"] == b_meta["step"] == 6
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)
