"""Quality yardsticks that do not depend on the run being judged.

    sets = corpus_heldout_sets(tokenizer)    # fixed corrupted held-out tokens of the (bundled) corpus
    sets = heldout_sets(heldout_ids, special_ids, train_counts, seed=0)   # ... of any held-out rows
    evaluate(model, sets)        # auc_uniform, auc_unigram, recall5_*, accuracy_* vs majority_*, mlm_*
    reviews = load_reviews(tokenizer, special_ids)
    finetune_accuracy(model.discriminator, reviews), probe_accuracy(model.discriminator, reviews)

`heldout.py` holds the fixed sets and the scoring, `metrics.py` ROC-AUC and recall at a fixed
false-positive rate, `downstream.py` the Rotten Tomatoes fine-tuning check and the frozen probe.
"""
from .downstream import Reviews, finetune_accuracy, load_reviews, probe_accuracy
from .heldout import (CORRUPTERS, CorruptedSet, HeldoutSets, MaskedSet, build_heldout_sets, check_compatible,
                      corpus_heldout_sets, evaluate, heldout_sets, score_discriminator, score_generator)
from .metrics import recall_at_fpr, roc_auc

__all__ = ["CORRUPTERS", "CorruptedSet", "HeldoutSets", "MaskedSet", "Reviews", "build_heldout_sets",
           "check_compatible", "corpus_heldout_sets", "evaluate", "finetune_accuracy", "heldout_sets", "load_reviews", "probe_accuracy",
           "recall_at_fpr", "roc_auc", "score_discriminator", "score_generator"]
