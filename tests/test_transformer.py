"""The transformer family on tiny local models: never a download (HF_HUB_OFFLINE), seconds on a CPU."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ledgerlink.data.synthetic import SyntheticConfig, generate  # noqa: E402
from ledgerlink.evaluation.evaluate import evaluate  # noqa: E402
from ledgerlink.matching import RulesMatcher  # noqa: E402
from ledgerlink.matching.base import FAMILY_FILE, load_matcher, save_matcher  # noqa: E402
from ledgerlink.matching.registry import build_matcher  # noqa: E402
from ledgerlink.matching.transformer import TEXT_FEATURE, CharTokenizer, TransformerMatcher, pair_texts  # noqa: E402

TINY = dict(
    n_estimators=30,
    max_depth=3,
    n_jobs=1,
    hidden_size=16,
    num_layers=1,
    num_heads=2,
    epochs=1,
    max_length=48,
    rerank_k=3,
    text_batch_size=32,
    max_train_pairs=600,
)


@pytest.fixture(scope="module")
def data():
    d = generate(SyntheticConfig(seed=5, months=3, contractors=30, transfers_per_month=90))
    inv, tr, ln = d["invoices"], d["transfers"], d["links"]
    train = {
        "invoices": inv[inv["month"] < "2025-03"],
        "transfers": tr[tr["month"] < "2025-03"],
        "links": ln[ln["month"] < "2025-03"],
    }
    test = {"invoices": inv, "transfers": tr[tr["month"] == "2025-03"], "links": ln[ln["month"] == "2025-03"]}
    return train, test


@pytest.fixture(scope="module")
def fitted(data):
    train, _ = data
    return build_matcher("transformer", **TINY).fit(train["invoices"], train["transfers"], train["links"])


def test_char_tokenizer_pairs_and_round_trip(tmp_path):
    tok = CharTokenizer.default()
    enc = tok.encode_pairs(["fv/2025/03/0142 | lodz"], ["fv/2025/03/0142 | lodz trans | 1230.00"], 24)
    ids, types = enc["input_ids"][0].tolist(), enc["token_type_ids"][0].tolist()
    assert ids[0] == 2 and ids.count(3) == 2 and len(ids) == 24  # [CLS] a [SEP] b [SEP], cut to length
    assert types[: ids.index(3) + 1] == [0] * (ids.index(3) + 1) and types[ids.index(3) + 1] == 1
    tok.save(tmp_path)
    assert CharTokenizer.load(tmp_path).chars == tok.chars


def test_fit_match_and_the_text_feature(data, fitted):
    _, test = data
    assert isinstance(fitted, TransformerMatcher) and fitted.feature_names_[-1] == TEXT_FEATURE
    assert len(fitted.encoders_) == 2  # cross-fitted, one encoder per fold
    assert fitted.training_summary_["text_fit_seconds"] > 0
    res = fitted.match(test["invoices"], test["transfers"])
    assert list(res.links.columns) == ["transfer_id", "invoice_id", "allocated_amount", "confidence"]
    # the encoder's batch size is its own: a month is matched in one batch, as with the tree family
    assert (
        fitted.text_batch_size == TINY["text_batch_size"] and fitted.batch_size == build_matcher("xgboost").batch_size
    )
    many = fitted.match_many([(test["invoices"], test["transfers"])])[0]
    pd.testing.assert_frame_equal(res.links, many.links)
    assert res.decisions["transfer_id"].tolist() == test["transfers"]["transfer_id"].tolist()
    e = evaluate(fitted, test)
    assert e.metrics["pair_f1"] > evaluate(RulesMatcher(), test).metrics["pair_f1"]
    assert 0 <= fitted.auto_threshold_ <= 1


def test_explained_the_text_score_is_a_reason_like_any_feature(data, fitted):
    """The trees see the text score as a feature: its contribution is summed, ranked and worded with the rest."""
    from ledgerlink.matching import reasons as R

    _, test = data
    said = fitted.match(test["invoices"], test["transfers"], explain=True)
    plain = fitted.match(test["invoices"], test["transfers"])
    pd.testing.assert_frame_equal(said.links.drop(columns="reasons"), plain.links)
    assert said.links["reasons"].map(len).gt(0).all() and said.decisions["reasons"].map(len).gt(0).all()
    assert R._text_model(R.Evidence(x={TEXT_FEATURE: 0.93})) == "the text model reads the title as this invoice (0.93)"
    assert R._text_model(R.Evidence(x={TEXT_FEATURE: 0.2})) is None  # a low score is no reason for the link
    text_group = [g.name for g in R.PAIR_GROUPS].index("text model")
    from ledgerlink.matching.explain import contributions
    from ledgerlink.matching.normalize import Prepared

    P = Prepared.of(test["invoices"], test["transfers"])
    pairs, X = fitted._block_and_featurize(P, fitted.memory_, None)
    C = contributions(fitted.pair_boosters_, X)
    assert np.abs((C @ R.group_matrix(R.PAIR_GROUPS, list(X.columns)))[:, text_group]).max() > 0


def test_text_score_only_for_the_top_candidates(data, fitted):
    from ledgerlink.matching.normalize import Prepared

    _, test = data
    P = Prepared.of(test["invoices"], test["transfers"])
    inv, tr = P.inv, P.tr
    pairs, X = fitted._block_and_featurize(P, fitted.memory_, None)
    scored = X[TEXT_FEATURE].notna().to_numpy()
    assert scored.any() and (X.loc[scored, "heur_rank"] <= fitted.rerank_k).all()
    assert X.loc[scored, TEXT_FEATURE].between(0, 1).all()
    a, b = pair_texts(pairs.head(2), inv, tr)
    assert " | " in a[0] and b[0].endswith(f"{inv['amount'].iloc[pairs['i'].iloc[0]]:.2f}")


def test_save_load_without_pickle_round_trip(data, fitted, tmp_path):
    _, test = data
    save_matcher(fitted, tmp_path / "m")
    files = {p.relative_to(tmp_path / "m").as_posix() for p in (tmp_path / "m").rglob("*") if p.is_file()}
    assert "text_encoder_0/model.safetensors" in files and "text_encoder_1/config.json" in files
    assert not [f for f in files if f.endswith((".pkl", ".bin", ".pt", ".pth"))]
    assert json.loads((tmp_path / "m" / FAMILY_FILE).read_text())["class"].endswith(":TransformerMatcher")
    loaded = load_matcher(tmp_path / "m")
    assert isinstance(loaded, TransformerMatcher) and loaded.get_params() == fitted.get_params()
    a, b = fitted.match(test["invoices"], test["transfers"]), loaded.match(test["invoices"], test["transfers"])
    pd.testing.assert_frame_equal(a.links, b.links)
    np.testing.assert_allclose(a.candidates["probability"], b.candidates["probability"], rtol=1e-5, atol=1e-7)


def test_device_is_the_gpu_when_there_is_one(fitted):
    assert fitted._device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert TransformerMatcher(device="cpu")._device().type == "cpu"


def _tiny_checkpoint(path):
    """A real Hugging Face checkpoint made here: a 1-layer BERT and a WordPiece tokenizer over a small vocab."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = list("abcdefghijklmnopqrstuvwxyz0123456789/-.|") + ["fv", "inv", "gmbh", "sp", "zoo"]
    vocab = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + words
        + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    )
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=1,
    )
    BertForSequenceClassification(cfg).save_pretrained(str(path), safe_serialization=True)
    tok.save_pretrained(str(path))
    return path


def test_a_local_checkpoint_is_fine_tuned_and_saved_with_its_tokenizer(data, tmp_path):
    train, test = data
    ckpt = _tiny_checkpoint(tmp_path / "ckpt")
    m = build_matcher("transformer", checkpoint=str(ckpt), **{**TINY, "max_length": 40})
    m.fit(train["invoices"], train["transfers"], train["links"])
    assert m.training_summary_["text_encoder"] == str(ckpt)
    save_matcher(m, tmp_path / "m")
    assert (tmp_path / "m" / "text_encoder_0" / "tokenizer.json").exists()
    loaded = load_matcher(tmp_path / "m")
    a, b = m.match(test["invoices"], test["transfers"]), loaded.match(test["invoices"], test["transfers"])
    pd.testing.assert_frame_equal(a.links, b.links)


def test_unfitted_and_missing_checkpoint_say_what_to_do(tmp_path, data):
    train, _ = data
    with pytest.raises(RuntimeError, match="not fitted"):
        TransformerMatcher().match(train["invoices"], train["transfers"])
    with pytest.raises(OSError):
        build_matcher("transformer", checkpoint=str(tmp_path / "nowhere"), **TINY).fit(
            train["invoices"], train["transfers"], train["links"]
        )


def test_the_drift_view_uses_the_training_feature_code(data, fitted):
    """pair_feature_frame: match's blocking and pair features (text score included in the ranking), one row per
    transfer: its most probable candidate; memory features and the text score (model outputs) left out."""
    from ledgerlink.matching.features import VIEW_FEATURES

    _, test = data
    view = fitted.pair_feature_frame(test["invoices"], test["transfers"])
    assert list(view.columns) == VIEW_FEATURES and TEXT_FEATURE in fitted.feature_names_
    assert set(VIEW_FEATURES) <= set(fitted.feature_names_) and TEXT_FEATURE not in view.columns
    assert view.index.is_unique and len(view) >= 0.9 * len(test["transfers"])
    # independently: the model's probability of each candidate and the public feature code
    from ledgerlink.matching.features import VIEW_MISSING, pair_features
    from ledgerlink.matching.normalize import Prepared

    cands = fitted.match(test["invoices"], test["transfers"]).candidates
    proba = fitted.predict_proba_pairs(test["invoices"], cands[["transfer_id", "invoice_id"]], test["transfers"])
    P = Prepared.of(test["invoices"], test["transfers"])
    t_of = pd.Series(np.arange(len(P.tr)), index=P.tr["transfer_id"])
    i_of = pd.Series(np.arange(len(P.inv)), index=P.inv["invoice_id"])
    pairs = pd.DataFrame({"t": t_of[proba["transfer_id"]].to_numpy(), "i": i_of[proba["invoice_id"]].to_numpy()})
    X = pair_features(pairs, P, memory=fitted.memory_)
    best = proba.assign(row=np.arange(len(proba))).sort_values(["transfer_id", "probability"], ascending=[True, False])
    best = best.drop_duplicates("transfer_id")
    expected = X[VIEW_FEATURES].iloc[best["row"].to_numpy()].fillna(VIEW_MISSING).to_numpy()
    same = (view.loc[best["transfer_id"].to_numpy()].to_numpy() == expected).all(axis=1)
    assert same.mean() > 0.95  # equal probabilities may pick another candidate
