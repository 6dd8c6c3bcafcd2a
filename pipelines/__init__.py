from .data_collection import data_collection
from .training import training

__all__ = ["data_collection", "training"]
