"""electra_fast.training.distributed: compiled encoder layers compile once per layer shape and give the eager
model's losses and gradients for batches of any size and length."""
import torch

from electra_fast.models import ElectraForPretraining
from electra_fast.models.encoder import EncoderLayer
from electra_fast.training.distributed import compile_layers, unwrap
from tests.models.helpers import batch, tiny_config


def test_compiled_layers_do_not_recompile_per_batch_and_match_eager():
    torch._dynamo.reset()
    config = tiny_config(num_hidden_layers=2)  # no dropout: the compiled layers' is torch's, not the Philox one
    torch.manual_seed(0)
    eager = ElectraForPretraining(config)
    compiled = ElectraForPretraining(config)
    compiled.load_state_dict(eager.state_dict())
    assert compile_layers(compiled) == sum(isinstance(m, EncoderLayer) for m in compiled.modules()) > 0
    assert unwrap(compiled) is compiled and set(compiled.state_dict()) == set(eager.state_dict())
    graphs = []
    # torch specialises sizes 0 and 1, so a batch of one row adds its graphs once: not per batch
    shapes = [(2, 12), (3, 17), (4, 9), (5, 30), (1, 20), (1, 11), (2, 25)]
    for k, (b, t) in enumerate(shapes):
        ids, mask = batch(b, t, seed=k, pad=(0, 3))
        outs = [model(ids, mask, seed=7, offset=k) for model in (eager, compiled)]
        grads = [torch.autograd.grad(out.loss, list(model.parameters()), allow_unused=True)
                 for out, model in zip(outs, (eager, compiled))]
        torch.testing.assert_close(outs[1].loss, outs[0].loss, rtol=1e-4, atol=1e-5)
        for g_eager, g_compiled in zip(*grads):
            if g_eager is not None:
                torch.testing.assert_close(g_compiled, g_eager, rtol=1e-3, atol=1e-5)
        graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    assert graphs[1] == graphs[2] == graphs[3], f"new graphs for batches of 2 rows or more: {graphs}"
    assert graphs[4] == graphs[5] == graphs[6], f"new graphs after the first batch of one row: {graphs}"
