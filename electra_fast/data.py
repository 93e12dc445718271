"""Local text -> WordPiece tokens -> fixed-length ELECTRA sequences, cached as Arrow, in global order.

Reading. A corpus is files or directories (searched recursively) of `.txt` / `.jsonl` (a `text` field per
line), either possibly gzipped (`.gz`). In a text file, documents are blank-line separated when a blank line
occurs among its first 10,000 lines, else one document per line. A line that is not UTF-8 (or not JSON in a
`.jsonl`) is skipped and counted in `ReadStats.skipped_lines`, never fatal.

Packing (the contract tests/test_data.py checks). Documents are tokenized without special tokens and
concatenated into one stream with a [SEP] between consecutive documents; the stream is cut into bodies of
T - 2 tokens and each sequence is `[CLS] body [SEP]`, so sequences have exactly T ids. A separator that would
open a body is dropped (the previous sequence's closing [SEP] already marks the boundary); one that
falls in a body's last slot stays, giving `... [SEP] [SEP]` (an empty second segment). Only the last
sequence of a split is short; it is padded with [PAD] to T. Every corpus token appears in exactly one
sequence, in corpus order. token_type_ids are 0 up to and including the first [SEP], 1 after it.

Held-out split. Document i (counting every document of the corpus in order) is held out iff
floor((i + 1) f) > floor(i f), f = `heldout_fraction`: evenly spread, deterministic, and decidable while
streaming. Train and held-out documents are packed separately.

Cache. Packed splits are Arrow files (memory-mapped through `datasets.Dataset.from_file`) under
`<cache>/packed/<key>/`, key = sha256 of (corpus fingerprint, tokenizer JSON, T, f, text field). A corpus
fingerprint is (resolved path, size, mtime) of each file. Written to a temporary directory and renamed, so
a crash never leaves a half cache; the second run opens it at once. Nothing here touches the network
(works with HF_DATASETS_OFFLINE=1).

Order. Global position p (the p-th sequence drawn in training) reads sequence perm_e[p mod N] of the train
split, e = p // N, perm_e a torch.randperm seeded with (seed, e). A step with G = world * accum * B
sequences takes positions [p0 + s G, p0 + (s+1) G); shard m (= rank * accum + micro-step) takes the B
positions starting at p0 + s G + m B. One process with accum = k reads exactly what k ranks read.
`StreamingCorpus` gives the same shard arithmetic without a cache or a shuffle, for corpora too large
to pack ahead.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import math
import os
import pathlib
import shutil
import tempfile
import zlib
from typing import Iterable, Iterator, Optional, Sequence

import torch

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TEXT_SUFFIXES = (".txt", ".jsonl", ".txt.gz", ".jsonl.gz")
CACHE_FORMAT = 1
_BLANK_LINE_PROBE = 10_000
_ENCODE_BATCH = 256


def bundled_corpus() -> pathlib.Path:
    """The corpus shipped in the package: 106 Wikipedia articles, CC BY-SA 3.0 (see corpus/SOURCE.md)."""
    return pathlib.Path(__file__).resolve().parent / "corpus" / "enwiki_sample.txt.gz"


def default_cache_dir() -> pathlib.Path:
    """$ELECTRA_FAST_CACHE, else $XDG_CACHE_HOME/electra_fast, else ~/.cache/electra_fast."""
    if os.environ.get("ELECTRA_FAST_CACHE"):
        return pathlib.Path(os.environ["ELECTRA_FAST_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "electra_fast"


# ----------------------------------------------------------------------------------------------- reading
@dataclasses.dataclass
class ReadStats:
    """What reading a corpus saw. `skipped_lines`: lines dropped as not UTF-8 or not JSON."""
    files: int = 0
    empty_files: int = 0
    documents: int = 0
    skipped_lines: int = 0


def resolve_corpus(paths: Sequence[str | os.PathLike]) -> list[pathlib.Path]:
    """The corpus files named by `paths` (directories searched recursively), in a stable order."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ValueError("corpus: no path given")
    files = []
    for raw in paths:
        path = pathlib.Path(raw).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(TEXT_SUFFIXES))
            if not found:
                raise FileNotFoundError(f"corpus: directory {str(path)!r} holds no {'/'.join(TEXT_SUFFIXES)} file")
            files.extend(found)
        elif path.is_file():
            if not path.name.endswith(TEXT_SUFFIXES + (".gz",)):
                raise ValueError(f"corpus: {str(path)!r} is not one of {', '.join(TEXT_SUFFIXES)}")
            files.append(path)
        else:
            raise FileNotFoundError(f"corpus: no such file or directory: {str(path)!r}")
    return [f.resolve() for f in files]


def _open_binary(path: pathlib.Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _decoded_lines(path: pathlib.Path, stats: ReadStats) -> Iterator[str]:
    with _open_binary(path) as f:
        for raw in f:
            try:
                yield raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                stats.skipped_lines += 1


def _blank_line_separated(path: pathlib.Path) -> bool:
    seen_text = False
    with _open_binary(path) as f:
        for n, raw in enumerate(f):
            if n >= _BLANK_LINE_PROBE:
                break
            if raw.strip():
                seen_text = True
            elif seen_text:
                return True
    return False


def _file_documents(path: pathlib.Path, text_field: str, stats: ReadStats) -> Iterator[str]:
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    if stem.endswith(".jsonl"):
        for line in _decoded_lines(path, stats):
            if not line.strip():
                continue
            try:
                text = json.loads(line)[text_field]
            except (ValueError, KeyError, TypeError):
                stats.skipped_lines += 1
                continue
            if isinstance(text, str) and text.strip():
                yield text.strip()
    elif _blank_line_separated(path):
        block: list[str] = []
        for line in _decoded_lines(path, stats):
            if line.strip():
                block.append(line.strip())
            elif block:
                yield " ".join(block)
                block = []
        if block:
            yield " ".join(block)
    else:
        for line in _decoded_lines(path, stats):
            if line.strip():
                yield line.strip()


def read_documents(paths: Sequence[str | os.PathLike], *, text_field: str = "text",
                   stats: Optional[ReadStats] = None) -> Iterator[str]:
    """Every document of the corpus, in file order then line order (see the module docstring)."""
    stats = stats if stats is not None else ReadStats()
    for path in resolve_corpus(paths):
        stats.files += 1
        before = stats.documents
        try:
            for doc in _file_documents(path, text_field, stats):
                stats.documents += 1
                yield doc
        except (OSError, EOFError, zlib.error) as e:  # a truncated or corrupt .gz, or a failing disk
            raise ValueError(f"corpus: cannot read {str(path)!r}: {e or type(e).__name__}") from None
        if stats.documents == before:
            stats.empty_files += 1


def corpus_fingerprint(paths: Sequence[str | os.PathLike]) -> str:
    """sha256 over (path, size, mtime) of every corpus file: changes when any file is edited or replaced."""
    h = hashlib.sha256()
    for path in resolve_corpus(paths):
        st = path.stat()
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# -------------------------------------------------------------------------------------------- tokenizer
@dataclasses.dataclass(frozen=True)
class SpecialIds:
    pad: int
    unk: int
    cls: int
    sep: int
    mask: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "SpecialIds":
        ids = {}
        for field, token in zip(("pad", "unk", "cls", "sep", "mask"), SPECIAL_TOKENS):
            ids[field] = tokenizer.token_to_id(token)
            if ids[field] is None:
                raise ValueError(f"tokenizer: vocabulary has no {token} token")
        return cls(**ids)


def _bert_pipeline(tokenizer, lowercase: bool):
    from tokenizers import decoders, normalizers, pre_tokenizers

    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                      strip_accents=None, lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def train_tokenizer(documents: Iterable[str], vocab_size: int = 8192, *, min_frequency: int = 2):
    """A lower-cased BERT-style WordPiece tokenizer trained on `documents`; ids 0..4 are SPECIAL_TOKENS."""
    from tokenizers import Tokenizer, models, trainers

    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size must be > {len(SPECIAL_TOKENS)}, got {vocab_size}")
    tokenizer = _bert_pipeline(Tokenizer(models.WordPiece(unk_token="[UNK]")), lowercase=True)
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS), limit_alphabet=1000,
                                        show_progress=False)
    tokenizer.train_from_iterator(documents, trainer=trainer)
    return tokenizer


def load_tokenizer(path: str | os.PathLike):
    """A `tokenizer.json` as saved by `tokenizers`, or a BERT `vocab.txt` (lower-cased when the vocabulary
    has no upper-case letters outside its special tokens, as uncased BERT vocabularies are)."""
    from tokenizers import Tokenizer, models

    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer: no such file: {str(path)!r}")
    try:
        if path.suffix == ".json":
            tokenizer = Tokenizer.from_file(str(path))
        else:
            with open(path, encoding="utf-8") as f:
                vocab = [line.rstrip("\n") for line in f]
            lowercase = not any(t != t.lower() for t in vocab if not (t.startswith("[") and t.endswith("]")))
            tokenizer = _bert_pipeline(Tokenizer(models.WordPiece.from_file(str(path), unk_token="[UNK]")),
                                       lowercase)
        SpecialIds.from_tokenizer(tokenizer)
    except Exception as e:  # tokenizers raises plain Exceptions for files it cannot parse
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"tokenizer: {str(path)!r} is not a usable tokenizer.json or BERT vocab.txt ({reason})"
                         ) from None
    return tokenizer


def tokenizer_for(paths: Sequence[str | os.PathLike], tokenizer: Optional[str | os.PathLike] = None, *,
                  vocab_size: int = 8192, text_field: str = "text",
                  cache_dir: Optional[str | os.PathLike] = None):
    """The tokenizer at `tokenizer` if given, else one trained on the corpus, cached by
    (corpus fingerprint, vocab_size) under `<cache>/tokenizers/` so it is trained once."""
    if tokenizer is not None:
        return load_tokenizer(tokenizer)
    from tokenizers import Tokenizer

    key = _digest({"corpus": corpus_fingerprint(paths), "vocab_size": vocab_size, "text_field": text_field,
                   "format": CACHE_FORMAT})
    target = pathlib.Path(cache_dir or default_cache_dir()) / "tokenizers" / key / "tokenizer.json"
    if target.is_file():
        return Tokenizer.from_file(str(target))
    trained = train_tokenizer(read_documents(paths, text_field=text_field), vocab_size)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tokenizer.{os.getpid()}.tmp")
    trained.save(str(tmp))
    os.replace(tmp, target)
    return trained


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:24]


# -------------------------------------------------------------------------------------------- packing
def is_heldout(doc_index: int, fraction: float) -> bool:
    """Whether document `doc_index` belongs to the held-out split (evenly spread, see the module doc)."""
    return math.floor((doc_index + 1) * fraction) > math.floor(doc_index * fraction)


class Packer:
    """Streams documents' token ids into `[CLS] body [SEP]` sequences of exactly `seq_len` ids."""

    def __init__(self, seq_len: int, ids: SpecialIds):
        if seq_len < 3:
            raise ValueError(f"seq_len must be >= 3 ([CLS] token [SEP]), got {seq_len}")
        self.body = seq_len - 2
        self.ids = ids
        self._buffer: list[int] = []

    def add(self, tokens: Sequence[int]) -> Iterator[list[int]]:
        """Append one document; yield the sequences it completes."""
        if not tokens:
            return
        if self._buffer:  # an empty buffer means the previous sequence's closing [SEP] marks the boundary
            self._buffer.append(self.ids.sep)
        self._buffer.extend(tokens)
        while len(self._buffer) >= self.body:
            body, self._buffer = self._buffer[: self.body], self._buffer[self.body:]
            if self._buffer[:1] == [self.ids.sep]:
                self._buffer = self._buffer[1:]
            yield [self.ids.cls, *body, self.ids.sep]

    def finish(self) -> Iterator[list[int]]:
        """The last, padded sequence, if any tokens are left."""
        if self._buffer:
            seq = [self.ids.cls, *self._buffer, self.ids.sep]
            self._buffer = []
            yield seq + [self.ids.pad] * (self.body + 2 - len(seq))


def pack(token_docs: Iterable[Sequence[int]], seq_len: int, ids: SpecialIds) -> Iterator[list[int]]:
    """Pack tokenized documents into sequences of `seq_len` ids (the contract in the module docstring)."""
    packer = Packer(seq_len, ids)
    for tokens in token_docs:
        yield from packer.add(tokens)
    yield from packer.finish()


def _encoded(tokenizer, docs: Iterable[str]) -> Iterator[list[int]]:
    batch: list[str] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == _ENCODE_BATCH:
            yield from (e.ids for e in tokenizer.encode_batch(batch, add_special_tokens=False))
            batch = []
    if batch:
        yield from (e.ids for e in tokenizer.encode_batch(batch, add_special_tokens=False))


def split_sequences(paths, tokenizer, seq_len: int, heldout_fraction: float, *, text_field: str = "text",
                    stats: Optional[ReadStats] = None) -> Iterator[tuple[str, list[int]]]:
    """("train" | "heldout", sequence) pairs in corpus order, each split packed on its own."""
    ids = SpecialIds.from_tokenizer(tokenizer)
    packers = {"train": Packer(seq_len, ids), "heldout": Packer(seq_len, ids)}
    docs = read_documents(paths, text_field=text_field, stats=stats)
    for index, tokens in enumerate(_encoded(tokenizer, docs)):
        split = "heldout" if is_heldout(index, heldout_fraction) else "train"
        for seq in packers[split].add(tokens):
            yield split, seq
    for split, packer in packers.items():
        for seq in packer.finish():
            yield split, seq


# ------------------------------------------------------------------------------------------ the cache
@dataclasses.dataclass
class PackedCorpus:
    """Both splits of a packed corpus. `train`/`heldout` are `datasets.Dataset`s with columns
    input_ids (list of seq_len int32) and length (ids before padding)."""
    train: "object"
    heldout: "object"
    ids: SpecialIds
    seq_len: int
    meta: dict
    path: pathlib.Path


def _unpadded_length(seq: list[int], pad: int) -> int:
    n = len(seq)
    while n and seq[n - 1] == pad:
        n -= 1
    return n


def _write_arrow(directory: pathlib.Path, sequences: Iterator[tuple[str, list[int]]], pad: int) -> dict:
    import pyarrow as pa

    schema = pa.schema([("input_ids", pa.list_(pa.int32())), ("length", pa.int32())])
    counts = {"train": 0, "heldout": 0}
    pending: dict[str, list[list[int]]] = {"train": [], "heldout": []}
    sinks = {s: pa.OSFile(str(directory / f"{s}.arrow"), "wb") for s in counts}
    writers = {s: pa.ipc.new_stream(sinks[s], schema) for s in counts}

    def flush(split):
        rows = pending[split]
        if rows:
            lengths = [_unpadded_length(r, pad) for r in rows]
            writers[split].write_batch(pa.record_batch([pa.array(rows, pa.list_(pa.int32())),
                                                        pa.array(lengths, pa.int32())], schema=schema))
            pending[split] = []

    try:
        for split, seq in sequences:
            pending[split].append(seq)
            counts[split] += 1
            if len(pending[split]) == 4096:
                flush(split)
        for split in counts:
            flush(split)
    finally:
        for split in counts:
            writers[split].close()
            sinks[split].close()
    return counts


def prepare(paths: Sequence[str | os.PathLike], tokenizer, seq_len: int, *, heldout_fraction: float = 0.02,
            text_field: str = "text", cache_dir: Optional[str | os.PathLike] = None) -> PackedCorpus:
    """Pack the corpus once into the Arrow cache (or open the cached copy) and return both splits."""
    import datasets

    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    ids = SpecialIds.from_tokenizer(tokenizer)
    key = _digest({"corpus": corpus_fingerprint(paths), "tokenizer": hashlib.sha256(tokenizer.to_str().encode())
                   .hexdigest(), "seq_len": seq_len, "heldout": heldout_fraction, "text_field": text_field,
                   "format": CACHE_FORMAT})
    root = pathlib.Path(cache_dir or default_cache_dir()) / "packed"
    final = root / key
    if not (final / "meta.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
        try:
            stats = ReadStats()
            counts = _write_arrow(tmp, split_sequences(paths, tokenizer, seq_len, heldout_fraction,
                                                       text_field=text_field, stats=stats), ids.pad)
            if counts["train"] == 0:
                raise ValueError(f"corpus has no text: {', '.join(map(str, resolve_corpus(paths)))} "
                                 f"({stats.files} files, {stats.skipped_lines} undecodable lines skipped)")
            meta = {"seq_len": seq_len, "heldout_fraction": heldout_fraction, "sequences": counts,
                    "stats": dataclasses.asdict(stats), "ids": dataclasses.asdict(ids),
                    "corpus": [str(p) for p in resolve_corpus(paths)]}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            try:
                os.rename(tmp, final)
            except OSError:  # another process finished the same cache first: theirs is identical
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    meta = json.loads((final / "meta.json").read_text())
    splits = {s: datasets.Dataset.from_file(str(final / f"{s}.arrow")) for s in ("train", "heldout")}
    return PackedCorpus(splits["train"], splits["heldout"], ids, seq_len, meta, final)


# ------------------------------------------------------------------------------------- batches, order
def collate(input_ids: torch.Tensor, ids: SpecialIds) -> dict[str, torch.Tensor]:
    """[B, T] int64 ids -> the model's inputs: input_ids, attention_mask (int64 0/1, 0 on [PAD]),
    token_type_ids (0 through the first [SEP], 1 after; 0 on padding)."""
    attention_mask = (input_ids != ids.pad).long()
    is_sep = (input_ids == ids.sep).long()
    after_first_sep = (is_sep.cumsum(1) - is_sep) > 0
    token_type_ids = (after_first_sep.long() * attention_mask)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one optimiser step's global batch is split: `world` ranks x `accum` micro-steps x `batch` rows."""
    batch: int
    world: int = 1
    accum: int = 1

    @property
    def global_batch(self) -> int:
        return self.batch * self.world * self.accum

    def shards(self, rank: int) -> list[int]:
        """The shard numbers (rank * accum + micro-step) this rank computes, in micro-step order."""
        return [rank * self.accum + k for k in range(self.accum)]


def rows(dataset, indices: Sequence[int]) -> torch.Tensor:
    """[len(indices), T] int64 ids of those rows of a packed split (one Arrow take, no Python loop)."""
    table = dataset.with_format("arrow")[list(indices)]
    flat = table.column("input_ids").combine_chunks().flatten().to_numpy()
    return torch.from_numpy(flat.astype("int64")).view(len(indices), -1)


class ShuffledOrder:
    """Global position -> row of a split, one seeded permutation per epoch (see the module docstring)."""

    def __init__(self, size: int, seed: int):
        if size <= 0:
            raise ValueError("the train split is empty")
        self.size, self.seed = size, seed
        self._epoch, self._perm = -1, None

    def __call__(self, positions: range) -> list[int]:
        out = []
        for p in positions:
            epoch = p // self.size
            if epoch != self._epoch:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._epoch, self._perm = epoch, torch.randperm(self.size, generator=g).tolist()
            out.append(self._perm[p % self.size])
        return out


class PackedBatches:
    """Batches of a cached split: `step(s)` -> this rank's micro-batches of step s after position `start`."""

    def __init__(self, corpus: PackedCorpus, layout: Layout, rank: int = 0, *, seed: int = 0, start: int = 0):
        self.corpus, self.layout, self.rank, self.start = corpus, layout, rank, start
        self.order = ShuffledOrder(len(corpus.train), seed)

    def step(self, s: int) -> list[dict[str, torch.Tensor]]:
        base = self.start + s * self.layout.global_batch
        out = []
        for shard in self.layout.shards(self.rank):
            first = base + shard * self.layout.batch
            out.append(collate(rows(self.corpus.train, self.order(range(first, first + self.layout.batch))),
                               self.corpus.ids))
        return out

    def position(self, steps_done: int) -> int:
        """Global sequences consumed after `steps_done` steps: the data position a checkpoint stores."""
        return self.start + steps_done * self.layout.global_batch


class StreamingCorpus:
    """Packs the corpus on the fly, no cache and no shuffle, for corpora too large to pack ahead.

    Every rank reads and tokenizes the whole stream but keeps only its shards' rows (the same positions
    `PackedBatches` would give without the shuffle); at the end of the corpus it starts over. Resuming at
    position p re-reads and skips p sequences. Held-out documents (same rule) are left out of the stream."""

    def __init__(self, paths, tokenizer, seq_len: int, layout: Layout, rank: int = 0, *,
                 heldout_fraction: float = 0.02, text_field: str = "text", start: int = 0):
        self.paths, self.tokenizer, self.seq_len = resolve_corpus(paths), tokenizer, seq_len
        self.layout, self.rank, self.start = layout, rank, start
        self.heldout_fraction, self.text_field = heldout_fraction, text_field
        self.ids = SpecialIds.from_tokenizer(tokenizer)
        self._stream = self._train_sequences()
        self._position = 0
        self._next_step = 0

    def _train_sequences(self) -> Iterator[list[int]]:
        while True:
            produced = 0
            for split, seq in split_sequences(self.paths, self.tokenizer, self.seq_len, self.heldout_fraction,
                                              text_field=self.text_field):
                if split == "train":
                    produced += 1
                    yield seq
            if produced == 0:
                raise ValueError(f"corpus has no text: {', '.join(map(str, self.paths))}")

    def _take(self, first: int, count: int) -> list[list[int]]:
        while self._position < first:
            next(self._stream)
            self._position += 1
        self._position += count
        return [next(self._stream) for _ in range(count)]

    def step(self, s: int) -> list[dict[str, torch.Tensor]]:
        """This rank's micro-batches of step s; steps must be asked for in increasing order."""
        if s < self._next_step:
            raise ValueError(f"StreamingCorpus reads forward only: step {s} after step {self._next_step - 1}")
        self._next_step = s + 1
        base = self.start + s * self.layout.global_batch
        return [collate(torch.tensor(self._take(base + m * self.layout.batch, self.layout.batch)), self.ids)
                for m in self.layout.shards(self.rank)]

    def position(self, steps_done: int) -> int:
        return self.start + steps_done * self.layout.global_batch


def split_digest(split) -> str:
    """sha256 of a packed split's ids, row by row in order: the same data, the same digest, wherever the corpus
    files lie."""
    h = hashlib.sha256()
    for start in range(0, len(split), 4096):
        h.update(rows(split, range(start, min(start + 4096, len(split)))).numpy())
    return h.hexdigest()


def token_counts(split, vocab_size: int) -> torch.Tensor:
    """[vocab_size] float64 token frequencies over a packed split (padding included; the samplers and the
    evaluation yardstick exclude the special ids themselves)."""
    counts = torch.zeros(vocab_size, dtype=torch.float64)
    for start in range(0, len(split), 4096):
        block = rows(split, range(start, min(start + 4096, len(split))))
        counts += torch.bincount(block.flatten(), minlength=vocab_size)[:vocab_size].double()
    return counts


def heldout_batches(corpus: PackedCorpus, batch: int, max_sequences: Optional[int] = None
                    ) -> list[dict[str, torch.Tensor]]:
    """The held-out split (its first `max_sequences` rows) in fixed order, as batches of `batch` rows."""
    n = len(corpus.heldout) if max_sequences is None else min(max_sequences, len(corpus.heldout))
    return [collate(rows(corpus.heldout, range(i, min(i + batch, n))), corpus.ids) for i in range(0, n, batch)]
