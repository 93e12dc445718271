"""The custom ops (torch.library), one module per op: its backends (an `Op` declaration, run by
ops/_dispatch.py), schema, fake implementation and autograd. The public names live in electra_fast.functional."""
