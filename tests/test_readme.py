"""The README's "Use the kernels in your own model" section: every ```python block runs as written."""
import pathlib
import re

import pytest
import torch

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## Use the kernels in your own model"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    assert HEADING in text, f"README.md lost its section {HEADING!r}"
    body = text.split(HEADING, 1)[1]
    return re.split(r"^## ", body, maxsplit=1, flags=re.M)[0]


BLOCKS = re.findall(r"^```python\n(.*?)^```", section(), flags=re.S | re.M)


def test_section_has_the_six_examples():
    assert len(BLOCKS) == 6
    joined = "\n".join(BLOCKS)
    for name in ("generator_head", "rtd_loss", "gather_tokens", "select_tokens", "scatter_tokens", "apply_kernels",
                 "corpus_heldout_sets", "DropoutAddLayerNorm", "LinearGELU"):
        assert name in joined, name


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_block_runs(index):
    if "transformers" in BLOCKS[index]:
        pytest.importorskip("transformers")
    if "tokenizer_for" in BLOCKS[index]:
        pytest.importorskip("tokenizers")
        pytest.importorskip("datasets")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {"__name__": "__readme__"})
    finally:
        torch.set_num_threads(threads)
