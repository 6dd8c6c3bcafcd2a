"""Store matchers in the artifact store as their own directory format (JSON model + meta), not pickle."""

from __future__ import annotations

import os
import tempfile
from typing import Any, ClassVar

from zenml.enums import ArtifactType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer
from zenml.utils import io_utils

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
