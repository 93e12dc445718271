"""electra_fast.training.record: a resumed run takes its checkpoint's record, refuses flags that contradict it
(naming the flag and both values), only extends --steps, and keeps the global batch."""
import dataclasses

import pytest

from electra_fast.training import record
from electra_fast.training.checkpoint import CheckpointMeta
from electra_fast.training.config import TrainConfig

RUN = TrainConfig(preset="tiny", seed=7, steps=8, generator="network", vocab_size=4000, early_exit_threshold=0.9,
                  output="run")


def _meta(cfg=RUN, step=8, world=1, **config):
    model_config = dict(batch_size=8, seq_len=128, learning_rate=1e-3, **config)
    return CheckpointMeta(step=step, data_position=step * 8, scheduler={}, config=model_config,
                          train_config=dataclasses.asdict(cfg), warmup=2, stats={}, world=world,
                          identity={"tokenizer_sha256": "a" * 64, "train_sha256": "b" * 64, "train_sequences": 10})


def _flags(**given):
    """A TrainConfig as the command line builds it: only the flags given, and their names."""
    return TrainConfig(**given, given=tuple(given))


def test_every_train_config_field_is_either_record_or_changeable():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(record.RECORD) | set(record.CHANGEABLE) == fields
    assert not set(record.RECORD) & set(record.CHANGEABLE)
    assert {"seed", "early_exit_keep", "early_exit_layers", "early_exit_warmup_steps"} <= set(record.RECORD)


def test_flags_left_out_take_the_recorded_values():
    cfg = record.resumed_config(_flags(resume=True, output="run", steps=12), _meta(), world=1)
    assert (cfg.seed, cfg.vocab_size, cfg.early_exit_threshold, cfg.steps) == (7, 4000, 0.9, 12)


@pytest.mark.parametrize("flag, value, shown", [
    ("seed", 3, "--seed 3 contradicts the checkpoint, whose run has 7"),
    ("preset", "small", "--preset 'small' contradicts the checkpoint, whose run has 'tiny'"),
    ("generator", "uniform", "--generator 'uniform' contradicts the checkpoint, whose run has 'network'"),
    ("batch_size", 2, "--batch-size 2 contradicts the checkpoint, whose run has 8"),
    ("early_exit_threshold", 0.8, "--early-exit-threshold 0.8 contradicts the checkpoint, whose run has 0.9"),
    ("vocab_size", 8192, "--vocab-size 8192 contradicts the checkpoint, whose run has 4000"),
    ("early_exit_keep", [0.5], "--early-exit-keep 0.5 contradicts the checkpoint, whose run has None"),
])
def test_a_contradicting_flag_names_itself_and_both_values(flag, value, shown):
    with pytest.raises(ValueError, match="contradicts") as e:
        record.resumed_config(_flags(resume=True, steps=12, **{flag: value}), _meta(), world=1)
    assert shown in str(e.value)


def test_a_flag_that_repeats_the_record_is_fine():
    """Also where the record left a field to the preset (None) and the flag gives the preset's value."""
    cfg = record.resumed_config(_flags(resume=True, steps=12, seed=7, batch_size=8, lr=1e-3, preset="tiny",
                                       early_exit_threshold=0.9), _meta(), world=1)
    assert cfg.batch_size is None and cfg.seed == 7


def test_changeable_flags_change():
    cfg = record.resumed_config(_flags(resume=True, steps=12, log_every=1, eval_every=3, save_every=2,
                                       progress=False, export_hf=False, device="cpu"), _meta(), world=1)
    assert (cfg.log_every, cfg.eval_every, cfg.save_every, cfg.progress, cfg.export_hf) == (1, 3, 2, False, False)


@pytest.mark.parametrize("given, message", [
    (dict(steps=3), "the checkpoint is at step 8 and --steps 3 is not past it"),
    (dict(steps=8), "the checkpoint is at step 8 and --steps 8 is not past it"),
    (dict(), "the checkpoint is at step 8 and its --steps 8 is not past it"),
])
def test_steps_must_go_past_the_checkpoint(given, message):
    with pytest.raises(ValueError, match="pass --steps above 8") as e:
        record.resumed_config(_flags(resume=True, **given), _meta(), world=1)
    assert message in str(e.value)


def test_an_interrupted_run_resumes_to_its_own_steps():
    assert record.resumed_config(_flags(resume=True), _meta(step=4), world=1).steps == 8


def test_the_global_batch_stays():
    two_acc = dataclasses.replace(RUN, accumulation=2)
    assert record.resumed_config(_flags(resume=True, accumulation=1), _meta(two_acc, step=4), world=2).accumulation == 1
    with pytest.raises(ValueError, match="the global batch would change"):
        record.resumed_config(_flags(resume=True), _meta(two_acc, step=4), world=2)
    with pytest.raises(ValueError, match="keep ranks x accumulation at 2"):
        record.resumed_config(_flags(resume=True, accumulation=4), _meta(two_acc, step=4), world=1)


def test_python_callers_set_what_differs_from_the_defaults():
    """Without `given` (a TrainConfig built in Python), the fields left at their defaults take the record."""
    cfg = record.resumed_config(TrainConfig(resume=True, output="run", steps=12), _meta(), world=1)
    assert (cfg.seed, cfg.vocab_size) == (7, 4000)
    with pytest.raises(ValueError, match="--seed 3 contradicts"):
        record.resumed_config(TrainConfig(resume=True, steps=12, seed=3), _meta(), world=1)


def test_the_identity_must_match():
    recorded = _meta().identity
    record.check_identity(recorded, dict(recorded), set())
    with pytest.raises(ValueError, match="the corpus files have changed since the checkpoint's run"):
        record.check_identity(recorded, dict(recorded, train_sha256="c" * 64), set())
    with pytest.raises(ValueError, match="--corpus gives other training data"):
        record.check_identity(recorded, dict(recorded, train_sha256="c" * 64), {"corpus"})
    with pytest.raises(ValueError, match="--tokenizer is not the tokenizer the checkpoint's run used"):
        record.check_identity(recorded, dict(recorded, tokenizer_sha256="d" * 64), {"tokenizer"})
