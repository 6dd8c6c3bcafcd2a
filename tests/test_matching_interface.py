"""The interface the matcher families share: parameters from the __init__ signature, learnt attributes ending in
``_``, the rules baseline without xgboost, models saved before the interface moved still load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ledgerlink.data.synthetic import SyntheticConfig, generate
from ledgerlink.matching import BaseMatcher, Matcher, MatchResult, RulesMatcher
from ledgerlink.matching.base import check_frame
from ledgerlink.matching.transformer import TransformerMatcher

SMALL = dict(seed=3, months=2, contractors=30, transfers_per_month=100)
FAST = dict(n_estimators=20, max_depth=3, n_jobs=1)

# the parameter names models were saved with before get_params came from the signature (meta.json "params")
SAVED_MATCHER_PARAMS = [
    "max_candidates",
    "max_candidates_weak",
    "lookback_days",
    "n_estimators",
    "max_depth",
    "learning_rate",
    "target_precision",
    "validation_fraction",
    "n_folds",
    "early_stopping_rounds",
    "peel_confidence",
    "batch_size",
    "random_state",
    "n_jobs",
    "show_progress",
]
SAVED_TEXT_PARAMS = [
    "checkpoint",
    "rerank_k",
    "max_length",
    "hidden_size",
    "num_layers",
    "num_heads",
    "epochs",
    "text_batch_size",
    "text_learning_rate",
    "max_train_pairs",
    "device",
]
# added with the packaged pretrained checkpoint (issue 15); their defaults keep models saved without them as they were
ADDED_TEXT_PARAMS = ["text_mode", "text_precision", "text_cache_size"]


@pytest.mark.parametrize("family", [Matcher, TransformerMatcher, RulesMatcher])
def test_get_params_comes_from_the_signature_and_set_params_round_trips(family):
    m = family()
    params = m.get_params()
    expected = {
        Matcher: SAVED_MATCHER_PARAMS,
        TransformerMatcher: SAVED_MATCHER_PARAMS + SAVED_TEXT_PARAMS + ADDED_TEXT_PARAMS,
        RulesMatcher: ["lookback_days"],
    }[family]
    assert list(params) == expected  # models saved earlier name the same parameters
    if family is TransformerMatcher:  # a model saved before the text modes loads as the cross-encoder it was
        assert family(**{k: params[k] for k in SAVED_MATCHER_PARAMS + SAVED_TEXT_PARAMS}).text_mode == "cross"
    clone = family(**params)
    assert clone.get_params() == params and clone is not m
    changed = {"lookback_days": 90}
    assert m.set_params(**changed) is m and m.get_params() == {**params, **changed}
    assert family(**m.get_params()).get_params() == m.get_params()
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['lookbak_days'\].*valid"):
        m.set_params(lookbak_days=3)
    assert repr(m).startswith(f"{family.__name__}(") and "lookback_days=90" in repr(m)


def test_a_subclass_that_passes_params_on_gets_its_parents_too():
    class Tuned(Matcher):
        def __init__(self, extra=1, **params):
            super().__init__(**params)
            self.extra = extra

    assert Tuned._param_names() == SAVED_MATCHER_PARAMS + ["extra"]
    assert Tuned(extra=2, max_depth=3).get_params()["max_depth"] == 3


def test_what_fit_learns_ends_in_an_underscore():
    world = generate(SyntheticConfig(**SMALL))
    m = Matcher(**FAST)
    before = set(vars(m))
    m.fit(world["invoices"], world["transfers"], world["links"])
    learnt = set(vars(m)) - before
    assert learnt and all(a.endswith("_") and not a.startswith("_") for a in learnt), sorted(learnt)
    assert {"memory_", "pair_boosters_", "set_booster_", "auto_threshold_", "validation_"} <= learnt
    assert set(vars(m)) - learnt == set(m.get_params())  # __init__ stores its parameters and nothing else


def test_a_model_saved_in_the_previous_format_loads(tmp_path):
    """The save format did not change (FORMAT_VERSION 2): meta.json with the same keys and parameter names."""
    world = generate(SyntheticConfig(**SMALL))
    m = Matcher(**FAST).fit(world["invoices"], world["transfers"], world["links"])
    m.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    assert meta["format_version"] == 2 and list(meta["params"]) == SAVED_MATCHER_PARAMS
    assert {"auto_threshold_", "empty_confidence_", "feature_names_", "training_summary_", "memory"} <= set(meta)
    loaded = Matcher.load(tmp_path / "m")
    a, b = m.match(world["invoices"], world["transfers"]), loaded.match(world["invoices"], world["transfers"])
    pd.testing.assert_frame_equal(a.links, b.links)
    meta["format_version"] = 1
    (tmp_path / "m" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="saved with format 1, this library reads 2"):
        Matcher.load(tmp_path / "m")


def test_the_shared_interface_lives_next_to_base_matcher():
    assert issubclass(Matcher, BaseMatcher) and issubclass(RulesMatcher, BaseMatcher)
    assert MatchResult.__module__ == "ledgerlink.matching.base" and check_frame.__module__ == "ledgerlink.matching.base"
    with pytest.raises(ValueError, match="invoices: missing required column"):
        check_frame(pd.DataFrame({"x": [1]}), "invoices")


def _fresh_python(code: str) -> str:
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout


def test_the_rules_baseline_does_not_import_xgboost_and_every_family_gets_the_thread_settings():
    out = _fresh_python(
        "import sys, os\n"
        "from ledgerlink.matching import RulesMatcher\n"
        "print('xgboost' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))\n"
        "from ledgerlink.matching.transformer import TransformerMatcher\n"  # imports the tree family first
        "print('xgboost' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    assert out.split() == ["False", "None", "True", "PASSIVE"]
    # whichever family comes first, the settings come before its native library
    out = _fresh_python(
        "import os\nfrom ledgerlink.matching import runtime\nruntime.torch()\nprint(os.environ.get('OMP_WAIT_POLICY'))"
    )
    assert out.split() == ["PASSIVE"]
