"""How ledgerlink's own types live in the artifact store: matchers as their directory format (JSON model + meta,
not pickle), dataset references as JSON with a small table the dashboard shows."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer
from zenml.utils import io_utils

from ledgerlink.data.store import DatasetRef
from ledgerlink.matching.base import BaseMatcher, load_matcher, save_matcher


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
