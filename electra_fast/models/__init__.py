"""The thin model layer: ELECTRA config presets, encoder, generator, discriminator with early exit,
statistical generators and the pre-training module. Built only on the public ops
(electra_fast.functional), so it doubles as an example of using them in a model."""
from .config import EMBEDDING_SHARING, GENERATORS, EarlyExitConfig, ElectraConfig
from .discriminator import Discriminator, DiscriminatorOutput, RTDHead
from .encoder import Embeddings, Encoder, EncoderLayer
from .generator import Generator, GeneratorOutput
from .pretraining import ElectraForPretraining, ElectraPretrainingOutput

__all__ = [
    "EMBEDDING_SHARING",
    "GENERATORS",
    "Discriminator",
    "DiscriminatorOutput",
    "EarlyExitConfig",
    "ElectraConfig",
    "ElectraForPretraining",
    "ElectraPretrainingOutput",
    "Embeddings",
    "Encoder",
    "EncoderLayer",
    "Generator",
    "GeneratorOutput",
    "RTDHead",
]
