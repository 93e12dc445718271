"""Bad corpora, tokenizers and devices: one clear error that names the file (or the device), never a raw
traceback from gzip, tokenizers or torch."""
import gzip

import pytest
import torch

pytest.importorskip("tokenizers")

from electra_fast import data  # noqa: E402
from electra_fast.training.distributed import resolve_device  # noqa: E402

TEXT = "".join(f"document {i} tells of rivers, mills and the sea.\n" for i in range(50))


def _gz(tmp_path, damage):
    path = tmp_path / "corpus.txt.gz"
    raw = gzip.compress(TEXT.encode())
    if damage == "truncated":
        raw = raw[: len(raw) // 2]
    elif damage == "garbled":
        raw = raw[:20] + b"\x00" * 40 + raw[60:]
    else:  # not gzip at all
        raw = b"plain text that only claims to be gzip\n" * 10
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize("damage", ["truncated", "garbled", "not_gzip"])
def test_a_corrupt_gz_corpus_is_one_error_naming_the_file(tmp_path, damage):
    path = _gz(tmp_path, damage)
    with pytest.raises(ValueError, match="corpus: cannot read") as e:
        list(data.read_documents([path]))
    assert str(path) in str(e.value)
    with pytest.raises(ValueError, match="corpus: cannot read"):  # also while a tokenizer trains on it
        data.tokenizer_for([path], vocab_size=100, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("name, content", [
    ("tokenizer.json", b"{not json at all"),
    ("tokenizer.json", b'{"version": "1.0", "model": 7}'),
    ("vocab.txt", b"\xff\xfe\x00garbage\x81\n" * 20),
    ("vocab.txt", b"hello\nworld\n"),  # no special tokens
    ("tokenizer.bin", bytes(range(256)) * 4),
])
def test_a_garbage_tokenizer_is_one_error_naming_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match="tokenizer: .* is not a usable tokenizer.json or BERT vocab.txt") as e:
        data.load_tokenizer(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name, message", [
    ("tpu7", "--device 'tpu7' is not a device name torch knows"),
    ("cuda:x", "is not a device name torch knows"),
    ("", "is not a device name torch knows"),
])
def test_an_unknown_device_is_a_clear_error(name, message):
    with pytest.raises(ValueError, match=message):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_a_clear_error(name):
    with pytest.raises(ValueError, match=f"--device {name}: CUDA is not available here.*use --device cpu"):
        resolve_device(name)


def test_devices_that_exist_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
