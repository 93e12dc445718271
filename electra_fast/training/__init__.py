"""The parts of `electra-fast pretrain`, one job each; electra_fast.train.pretrain puts them together.

config        TrainConfig: every option of a run
setup         builds a run from a TrainConfig (process group, output directory, tokenizer, data, checkpoint)
loop          Trainer: builds the model and optimizer, then trains, evaluates, saves and exports
seeds         the Philox offset and torch seed of every micro-batch
optim         AdamW, its parameter groups and the learning-rate schedule
distributed   the ranks under torchrun, the DDP / FSDP wrappers, and the compiled encoder layers
evaluation    held-out RTD metrics with the run's own generator, and the fixed yardstick (electra_fast.evaluation)
checkpoint    the checkpoint file (safetensors, written atomically, checksummed) and its metadata
record        the run record: what a resumed run takes from its checkpoint, and what it may change
summary       the summary printed at the end of a run
export        the Hugging Face export of the trained discriminator
"""
