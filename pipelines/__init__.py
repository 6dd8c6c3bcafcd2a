"""ZenML pipelines: each module only wires steps together."""

from .data_collection import data_collection
from .monitoring import monitoring
from .suggest import suggest
from .training import training

__all__ = ["data_collection", "training", "monitoring", "suggest"]
