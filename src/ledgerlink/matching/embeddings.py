"""Sentence embeddings from a pretrained checkpoint, and the pair features the tree model reads from them.

``SentenceEncoder`` embeds texts with a Hugging Face encoder (``AutoModel`` + ``AutoTokenizer`` from a local
folder): mean pooling over the tokens, L2-normalised, the recipe all-MiniLM-L6-v2 was trained with. The encoder is
used frozen: it learns nothing from the training links, so its features need no cross-fitting and fit and match
compute them with the same call.

Cost is per distinct string, so each is embedded once: an LRU cache keyed by the text (``cache_size`` strings,
~1.5 KB each for a 384-wide model) serves a service the invoices it saw in earlier requests. Misses are embedded in
batches of similar length (little padding). Measured on this project's 2-core machine under load, MiniLM-L6 costs
8-16 ms per string of ~23 tokens in float32; bfloat16 autocast, where the CPU has native bf16 (AVX512-BF16, AMX)
or on a GPU, halves that and moves cosines by ~1e-5 (``precision="auto"``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import runtime
from .checkpoints import hf_quiet
from .runtime import check_deadline

EMBEDDING_FEATURES = ["text_cosine", "text_cosine_gap"]
PRECISIONS = ("auto", "float32", "bfloat16")


class SentenceEncoder:
    """Mean-pooled, L2-normalised embeddings of strings; each distinct string embedded once (LRU cache)."""

    def __init__(
        self,
        folder,
        *,
        max_length: int = 96,
        batch_size: int = 256,
        cache_size: int = 50000,
        precision: str = "auto",
        device=None,
        n_threads: int = 1,
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"text_precision must be one of {PRECISIONS}, got {precision!r}")
        from transformers import AutoModel, AutoTokenizer

        self.folder = Path(folder)
        with hf_quiet():
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(self.folder), local_files_only=True, use_safetensors=True)
        torch = runtime.torch()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        self.max_length = int(max_length)
        self.batch_size = max(1, int(batch_size))
        self.cache_size = max(0, int(cache_size))
        self.n_threads = n_threads
        self.autocast = self._autocast_dtype(precision)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.embedded = 0  # strings embedded (cache misses), for cost figures

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def _autocast_dtype(self, precision: str):
        torch = runtime.torch()
        if precision == "float32":
            return None
        if precision == "bfloat16":
            return torch.bfloat16
        if self.device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None

    def _embed(self, texts: list[str]) -> np.ndarray:
        torch = runtime.torch()
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]]
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(texts), self.dim), np.float32)
        with runtime.torch_threads(self.n_threads), torch.inference_mode():
            for lo in range(0, len(texts), self.batch_size):
                idx = order[lo : lo + self.batch_size]
                enc = self.tokenizer(
                    [texts[k] for k in idx],
                    truncation=True,
                    max_length=self.max_length,
                    padding=True,
                    return_tensors="pt",
                )
                enc = {k: v.to(self.device) for k, v in enc.items()}
                with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
                    hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(torch.float32)
                pooled = (hidden.float() * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = torch.nn.functional.normalize(pooled, dim=1).cpu().numpy()
                check_deadline("text encoder")
        self.embedded += len(texts)
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors; repeated and previously seen strings are not embedded again."""
        codes, uniques = pd.factorize(pd.Series(list(texts), dtype=object), use_na_sentinel=False)
        uniques = [str(u) for u in uniques]
        vectors = np.zeros((len(uniques), self.dim), np.float32)
        with self._lock:
            missing = []
            for k, text in enumerate(uniques):
                hit = self._cache.get(text)
                if hit is None:
                    missing.append(k)
                else:
                    self._cache.move_to_end(text)
                    vectors[k] = hit
            if missing:
                new = self._embed([uniques[k] for k in missing])
                vectors[missing] = new
                if self.cache_size:
                    for k, v in zip(missing, new):
                        self._cache[uniques[k]] = v
                    while len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
        return vectors[codes]

    def clear_cache(self) -> None:
        """Forget every embedded string (a fresh server's state; benchmarks time cold matches with it)."""
        with self._lock:
            self._cache.clear()

    def save(self, folder: Path) -> None:
        """The encoder's files (weights as safetensors, tokenizer), for a model whose checkpoint was a path."""
        with hf_quiet():
            self.model.save_pretrained(str(folder), safe_serialization=True)
            self.tokenizer.save_pretrained(str(folder))


def pair_cosines(
    pairs: pd.DataFrame, tr_texts: np.ndarray, inv_texts: np.ndarray, encoder: SentenceEncoder
) -> np.ndarray:
    """Cosine of each pair's transfer text (``tr_texts[t]``) and invoice text (``inv_texts[i]``). Only the texts of
    the transfers and invoices that appear in ``pairs`` are embedded, and the products are taken in chunks, so
    memory stays at one vector per distinct text."""
    t, i = pairs["t"].to_numpy(), pairs["i"].to_numpy()
    t_code, t_rows = pd.factorize(t)
    i_code, i_rows = pd.factorize(i)
    tv = encoder.encode(tr_texts[t_rows]) if len(t_rows) else np.zeros((0, encoder.dim), np.float32)
    iv = encoder.encode(inv_texts[i_rows]) if len(i_rows) else np.zeros((0, encoder.dim), np.float32)
    cos = np.zeros(len(t), np.float32)
    for lo in range(0, len(t), 16384):
        sl = slice(lo, lo + 16384)
        cos[sl] = np.einsum("ij,ij->i", tv[t_code[sl]], iv[i_code[sl]])
    return cos


def similarity_features(pairs: pd.DataFrame, cos: np.ndarray) -> pd.DataFrame:
    """Per pair: ``text_cosine`` (transfer text vs invoice text) and ``text_cosine_gap`` (that cosine minus the best
    cosine among the transfer's candidates given: 0 for its most similar invoice, negative for the others; the
    trees read it like the other features that compare a transfer's candidates)."""
    t = pairs["t"].to_numpy()
    best = np.full(int(t.max()) + 1 if len(t) else 0, -np.inf, np.float32)
    np.maximum.at(best, t, cos)
    return pd.DataFrame(
        {EMBEDDING_FEATURES[0]: cos.astype(np.float32), EMBEDDING_FEATURES[1]: (cos - best[t]).astype(np.float32)},
        index=pairs.index,
    )
