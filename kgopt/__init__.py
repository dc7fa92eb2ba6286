"""kgopt: an optimisation-driven prompt compiler for LLM knowledge-graph construction."""

import os as _os

# litellm fetches a model cost map from the network at import unless told not to.
_os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"

from kgopt.errors import (  # noqa: E402
    ArtifactError,
    BudgetExceeded,
    ConfigError,
    DataError,
    EndpointError,
    ExtractAborted,
    KgoptError,
    UnknownTaskError,
)

__all__ = [
    "__version__",
    "KgoptError",
    "DataError",
    "ConfigError",
    "EndpointError",
    "ArtifactError",
    "BudgetExceeded",
    "ExtractAborted",
    "UnknownTaskError",
]

# The public API, by name -> the module that defines it. The entry points are verbs; their
# modules are nouns (kgopt.evaluation, kgopt.extraction, kgopt.augmentation), so importing a
# module never replaces the function of the same name here.
_LAZY = {
    "load": "kgopt.api",
    "Extractor": "kgopt.api",
    "connect": "kgopt.clients.lm",
    "evaluate": "kgopt.evaluation",
    "compile_program": "kgopt.compiler",
    "extract": "kgopt.extraction",
    "augment": "kgopt.augmentation",
    "IEProgram": "kgopt.program",
    "load_program": "kgopt.program",
    "resolve_endpoint": "kgopt.clients.config",
    "get_task": "kgopt.core.tasks",
    "TASKS": "kgopt.core.tasks",
}
__all__ += list(_LAZY)


def __getattr__(name):
    # DSPy and litellm take seconds to import: load them only when the API is used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kgopt' has no attribute {name!r}")
