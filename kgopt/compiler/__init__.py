"""The compiler: DSPy optimisers inside an Optuna study, the black-box stand-in for P-Tuning.

- ``trainset``: records -> chunk-level DSPy examples and the chunk F1 metric;
- ``optimizers``: labeled / bootstrap / mipro / gepa, one registry;
- ``instructions``: instruction variants proposed by the LLM from the data;
- ``space``: the Optuna search space (one ``TrialConfig`` per trial);
- ``study``: the objective, storage, resume, and writing the best program;
- ``manifest``: what a compiled program records about how it was made.
"""

from kgopt.compiler.study import CompileOptions, CompileResult, compile_program, run_compile

__all__ = ["compile_program", "run_compile", "CompileOptions", "CompileResult"]
