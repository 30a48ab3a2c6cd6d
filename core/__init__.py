"""Frozen vs fine-tuned BERT on SMS spam: data, training, evaluation, prediction and the run store."""
__version__ = "0.1.0"
