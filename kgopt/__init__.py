"""kgopt: an optimisation-driven prompt compiler for LLM knowledge-graph construction."""

import os as _os

# litellm fetches a model cost map from the network at import unless told not to.
_os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"

from kgopt.errors import (  # noqa: E402
    ArtifactError,
    ConfigError,
    DataError,
    EndpointError,
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
    "UnknownTaskError",
]
