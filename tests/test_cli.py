"""The electra-fast command: subcommands, and pretrain's bad input (clear errors, nothing written lost)."""
import pytest

pytest.importorskip("datasets")
pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")

from electra_fast import cli, train  # noqa: E402

from .test_train import StandIn, fake_flops  # noqa: E402


@pytest.fixture
def stand_in(monkeypatch):
    """pretrain with the stand-in module of test_train (the CLI wiring is what is tested here)."""
    original = train.Trainer.__init__

    def init(self, cfg, *, model_factory=None, step_flops=None, log=print):
        original(self, cfg, model_factory=StandIn, step_flops=fake_flops, log=log)

    monkeypatch.setattr(train.Trainer, "__init__", init)


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("".join(f"document {i} says the river runs to the sea past the mill.\n" for i in range(60)))
    return path


def _pretrain(tmp_path, *extra):
    return cli.main(["pretrain", "--steps", "2", "--batch-size", "2", "--seq-len", "16", "--vocab-size", "120",
                     "--no-progress", "--no-export", "--cache-dir", str(tmp_path / "cache"),
                     "--heldout-fraction", "0.1", "--eval-sequences", "2", *extra])


def test_env_subcommand(capsys):
    assert cli.main(["env"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "backends available" in out


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "pretrain" in out and "env" in out and "bench" in out
    with pytest.raises(SystemExit) as e:
        cli.main([])
    assert e.value.code == 2


def test_pretrain_runs_and_prints_a_summary(tmp_path, text, stand_in, capsys):
    assert _pretrain(tmp_path, "--corpus", str(text), "--output", str(tmp_path / "out")) == 0
    out = capsys.readouterr().out
    for needle in ("steps                      2", "tokens/s", "FLOPs saved by early exit", "held-out RTD accuracy",
                   str(tmp_path / "out" / "checkpoint.safetensors")):
        assert needle in out
    assert _pretrain(tmp_path, "--corpus", str(text), "--output", str(tmp_path / "out"), "--resume",
                     "--steps", "3") == 0


@pytest.mark.parametrize("case", ["missing", "empty", "directory_without_text", "bad_suffix"])
def test_bad_corpus_is_a_clear_error(tmp_path, stand_in, capsys, case):
    if case == "missing":
        corpus, message = tmp_path / "nope.txt", "no such file or directory"
    elif case == "empty":
        corpus, message = tmp_path / "empty.txt", "corpus has no text"
        corpus.write_text("")
    elif case == "directory_without_text":
        corpus, message = tmp_path / "d", "holds no"
        corpus.mkdir()
    else:
        corpus, message = tmp_path / "data.csv", "is not one of"
        corpus.write_text("a,b\n")
    assert _pretrain(tmp_path, "--corpus", str(corpus), "--output", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "electra-fast pretrain: error:" in err and message in err and str(corpus.name) in err
    assert "Traceback" not in err


def test_non_utf8_lines_are_skipped_with_a_count(tmp_path, stand_in, capsys):
    corpus = tmp_path / "mixed.txt"
    good = "".join(f"line {i} about rivers and mills and the sea.\n" for i in range(60)).encode()
    corpus.write_bytes(good + b"\xff\xfe\xfa broken\n" + good + b"caf\xe9 latin-1\n")
    assert _pretrain(tmp_path, "--corpus", str(corpus), "--output", str(tmp_path / "out")) == 0
    assert "2 corpus lines were not UTF-8" in capsys.readouterr().out


def test_seq_len_beyond_the_position_table(tmp_path, text, stand_in, capsys):
    assert _pretrain(tmp_path, "--corpus", str(text), "--output", str(tmp_path / "out"), "--seq-len", "4096") == 2
    err = capsys.readouterr().err
    assert "seq_len 4096" in err and "max_position_embeddings=512" in err


def test_unwritable_output(tmp_path, text, stand_in, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    assert _pretrain(tmp_path, "--corpus", str(text), "--output", str(blocker / "sub")) == 2
    assert "is not writable" in capsys.readouterr().err
    assert blocker.read_text() == "keep me"


def test_existing_run_is_not_overwritten(tmp_path, text, stand_in, capsys):
    out = tmp_path / "out"
    assert _pretrain(tmp_path, "--corpus", str(text), "--output", str(out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert _pretrain(tmp_path, "--corpus", str(text), "--output", str(out)) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_bad_numbers_are_clear_errors(tmp_path, text, stand_in, capsys):
    assert _pretrain(tmp_path, "--corpus", str(text), "--output", str(tmp_path / "o"), "--steps", "0") == 2
    assert "steps must be a positive integer" in capsys.readouterr().err
    assert _pretrain(tmp_path, "--corpus", str(text), "--output", str(tmp_path / "o"),
                     "--early-exit-threshold", "0.3") == 2
    assert "threshold" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--preset", "huge"])


def test_early_exit_flags_reach_the_model_config(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(train, "pretrain", lambda cfg: seen.setdefault("cfg", cfg))
    assert cli.main(["pretrain", "--early-exit-keep", "0.5", "0.25", "--early-exit-layers", "1", "2",
                     "--early-exit-warmup-steps", "7"]) == 0
    cfg = seen["cfg"]
    assert (cfg.early_exit_keep, cfg.early_exit_layers, cfg.early_exit_warmup_steps) == ([0.5, 0.25], [1, 2], 7)
    from electra_fast.data import SpecialIds
    from electra_fast.training.setup import build_config

    ee = build_config(cfg, SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4), 120).early_exit
    assert (ee.policy, ee.keep, ee.exit_layers, ee.warmup_steps) == ("budget", [0.5, 0.25], [1, 2], 7)
    one = build_config(train.TrainConfig(early_exit_layers=[2]), SpecialIds(0, 1, 2, 3, 4), 120).early_exit
    assert (one.policy, one.keeps(4), one.layers(4)) == ("budget", [0.5], [2])


def test_bad_early_exit_flags_name_the_field(tmp_path, text, stand_in, capsys):
    common = ("--corpus", str(text), "--output", str(tmp_path / "o"))
    assert _pretrain(tmp_path, *common, "--early-exit-keep", "0.5", "0.4") == 2
    assert "early_exit.keep has 2 values but there are 1 exit layers" in capsys.readouterr().err
    assert _pretrain(tmp_path, *common, "--early-exit-layers", "9") == 2
    assert "early_exit.exit_layers must be integers in [1, 3]" in capsys.readouterr().err
    assert _pretrain(tmp_path, *common, "--early-exit-keep", "0.5", "--early-exit-threshold", "0.9") == 2
    assert "set one of them" in capsys.readouterr().err
