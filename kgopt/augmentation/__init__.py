"""LLM data augmentation in the spirit of DeepKE's LLMICL.

``validate``: pure checks on one generated sample; ``generate``: the prompts, the calls
and the augmented files under ``dataset/augmented/``.
"""

from kgopt.augmentation.generate import AugmentOptions, AugmentReport, augment, run_augment

__all__ = ["augment", "run_augment", "AugmentOptions", "AugmentReport"]
