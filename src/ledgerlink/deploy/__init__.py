"""Deployment: image tags, BentoML packaging and the Cloud Build client.

Submodules import their heavy dependencies (bentoml, google-cloud-build, fsspec) lazily, so
importing ``ledgerlink.deploy`` stays cheap; import ``ledgerlink.deploy.bento`` or
``ledgerlink.deploy.cloud_build`` for those parts.
"""

from ledgerlink.deploy.tags import ImageTag, image_tag, image_uri, parse_tag

__all__ = ["ImageTag", "image_tag", "image_uri", "parse_tag"]
