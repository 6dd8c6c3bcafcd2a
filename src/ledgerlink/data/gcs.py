"""The dataset store on Google Cloud Storage: same layout as the local store, safe commits under races.

Data files go through gcsfs like everywhere else. Only the manifest, the single source of truth, is
written differently: GCS has no rename, so the local store's temp-file-and-rename cannot make the
commit atomic. Instead the manifest is uploaded with a generation precondition
(``ifGenerationMatch``: the object generation read before writing; 0 means "must not exist yet").
GCS applies one upload per generation, so when two collections race for the same month exactly one
commit lands and the other gets HTTP 412, raised here as ``ConcurrentCommitError``. The loser's data
files stay unreferenced (``garbage()``), never half-visible.

gcsfs has no public way to pass ``ifGenerationMatch`` except "must not exist" (``mode="create"``),
so the upload is the JSON API's multipart upload sent through gcsfs's own authenticated session
(the same request gcsfs's ``simple_upload`` builds, plus the precondition).
"""

from __future__ import annotations

import json
from urllib.parse import quote

from .store import MANIFEST, ConcurrentCommitError, DatasetStore, Manifest, StoreError

_BOUNDARY = "==ledgerlink=="


class GCSDatasetStore(DatasetStore):
    """A ``DatasetStore`` at ``gs://bucket/prefix``; ``storage_options`` go to ``gcsfs.GCSFileSystem``."""

    def __init__(self, uri: str, fs=None, **storage_options):
        if fs is None:
            import gcsfs

            fs = gcsfs.GCSFileSystem(**storage_options)
        super().__init__(uri, fs=fs)
        self.bucket, _, prefix = self.root.partition("/")
        self.manifest_key = f"{prefix}/{MANIFEST}" if prefix else MANIFEST

    # -- manifest with its object generation ----------------------------------------------------
    def read_manifest_generation(self) -> tuple[Manifest, int]:
        """The manifest and its GCS object generation (0 when there is none), bypassing gcsfs caches."""
        for _ in range(5):
            try:
                meta = self.fs.call("GET", "b/{}/o/{}", self.bucket, self.manifest_key, json_out=True)
            except FileNotFoundError:
                return Manifest(), 0
            generation = int(meta["generation"])
            try:
                _, body = self.fs.call(
                    "GET", "b/{}/o/{}", self.bucket, self.manifest_key, alt="media", generation=str(generation)
                )
            except FileNotFoundError:
                continue  # replaced between the two calls; read again
            return Manifest.from_json(body.decode()), generation
        raise StoreError(f"the manifest at {self.uri} keeps changing while being read; is a writer looping?")

    def read_manifest(self) -> Manifest:
        return self.read_manifest_generation()[0]

    def _upload_manifest(self, data: bytes, if_generation_match: int) -> dict:
        """One multipart upload with ``ifGenerationMatch``; gcsfs raises FileExistsError on HTTP 412."""
        meta = json.dumps({"name": self.manifest_key, "contentType": "application/json"})
        body = (
            (
                f"--{_BOUNDARY}\nContent-Type: application/json; charset=UTF-8\n\n{meta}\n"
                f"--{_BOUNDARY}\nContent-Type: application/json\n\n"
            ).encode()
            + data
            + f"\n--{_BOUNDARY}--".encode()
        )
        try:
            return self.fs.call(
                "POST",
                f"{self.fs._location}/upload/storage/v1/b/{quote(self.bucket)}/o",
                uploadType="multipart",
                ifGenerationMatch=str(if_generation_match),
                headers={"Content-Type": f'multipart/related; boundary="{_BOUNDARY}"'},
                data=body,
                json_out=True,
            )
        finally:
            self.fs.invalidate_cache(self._path(MANIFEST))

    def _commit(self, manifest: Manifest, expected_generation: int) -> None:
        """Write the manifest only if nobody committed since it was read (GCS generation precondition)."""
        current, object_generation = self.read_manifest_generation()
        if current.generation != expected_generation:
            raise ConcurrentCommitError(self._refusal(manifest, current))
        manifest.generation = expected_generation + 1
        try:
            self._upload_manifest(manifest.to_json().encode(), if_generation_match=object_generation)
        except FileExistsError:  # HTTP 412 Precondition Failed
            now, _ = self.read_manifest_generation()
            if now.to_json() == manifest.to_json():
                return  # our own upload landed and a retry of it saw 412
            raise ConcurrentCommitError(self._refusal(manifest, now)) from None

    def garbage(self) -> list[str]:
        self.fs.invalidate_cache()  # listings may be cached from before another writer's commit
        return super().garbage()
