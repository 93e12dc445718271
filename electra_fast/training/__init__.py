"""The parts of `electra-fast pretrain`, one job each; electra_fast.train.pretrain puts them together.

checkpoint   the checkpoint file (safetensors, written atomically) and its metadata
"""
