"""`electra-fast pretrain` under bad input and faults: every case is exit status 2 and one line on stderr that names
the problem (the file, the flag and both values), never a traceback; and --resume keeps the run's record."""
import pathlib
import types

import pytest
import torch

pytest.importorskip("datasets")
pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")

from electra_fast import cli, train  # noqa: E402
from electra_fast.training.checkpoint import CHECKPOINT, load_checkpoint  # noqa: E402
from tests.test_cli import _pretrain, stand_in, text  # noqa: E402,F401 (fixtures)
from tests.test_train import Interrupting, StandIn, fake_flops  # noqa: E402


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("electra-fast pretrain: error: "), err
    return err


def _run(tmp_path, text, name, *extra):
    return _pretrain(tmp_path, "--corpus", str(text), "--output", str(tmp_path / name), *extra)


def _weights(tmp_path, name):
    return load_checkpoint(tmp_path / name / CHECKPOINT)[0]


# ------------------------------------------------------------------------------------------ resume
@pytest.fixture
def model(monkeypatch):
    """pretrain with a stand-in model of test_train; set `.cls` to swap it (Interrupting: a Ctrl-C at step 4)."""
    chosen = types.SimpleNamespace(cls=StandIn)
    original = train.Trainer.__init__

    def init(self, setup, *, model_factory=None, step_flops=None, log=print):
        original(self, setup, model_factory=lambda *a: chosen.cls(*a), step_flops=fake_flops, log=log)

    monkeypatch.setattr(train.Trainer, "__init__", init)
    return chosen


def test_resume_without_the_flags_continues_the_same_run(tmp_path, text, model):
    """Started with --seed 7 and killed, resumed with --resume alone: the weights of the uninterrupted run."""
    flags = ("--corpus", str(text), "--batch-size", "2", "--seq-len", "16", "--vocab-size", "120", "--steps", "6",
             "--seed", "7", "--heldout-fraction", "0.1", "--eval-sequences", "2")
    watch = ("--no-progress", "--no-export", "--cache-dir", str(tmp_path / "cache"))
    assert cli.main(["pretrain", *flags, *watch, "--output", str(tmp_path / "straight")]) == 0
    model.cls = Interrupting
    assert cli.main(["pretrain", *flags, *watch, "--output", str(tmp_path / "split")]) == 130
    model.cls = StandIn
    assert cli.main(["pretrain", "--resume", *watch, "--output", str(tmp_path / "split")]) == 0
    a, b = _weights(tmp_path, "straight"), _weights(tmp_path, "split")
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("flag, value, recorded", [
    ("--seed", "3", "7"), ("--preset", "small", "'tiny'"), ("--generator", "uniform", "'network'"),
    ("--batch-size", "1", "2"), ("--early-exit-threshold", "0.9", "None"), ("--vocab-size", "4000", "120"),
    ("--early-exit-keep", "0.5", "None"), ("--seq-len", "32", "16"), ("--lr", "0.5", "0.001"),
])
def test_a_contradicting_flag_on_resume_is_an_error_naming_both_values(tmp_path, text, stand_in, capsys, flag,
                                                                      value, recorded):
    assert _run(tmp_path, text, "run", "--seed", "7") == 0
    before = (tmp_path / "run" / CHECKPOINT).read_bytes()
    capsys.readouterr()
    assert _run(tmp_path, text, "run", "--resume", "--steps", "4", flag, value) == 2
    err = _error(capsys)
    shown = f"'{value}'" if flag in ("--preset", "--generator") else value
    assert f"{flag} {shown} contradicts the checkpoint, whose run has {recorded}" in err
    assert (tmp_path / "run" / CHECKPOINT).read_bytes() == before


@pytest.mark.parametrize("steps", ["1", "2"])
def test_resume_with_steps_not_past_the_checkpoint_is_an_error(tmp_path, text, stand_in, capsys, steps):
    assert _run(tmp_path, text, "run") == 0
    capsys.readouterr()
    assert _run(tmp_path, text, "run", "--resume", "--steps", steps) == 2
    assert f"the checkpoint is at step 2 and --steps {steps} is not past it" in _error(capsys)


def test_help_lists_what_may_change_on_resume(capsys):
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "flags left out take the recorded values" in out
    for flag in ("--steps", "--eval-every", "--save-every", "--log-every", "--no-progress", "--no-export", "--device"):
        assert flag in out.split("These may change on resume:")[1]


# ------------------------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("damage", ["garbage_bytes", "truncated", "empty"])
def test_a_damaged_checkpoint_is_one_line_naming_the_file(tmp_path, text, stand_in, capsys, damage):
    assert _run(tmp_path, text, "run") == 0
    path = tmp_path / "run" / CHECKPOINT
    raw = bytearray(path.read_bytes())
    if damage == "garbage_bytes":
        raw[len(raw) // 2: len(raw) // 2 + 16] = b"\x13" * 16
    elif damage == "truncated":
        raw = raw[: len(raw) // 3]
    else:
        raw = b""
    path.write_bytes(bytes(raw))
    capsys.readouterr()
    assert _run(tmp_path, text, "run", "--resume", "--steps", "4") == 2
    assert str(path) in _error(capsys)


def test_a_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, text, stand_in, capsys):
    assert _run(tmp_path, text, "run", "--save-every", "1") == 0
    path = tmp_path / "run" / CHECKPOINT
    path.write_bytes(path.read_bytes()[:100])
    capsys.readouterr()
    assert _run(tmp_path, text, "run", "--resume", "--steps", "3") == 0
    out = capsys.readouterr().out
    assert "resuming from the previous checkpoint" in out and "(step 2)" in out
    assert load_checkpoint(path)[2]["step"] == 3


def test_orphan_temp_files_are_removed_at_the_next_start(tmp_path, text, stand_in, capsys):
    assert _run(tmp_path, text, "run") == 0
    orphan = tmp_path / "run" / f".{CHECKPOINT}.999999999.tmp"
    orphan.write_bytes(b"half a checkpoint")
    assert _run(tmp_path, text, "run", "--resume", "--steps", "3") == 0
    assert not orphan.exists() and f"removed {orphan.name}" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ input
def test_a_corrupt_gz_corpus_is_one_line(tmp_path, stand_in, capsys):
    corpus = tmp_path / "docs.txt.gz"
    corpus.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 40)
    assert _pretrain(tmp_path, "--corpus", str(corpus), "--output", str(tmp_path / "o")) == 2
    assert str(corpus) in _error(capsys)


def test_a_garbage_tokenizer_is_one_line(tmp_path, text, stand_in, capsys):
    tok = tmp_path / "tokenizer.json"
    tok.write_bytes(b"\x00\x01garbage")
    assert _run(tmp_path, text, "o", "--tokenizer", str(tok)) == 2
    assert str(tok) in _error(capsys)


@pytest.mark.parametrize("device", ["tpu7", "cuda"])
def test_an_unusable_device_is_one_line(tmp_path, text, stand_in, capsys, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is usable here")
    assert _run(tmp_path, text, "o", "--device", device) == 2
    err = _error(capsys)
    assert "--device" in err and device in err


def test_a_one_document_corpus_says_what_would_work(tmp_path, stand_in, capsys):
    one = tmp_path / "one.txt"
    one.write_text("a single line of text that is the only document. " * 20 + "\n")
    assert _pretrain(tmp_path, "--corpus", str(one), "--output", str(tmp_path / "o"), "--heldout-fraction",
                     "0.5") == 2
    err = _error(capsys)
    assert "give a corpus of at least 2 documents" in err and "raise --heldout-fraction" not in err


def test_too_small_a_heldout_fraction_names_one_that_works(tmp_path, stand_in, capsys):
    docs = tmp_path / "docs.txt"
    docs.write_text("".join(f"document {i} about a river and a mill.\n" for i in range(30)))
    common = ("--corpus", str(docs), "--output", str(tmp_path / "o"))
    assert _pretrain(tmp_path, *common, "--heldout-fraction", "0.01") == 2
    err = _error(capsys)
    assert "pass --heldout-fraction 0.0334 or more (at least 1/30)" in err
    assert _pretrain(tmp_path, *common, "--heldout-fraction", "0.0334") == 0


def test_no_export_says_so(tmp_path, text, stand_in, capsys):
    pytest.importorskip("transformers")
    assert _run(tmp_path, text, "o") == 0
    out = capsys.readouterr().out
    assert "Hugging Face export        skipped (--no-export)" in out and "pip install" not in out
    assert pathlib.Path(tmp_path / "o").is_dir()


def test_an_output_that_is_a_file_is_one_line(tmp_path, text, stand_in, capsys):
    (tmp_path / "taken").write_text("not a directory")
    assert _run(tmp_path, text, "taken") == 2
    err = _error(capsys)
    assert "is a file; choose a directory for --output" in err and str(tmp_path / "taken") in err
