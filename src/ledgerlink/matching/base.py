"""The estimator interface every model family shares, so pipelines, benchmarks and the service need not care."""

from __future__ import annotations


class MatchTimeout(TimeoutError):
    """A match passed its ``deadline`` (an absolute ``time.monotonic()`` value) and stopped at ``stage``. Nothing
    of the call is kept; retry with more time or less input."""

    def __init__(self, stage: str, late_by: float = 0.0):
        self.stage = stage
        self.late_by = late_by
        super().__init__(f"match deadline passed during {stage} ({late_by:.3f} s late); the work was stopped")


class BaseMatcher:
    """fit(invoices, transfers, links) -> self; match(invoices, transfers, *, deadline=None) -> MatchResult;
    predict -> links; save(dir) / load(dir) in the family's own file format (no pickle).

    ``deadline`` (absolute ``time.monotonic()`` seconds, None: no limit): past it, ``match`` raises
    ``MatchTimeout`` naming the stage it stopped in."""

    def fit(self, invoices, transfers, links):
        raise NotImplementedError

    def match(self, invoices, transfers, *, deadline: float | None = None):
        raise NotImplementedError

    def predict(self, invoices, transfers):
        return self.match(invoices, transfers).links

    def save(self, path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, path):
        raise NotImplementedError


FAMILY_FILE = "family.json"


def save_matcher(matcher: BaseMatcher, path) -> None:
    """Save any family and record which class wrote it, so ``load_matcher`` needs no type hint."""
    import json
    from pathlib import Path

    matcher.save(path)
    cls = type(matcher)
    (Path(path) / FAMILY_FILE).write_text(json.dumps({"class": f"{cls.__module__}:{cls.__qualname__}"}))


def load_matcher(path) -> BaseMatcher:
    import importlib
    import json
    from pathlib import Path

    marker = Path(path) / FAMILY_FILE
    if not marker.exists():
        from .model import Matcher

        return Matcher.load(path)
    module, _, name = json.loads(marker.read_text())["class"].partition(":")
    if not module.startswith("ledgerlink."):
        raise ValueError(f"refusing to load matcher class {module}:{name} from {path}: not a ledgerlink class")
    return getattr(importlib.import_module(module), name).load(path)
