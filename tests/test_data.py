"""electra_fast.data: reading, tokenizer training/loading, the packing contract, the Arrow cache, order."""
import gzip
import json
import random
import socket

import pytest
import torch

pytest.importorskip("datasets")
pytest.importorskip("tokenizers")

from electra_fast import data  # noqa: E402

IDS = data.SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Anarchism is a political philosophy that advocates self-governed societies.",
    "Aristotle was a Greek philosopher and polymath during the Classical period.",
    "Alabama is a state in the southeastern region of the United States.",
    "An astronomer is a scientist in the field of astronomy who focuses on stars.",
    "Autism is a neurodevelopmental disorder characterized by impaired social interaction.",
]


def _docs(n, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 6))) for _ in range(n)]


def _write_lines(path, docs):
    path.write_text("".join(d + "\n" for d in docs), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return _write_lines(root / "docs.txt", _docs(60))


@pytest.fixture(scope="module")
def tokenizer(small_corpus):
    return data.train_tokenizer(data.read_documents([small_corpus]), vocab_size=300)


# ------------------------------------------------------------------------------------------- packing
def _check_packing(docs, seq_len):
    seqs = list(data.pack(docs, seq_len, IDS))
    assert all(len(s) == seq_len for s in seqs)
    assert all(s[0] == IDS.cls for s in seqs)
    for s in seqs[:-1]:
        assert s[-1] == IDS.sep and IDS.pad not in s, "padding only in the last sequence"
    last = seqs[-1] if seqs else []
    if last:
        n = len(last)
        while last[n - 1] == IDS.pad:
            n -= 1
        assert last[n - 1] == IDS.sep and IDS.pad not in last[:n]
    # Walk the corpus token stream against the sequences' bodies: every token once, in order, a [SEP]
    # exactly at each document boundary that does not coincide with a sequence end.
    bodies = []
    for s in seqs:
        n = len(s)
        while s[n - 1] == IDS.pad:
            n -= 1
        bodies.append(s[1:n - 1])
    stream = [t for d in docs for t in d]
    boundaries = set()
    acc = 0
    for d in docs:
        if d:
            acc += len(d)
            boundaries.add(acc)
    boundaries.discard(acc)  # the end of the corpus is no boundary
    pos = 0
    for body in bodies:
        for k, tok in enumerate(body):
            if tok == IDS.sep:
                assert pos in boundaries, f"[SEP] inside a document at corpus token {pos}"
                boundaries.discard(pos)
                assert k != 0, "a body never opens with a separator"
            else:
                assert tok == stream[pos], f"token {pos} lost, duplicated or reordered"
                pos += 1
        boundaries.discard(pos)  # a boundary at a sequence end is marked by the closing [SEP]
    assert pos == len(stream), "tokens lost at the end"
    assert not boundaries, f"unmarked document boundaries at {sorted(boundaries)}"
    return seqs


@pytest.mark.parametrize("seq_len", [3, 4, 8, 17])
def test_pack_contract_random_documents(seq_len):
    rng = random.Random(seq_len)
    for trial in range(40):
        docs = [[rng.randint(5, 99) for _ in range(rng.choice([0, 1, 2, seq_len - 3, seq_len - 2, seq_len - 1,
                                                               seq_len, 2 * seq_len, rng.randint(1, 40)]))]
                for _ in range(rng.randint(0, 12))]
        _check_packing(docs, seq_len)


def test_pack_boundary_cases():
    T = 6  # body of 4
    seqs = _check_packing([[10, 11, 12, 13], [20, 21]], T)
    assert seqs == [[2, 10, 11, 12, 13, 3], [2, 20, 21, 3, 0, 0]]  # boundary at a sequence end: no extra [SEP]
    seqs = _check_packing([[10, 11, 12], [20, 21]], T)
    assert seqs == [[2, 10, 11, 12, 3, 3], [2, 20, 21, 3, 0, 0]]  # separator in the last body slot stays
    seqs = _check_packing([[10], [20], [30]], T)
    assert seqs == [[2, 10, 3, 20, 3, 3], [2, 30, 3, 0, 0, 0]]
    assert list(data.pack([], T, IDS)) == [] and list(data.pack([[], []], T, IDS)) == []
    with pytest.raises(ValueError, match="seq_len"):
        data.Packer(2, IDS)


def test_pack_exact_fit_has_no_padding():
    seqs = _check_packing([[7] * 8], 6)
    assert seqs == [[2, 7, 7, 7, 7, 3]] * 2


def test_collate_masks_and_token_types():
    ids = torch.tensor([[2, 10, 3, 20, 21, 3], [2, 10, 11, 3, 0, 0]])
    out = data.collate(ids, IDS)
    assert out["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 1, 0, 0]]
    assert out["token_type_ids"].tolist() == [[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0]]
    assert out["input_ids"].dtype == torch.int64


def test_heldout_rule_is_even_and_exact():
    for f in (0.0, 0.01, 0.02, 0.1, 0.5):
        chosen = [i for i in range(1000) if data.is_heldout(i, f)]
        assert len(chosen) == int(1000 * f)
    assert [i for i in range(100) if data.is_heldout(i, 0.02)] == [49, 99]


# ------------------------------------------------------------------------------------------- reading
def test_read_formats(tmp_path):
    _write_lines(tmp_path / "a.txt", ["first doc", "second doc"])
    (tmp_path / "b.txt").write_text("para one\nstill one\n\n\npara two\n", encoding="utf-8")
    with gzip.open(tmp_path / "c.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": "json doc", "id": 1}) + "\n" + json.dumps({"other": 1}) + "\nnot json\n\n")
    with gzip.open(tmp_path / "d.txt.gz", "wt", encoding="utf-8") as f:
        f.write("gz doc\n")
    (tmp_path / "ignored.csv").write_text("x,y\n")
    stats = data.ReadStats()
    docs = list(data.read_documents([tmp_path], stats=stats))
    assert docs == ["first doc", "second doc", "para one still one", "para two", "json doc", "gz doc"]
    assert stats.files == 4 and stats.documents == 6 and stats.skipped_lines == 2


def test_read_skips_non_utf8_lines_with_a_count(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good line\n\xff\xfe broken \xc3\x28\ncaf\xc3\xa9 ok\n")
    stats = data.ReadStats()
    assert list(data.read_documents([path], stats=stats)) == ["good line", "café ok"]
    assert stats.skipped_lines == 1


def test_read_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        list(data.read_documents([tmp_path / "nope.txt"]))
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(ValueError, match="x.csv"):
        data.resolve_corpus([tmp_path / "x.csv"])
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(FileNotFoundError, match="empty_dir"):
        data.resolve_corpus([tmp_path / "empty_dir"])
    with pytest.raises(ValueError, match="no path"):
        data.resolve_corpus([])
    (tmp_path / "empty.txt").write_text("")
    stats = data.ReadStats()
    assert list(data.read_documents([tmp_path / "empty.txt"], stats=stats)) == []
    assert stats.empty_files == 1


def test_bundled_corpus_is_shipped_with_its_licence():
    path = data.bundled_corpus()
    assert path.is_file() and (path.parent / "SOURCE.md").is_file()
    assert "CC BY-SA" in (path.parent / "SOURCE.md").read_text()
    stats = data.ReadStats()
    docs = list(data.read_documents([path], stats=stats))
    assert len(docs) == 106 and stats.skipped_lines == 0
    assert docs[0].startswith("Anarchism is a political philosophy")
    assert 2.5e6 < sum(len(d) for d in docs) < 3e6
    assert not any(mark in d for d in docs for mark in ("{{", "}}", "[[", "]]", "<ref", "'''"))


# ----------------------------------------------------------------------------------------- tokenizer
def test_trained_tokenizer(tokenizer):
    assert data.SpecialIds.from_tokenizer(tokenizer) == IDS
    assert tokenizer.get_vocab_size() <= 300
    enc = tokenizer.encode("The Quick brown FOX", add_special_tokens=False)
    assert tokenizer.decode(enc.ids) == "the quick brown fox"
    assert IDS.unk not in enc.ids
    with pytest.raises(ValueError, match="vocab_size"):
        data.train_tokenizer(["a b"], vocab_size=3)


def test_tokenizer_cache_and_user_files(tmp_path, small_corpus, tokenizer, monkeypatch):
    first = data.tokenizer_for([small_corpus], vocab_size=300, cache_dir=tmp_path)
    assert data.SpecialIds.from_tokenizer(first) == IDS
    monkeypatch.setattr(data, "train_tokenizer", lambda *a, **k: pytest.fail("retrained despite the cache"))
    assert data.tokenizer_for([small_corpus], vocab_size=300, cache_dir=tmp_path).to_str() == first.to_str()
    # a user's tokenizer.json and vocab.txt are taken as they are
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    loaded = data.tokenizer_for([small_corpus], tmp_path / "tokenizer.json")
    text = SENTENCES[3]
    assert loaded.encode(text, add_special_tokens=False).ids == tokenizer.encode(text, add_special_tokens=False).ids
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    (tmp_path / "vocab.txt").write_text("".join(tok + "\n" for tok, _ in vocab), encoding="utf-8")
    from_vocab = data.load_tokenizer(tmp_path / "vocab.txt")
    assert data.SpecialIds.from_tokenizer(from_vocab) == IDS
    assert from_vocab.encode(text, add_special_tokens=False).ids == tokenizer.encode(text,
                                                                                    add_special_tokens=False).ids
    (tmp_path / "bad_vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    with pytest.raises(ValueError, match=r"\[CLS\]"):
        data.load_tokenizer(tmp_path / "bad_vocab.txt")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        data.load_tokenizer(tmp_path / "missing.json")


# ------------------------------------------------------------------------------------- cache, splits
def test_prepare_packs_both_splits_and_caches(tmp_path, small_corpus, tokenizer, monkeypatch):
    T = 16
    corpus = data.prepare([small_corpus], tokenizer, T, heldout_fraction=0.1, cache_dir=tmp_path)
    docs = list(data.read_documents([small_corpus]))
    enc = [tokenizer.encode(d, add_special_tokens=False).ids for d in docs]
    expect = {"train": list(data.pack([e for i, e in enumerate(enc) if not data.is_heldout(i, 0.1)], T, IDS)),
              "heldout": list(data.pack([e for i, e in enumerate(enc) if data.is_heldout(i, 0.1)], T, IDS))}
    for split in ("train", "heldout"):
        ds = getattr(corpus, split)
        assert ds["input_ids"] == expect[split]
        assert ds["length"] == [T - s.count(IDS.pad) for s in expect[split]]
    assert corpus.meta["sequences"] == {"train": len(expect["train"]), "heldout": len(expect["heldout"])}
    assert corpus.meta["stats"]["documents"] == 60

    monkeypatch.setattr(data, "split_sequences", lambda *a, **k: pytest.fail("re-packed despite the cache"))
    again = data.prepare([small_corpus], tokenizer, T, heldout_fraction=0.1, cache_dir=tmp_path)
    assert again.path == corpus.path and again.train["input_ids"] == expect["train"]
    monkeypatch.undo()
    other = data.prepare([small_corpus], tokenizer, T + 1, heldout_fraction=0.1, cache_dir=tmp_path)
    assert other.path != corpus.path, "the cache key includes the sequence length"
    assert not [p for p in (tmp_path / "packed").iterdir() if p.name.startswith(".")], "no temp dir left"


def test_token_counts_over_a_split(tmp_path, small_corpus, tokenizer):
    corpus = data.prepare([small_corpus], tokenizer, 16, heldout_fraction=0.1, cache_dir=tmp_path)
    vocab = tokenizer.get_vocab_size()
    counts = data.token_counts(corpus.train, vocab)
    expected = torch.bincount(torch.tensor(corpus.train["input_ids"]).flatten(), minlength=vocab).double()
    assert counts.dtype == torch.float64 and torch.equal(counts, expected)


def test_prepare_rejects_empty_corpus_and_leaves_no_cache(tmp_path, tokenizer):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="corpus has no text"):
        data.prepare([empty], tokenizer, 16, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "packed").iterdir())


def test_offline_end_to_end(tmp_path, small_corpus, monkeypatch):
    """Tokenizer training, packing and loading with HF_DATASETS_OFFLINE=1 and every socket refused."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    tok = data.tokenizer_for([small_corpus], vocab_size=200, cache_dir=tmp_path)
    corpus = data.prepare([small_corpus], tok, 32, cache_dir=tmp_path)
    batch = data.PackedBatches(corpus, data.Layout(batch=4)).step(0)[0]
    assert batch["input_ids"].shape == (4, 32)


# ---------------------------------------------------------------------------------------------- order
def test_shards_tile_the_global_batch(tmp_path, small_corpus, tokenizer):
    corpus = data.prepare([small_corpus], tokenizer, 16, cache_dir=tmp_path)
    n = len(corpus.train)
    single = data.PackedBatches(corpus, data.Layout(batch=2, world=1, accum=4), seed=3)
    ranks = [data.PackedBatches(corpus, data.Layout(batch=2, world=2, accum=2), rank=r, seed=3) for r in (0, 1)]
    for s in range(3):
        whole = torch.cat([b["input_ids"] for b in single.step(s)])
        split = torch.cat([b["input_ids"] for r in ranks for b in r.step(s)])
        assert torch.equal(whole, split)
    # each epoch visits every row once
    order = data.ShuffledOrder(n, seed=3)
    assert sorted(order(range(n))) == list(range(n)) and sorted(order(range(n, 2 * n))) == list(range(n))
    assert order(range(n)) != order(range(n, 2 * n))
    resumed = data.PackedBatches(corpus, data.Layout(batch=2, world=1, accum=4), seed=3, start=single.position(2))
    assert torch.equal(resumed.step(0)[1]["input_ids"], single.step(2)[1]["input_ids"])


def test_streaming_matches_the_packed_order(tmp_path, small_corpus, tokenizer):
    T = 16
    corpus = data.prepare([small_corpus], tokenizer, T, heldout_fraction=0.1, cache_dir=tmp_path)
    train = torch.tensor(corpus.train["input_ids"])
    n = len(train)
    layout = data.Layout(batch=3, world=2, accum=1)
    streams = [data.StreamingCorpus([small_corpus], tokenizer, T, layout, rank=r, heldout_fraction=0.1)
               for r in (0, 1)]
    steps = n // layout.global_batch + 2  # runs past the end of the corpus: it starts over
    for s in range(steps):
        for r, stream in enumerate(streams):
            got = stream.step(s)[0]["input_ids"]
            first = s * layout.global_batch + r * layout.batch
            assert torch.equal(got, train[[(first + j) % n for j in range(layout.batch)]])
    resumed = data.StreamingCorpus([small_corpus], tokenizer, T, layout, rank=1, heldout_fraction=0.1,
                                   start=streams[1].position(2))
    assert torch.equal(resumed.step(0)[0]["input_ids"], train[[(2 * 6 + 3 + j) % n for j in range(3)]])
    with pytest.raises(ValueError, match="forward only"):
        resumed.step(0)


def test_heldout_batches_are_fixed(tmp_path, small_corpus, tokenizer):
    corpus = data.prepare([small_corpus], tokenizer, 16, heldout_fraction=0.2, cache_dir=tmp_path)
    batches = data.heldout_batches(corpus, batch=4, max_sequences=10)
    assert [b["input_ids"].shape[0] for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b["input_ids"] for b in batches]), torch.tensor(corpus.heldout["input_ids"][:10]))
