"""The custom ops (torch.library), one module per op: schema, fake implementation, autograd, and the
dispatch to a backend (electra_fast.backend). The public names live in electra_fast.functional."""
