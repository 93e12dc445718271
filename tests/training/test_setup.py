"""electra_fast.training.setup: a run's plain objects from a TrainConfig, fresh and resumed."""
import dataclasses

import pytest

pytest.importorskip("datasets")
pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")

from electra_fast import data, samplers, train  # noqa: E402
from electra_fast.training.config import TrainConfig  # noqa: E402
from electra_fast.training.setup import setup_run  # noqa: E402

from .helpers import StandIn, fake_flops, write_corpus  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "docs.txt")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, corpus):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    data.tokenizer_for([corpus], vocab_size=200, cache_dir=path.parent).save(str(path))
    return path


def _cfg(tmp_path, corpus, tokenizer, **kw):
    base = dict(preset="tiny", corpus=[str(corpus)], tokenizer=str(tokenizer), steps=30, batch_size=2, seq_len=16,
                output=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), progress=False, export_hf=False,
                log_every=1, eval_sequences=3, heldout_fraction=0.1)
    base.update(kw)
    return TrainConfig(**base)


def test_fresh_run(tmp_path, corpus, tokenizer):
    setup = setup_run(_cfg(tmp_path, corpus, tokenizer, accumulation=3, generator="unigram"), log=lambda *_: None)
    assert setup.checkpoint is None and setup.dist.world == 1 and setup.device.type in ("cpu", "cuda")
    assert setup.out == tmp_path / "run" and (setup.out / "tokenizer.json").is_file()
    assert setup.config.seq_len == 16 and setup.config.vocab_size == setup.tokenizer.get_vocab_size()
    assert (setup.layout.batch, setup.layout.world, setup.layout.accum) == (2, 1, 3)
    assert setup.warmup == min(setup.config.warmup_steps, 30 // 10)
    assert isinstance(setup.sampler, samplers.UnigramSampler)
    assert isinstance(setup.batches, data.PackedBatches) and setup.batches.position(0) == 0
    assert [len(b["input_ids"]) for b in setup.heldout] == [2, 1]


def test_resumed_run_keeps_the_checkpoints_schedule_config_and_data_position(tmp_path, corpus, tokenizer):
    cfg = _cfg(tmp_path, corpus, tokenizer, steps=3, warmup_steps=2, lr=1e-2)
    train.pretrain(cfg, model_factory=StandIn, step_flops=fake_flops, log=lambda *_: None)
    setup = setup_run(dataclasses.replace(cfg, steps=10, resume=True), log=lambda *_: None)
    assert setup.checkpoint is not None and setup.checkpoint.meta.step == 3
    assert setup.warmup == 2 and setup.config.learning_rate == 1e-2 and setup.cfg.steps == 10
    assert setup.batches.position(0) == setup.checkpoint.meta.data_position == 3 * 2
    with pytest.raises(ValueError, match="--lr 0.001 contradicts the checkpoint, whose run has 0.01"):
        setup_run(dataclasses.replace(cfg, steps=10, lr=1e-3, resume=True), log=lambda *_: None)


def test_too_many_shards(tmp_path, corpus, tokenizer):
    with pytest.raises(ValueError, match="world size x accumulation"):
        setup_run(_cfg(tmp_path, corpus, tokenizer, accumulation=2**20 + 1), log=lambda *_: None)
