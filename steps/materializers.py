"""How ledgerlink's own types live in the artifact store: matchers as their directory format (JSON model + meta,
not pickle), dataset references as JSON with a small table the dashboard shows."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, ClassVar

from zenml.config.source import Source, SourceType
from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer
from zenml.utils import io_utils

from ledgerlink.data.store import DatasetRef
from ledgerlink.matching.base import BaseMatcher, load_matcher, save_matcher


class _ImportName:
    """The ZenML source of a ledgerlink class is its import name (``ledgerlink.matching.model.Matcher``).

    ZenML names a user class by its file's path below the source root (the repository), and the library lives in
    ``src/``: runs started from ``run.py`` recorded artifacts as ``src.ledgerlink...`` and loaded a second copy of
    the library to read them back (an ``Optional[DatasetRef]`` input then failed its type check). ZenML takes a
    class's ``__zenml_source__`` before resolving it; as a descriptor on the base class it names every subclass."""

    def __get__(self, obj, cls) -> Source:
        return Source(module=cls.__module__, attribute=cls.__qualname__, type=SourceType.UNKNOWN)


for _cls in (BaseMatcher, DatasetRef):
    _cls.__zenml_source__ = _ImportName()


class MatcherMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple] = (BaseMatcher,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.MODEL

    def load(self, data_type: type) -> Any:
        with tempfile.TemporaryDirectory() as tmp:
            io_utils.copy_dir(self.uri, tmp)
            return load_matcher(tmp)

    def save(self, data: Any) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            save_matcher(data, tmp)
            fileio.makedirs(self.uri)
            for name in os.listdir(tmp):
                fileio.copy(os.path.join(tmp, name), os.path.join(self.uri, name), overwrite=True)


class DatasetRefMaterializer(BaseMaterializer):
    """A ``DatasetRef`` crosses step boundaries as itself: JSON of its fields, read back with ``from_dict``."""

    ASSOCIATED_TYPES: ClassVar[tuple] = (DatasetRef,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA
    FILENAME: ClassVar[str] = "dataset_ref.json"

    def load(self, data_type: type) -> DatasetRef:
        with fileio.open(os.path.join(self.uri, self.FILENAME), "r") as f:
            return DatasetRef.from_dict(json.load(f))

    def save(self, data: DatasetRef) -> None:
        fileio.makedirs(self.uri)
        with fileio.open(os.path.join(self.uri, self.FILENAME), "w") as f:
            json.dump(data.to_dict(), f, indent=2, sort_keys=True)

    def save_visualizations(self, data: DatasetRef) -> dict[str, VisualizationType]:
        rows = [
            ("store", data.uri),
            ("training months", ", ".join(data.months)),
            ("training rows", ", ".join(f"{k} {v}" for k, v in data.train_rows.items())),
            ("frozen test", f"{data.test_month}: " + ", ".join(f"{k} {v}" for k, v in data.test_rows.items())),
            ("fingerprints", f"train {data.train_fingerprint}, test {data.test_fingerprint}"),
        ]
        if data.message:
            rows.append(("collection", data.message))
        path = os.path.join(self.uri, "dataset_ref.md")
        with fileio.open(path, "w") as f:
            f.write("| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows))
        return {path: VisualizationType.MARKDOWN}

    def extract_metadata(self, data: DatasetRef) -> dict[str, Any]:
        return {"months": len(data.months), "newest_month": data.months[-1] if data.months else ""}
