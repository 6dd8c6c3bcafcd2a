"""The ``Matcher`` estimator: blocking -> pair features -> XGBoost pair model (+ a small transfer-level
"pays nothing" model) -> set assignment.

fit() holds out ``validation_fraction`` of the transfers (by id, seeded), trains on the rest and picks
``auto_threshold_`` on the held-out ones (never below 0.5), then refits both models on all transfers: the
threshold comes from a model that saw 80% of the data and the refit is at least as good, so it is, if
anything, conservative. The held-out phase learns memory from the 80% only, and training pairs always see
memory with their own transfer left out (leave-one-out), so the model does not trust memory more than it
deserves on unseen transfers. Transfers without any candidate get ``empty_confidence_``: how often such a
validation transfer really paid nothing.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

from ..data.contract import TABLES
from .assignment import MAX_K, assign
from .base import BaseMatcher
from .candidates import blocking_recall, generate_candidates
from .features import FEATURE_NAMES, TRANSFER_FEATURE_NAMES, Memory, pair_features, transfer_features
from .normalize import prepare_invoices, prepare_transfers

FORMAT_VERSION = 1
MIN_AUTO_THRESHOLD = 0.5
MODEL_FILE = "model.ubj"
NONE_MODEL_FILE = "none_model.ubj"
META_FILE = "meta.json"


def _library_version() -> str:
    try:
        from importlib.metadata import version
        return version("ledgerlink")
    except Exception:  # running from a source tree
        return "0+unknown"


@dataclass
class MatchResult:
    links: pd.DataFrame       # transfer_id, invoice_id, allocated_amount, confidence
    decisions: pd.DataFrame   # transfer_id, n_invoices, confidence, decision ("auto" | "review")
    candidates: pd.DataFrame  # transfer_id, invoice_id, probability, rank


def check_frame(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Boundary check: required columns (``month`` is not needed to match), parseable dates and amounts, unique ids."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{table} must be a pandas DataFrame, got {type(df).__name__}")
    need = [c.name for c in TABLES[table] if c.required and c.name != "month"]
    if table == "links":
        need = ["transfer_id", "invoice_id"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{table}: missing required column(s) {missing}; columns present: {list(df.columns)}. "
                         "Map warehouse names to the canonical ones (ledgerlink.data.contract.ColumnMap).")
    df = df.copy()
    for c in TABLES[table]:
        if c.name not in df.columns:
            continue
        if c.kind == "date":
            parsed = pd.to_datetime(df[c.name], errors="coerce")
            if parsed.isna().any():
                raise ValueError(f"{table}.{c.name}: {int(parsed.isna().sum())} value(s) are not dates")
            df[c.name] = parsed
        elif c.kind == "money" and c.name in need:
            parsed = pd.to_numeric(df[c.name], errors="coerce")
            if parsed.isna().any():
                raise ValueError(f"{table}.{c.name}: {int(parsed.isna().sum())} value(s) are not numbers")
            df[c.name] = parsed.astype(np.float64)
        elif c.kind in ("id",):
            df[c.name] = df[c.name].astype(str)
    key = {"invoices": ["invoice_id"], "transfers": ["transfer_id"], "links": ["transfer_id", "invoice_id"]}[table]
    dup = df.duplicated(key)
    if dup.any():
        raise ValueError(f"{table}: {int(dup.sum())} duplicate key(s) {key}, e.g. {df.loc[dup, key].head(3).values.tolist()}")
    return df


def _progress(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False)


class _TqdmCallback(xgb.callback.TrainingCallback):
    def __init__(self, bar):
        self.bar = bar

    def after_iteration(self, model, epoch, evals_log):
        self.bar.update(1)
        return False


class Matcher(BaseMatcher):
    """Learnt transfer -> invoice(s) matcher (scikit-learn style estimator)."""

    def __init__(self, max_candidates=30, lookback_days=180, n_estimators=400, max_depth=6, learning_rate=0.08,
                 target_precision=0.995, validation_fraction=0.2, random_state=0, n_jobs=2, show_progress=False):
        self.max_candidates = max_candidates
        self.lookback_days = lookback_days
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.target_precision = target_precision
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.show_progress = show_progress

    _PARAMS = ("max_candidates", "lookback_days", "n_estimators", "max_depth", "learning_rate", "target_precision",
               "validation_fraction", "random_state", "n_jobs", "show_progress")

    def get_params(self, deep=True) -> dict:
        return {p: getattr(self, p) for p in self._PARAMS}

    def set_params(self, **params) -> "Matcher":
        for k, v in params.items():
            if k not in self._PARAMS:
                raise ValueError(f"unknown parameter {k!r}; valid: {self._PARAMS}")
            setattr(self, k, v)
        return self

    def __repr__(self):
        return f"Matcher({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    # ----------------------------------------------------------------------------------------------------------
    def _block_and_featurize(self, inv, ic, tr, tc, memory, exclude):
        cands = generate_candidates(inv, ic, tr, tc, memory=memory, exclude=exclude,
                                    max_candidates=self.max_candidates, lookback_days=self.lookback_days)
        X = pair_features(cands, inv, ic, tr, tc, memory=memory, exclude=exclude, n_jobs=self.n_jobs)
        return cands[["t", "i"]].reset_index(drop=True), X

    def _train(self, X: pd.DataFrame, y: np.ndarray, desc: str, rounds: int | None = None,
               depth: int | None = None) -> xgb.Booster:
        params = {"objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist",
                  "max_depth": depth or self.max_depth, "learning_rate": self.learning_rate, "nthread": self.n_jobs,
                  "seed": self.random_state, "min_child_weight": 1.0, "subsample": 0.9, "colsample_bytree": 0.9,
                  "max_bin": 128}  # most features take few values; fewer bins halve the time per tree
        rounds = rounds or self.n_estimators
        bar = _progress(self.show_progress, rounds, desc)
        try:
            dtrain = xgb.DMatrix(X.to_numpy(np.float32), label=y, feature_names=list(X.columns), nthread=self.n_jobs)
            return xgb.train(params, dtrain, num_boost_round=rounds,
                             callbacks=[_TqdmCallback(bar)] if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()

    def _predict(self, booster: xgb.Booster, X: pd.DataFrame) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        names = booster.feature_names
        d = xgb.DMatrix(X[names].to_numpy(np.float32), feature_names=names, nthread=self.n_jobs)
        return booster.predict(d).astype(np.float64)

    def _fit_models(self, pairs, X, y, linked, rows, desc=""):
        """The pair model, and the transfer-level "pays nothing" model on the same transfers' best evidence."""
        booster = self._train(X[rows], y[rows], f"xgboost pairs{desc}")
        t = pairs["t"].to_numpy()[rows]
        TX = transfer_features(X[rows], t)
        none_booster = self._train(TX, (~linked[TX.index.to_numpy()]).astype(np.float32), f"xgboost none{desc}",
                                   rounds=max(50, self.n_estimators // 3), depth=min(4, self.max_depth))
        return booster, none_booster

    def _decide(self, pairs, X, inv, tr, booster, none_booster):
        """Score pairs, ask the transfer-level model, choose each transfer's set (assignment.assign)."""
        p = self._predict(booster, X)
        scored = pairs.assign(probability=p)
        p_none = np.full(len(tr), np.nan)
        if len(X):
            TX = transfer_features(X, pairs["t"].to_numpy())
            p_none[TX.index.to_numpy()] = self._predict(none_booster, TX)
        links, dec = assign(scored, tr["amount"].to_numpy(), inv["amount"].to_numpy(), len(tr), k=MAX_K,
                            booked=tr["booked_at"].to_numpy(), p_none=p_none)
        no_cand = ~np.isin(dec["t"].to_numpy(), pairs["t"].to_numpy())
        dec["confidence"] = np.where(no_cand, self.empty_confidence_, dec["confidence"].to_numpy())
        return scored, links, dec

    @staticmethod
    def _links_ti(links, inv, tr) -> pd.DataFrame:
        ti = pd.Series(np.arange(len(tr)), index=tr["transfer_id"])
        ii = pd.Series(np.arange(len(inv)), index=inv["invoice_id"])
        ok = links["transfer_id"].isin(ti.index) & links["invoice_id"].isin(ii.index)
        lk = links[ok]
        out = pd.DataFrame({"t": ti[lk["transfer_id"]].to_numpy(), "i": ii[lk["invoice_id"]].to_numpy()})
        # links without an allocation are taken to pay the whole invoice
        a = pd.to_numeric(lk["allocated_amount"], errors="coerce").to_numpy() if "allocated_amount" in lk else np.full(len(lk), np.nan)
        out["a"] = np.where(np.isnan(a), inv["amount"].to_numpy()[out["i"].to_numpy()], a)
        return out.drop_duplicates(["t", "i"])

    @staticmethod
    def _label(pairs: pd.DataFrame, links_ti: pd.DataFrame) -> np.ndarray:
        m = pairs.merge(links_ti.assign(_y=1), on=["t", "i"], how="left")
        return m["_y"].fillna(0).to_numpy(np.float32)

    def fit(self, invoices: pd.DataFrame, transfers: pd.DataFrame, links: pd.DataFrame) -> "Matcher":
        """Learn from tagged history. ``invoices`` must include every invoice the ``links`` point to."""
        start = time.perf_counter()
        invoices, transfers = check_frame(invoices, "invoices"), check_frame(transfers, "transfers")
        links = check_frame(links, "links")
        self.feature_names_ = list(FEATURE_NAMES)
        inv, ic = prepare_invoices(invoices)
        tr, tc = prepare_transfers(transfers)
        links_ti = self._links_ti(links, inv, tr)
        n_t = len(tr)
        linked = np.zeros(n_t, bool)
        linked[links_ti["t"].to_numpy()] = True
        stages = _progress(self.show_progress, 2 if self.validation_fraction > 0 else 1, "Matcher.fit")

        # --- 1. held-out transfers choose the auto threshold
        summary = {}
        rng = np.random.default_rng(self.random_state)
        ids = np.sort(tr["transfer_id"].to_numpy())
        n_val = int(round(self.validation_fraction * n_t))
        val_ids = set(rng.choice(ids, size=n_val, replace=False)) if n_val > 0 else set()
        is_val = tr["transfer_id"].isin(val_ids).to_numpy()
        if n_val > 0 and (~is_val).any():
            fit_links = links_ti[~is_val[links_ti["t"].to_numpy()]]
            mem = Memory.learn(inv, tr, fit_links, counted=~is_val)
            pairs, X = self._block_and_featurize(inv, ic, tr, tc, mem, Memory.exclusion(inv, tr, fit_links, ~is_val))
            y = self._label(pairs, links_ti)
            on_val = is_val[pairs["t"].to_numpy()]
            booster, none_booster = self._fit_models(pairs, X, y, linked, ~on_val, " (validation)")
            self.empty_confidence_ = 1.0
            vp = pairs[on_val].reset_index(drop=True)
            _, v_links, v_dec = self._decide(vp, X[on_val].reset_index(drop=True), inv, tr, booster, none_booster)
            v_dec = v_dec[is_val[v_dec["t"].to_numpy()]]
            correct = self._set_correct(v_links, v_dec, links_ti)
            # a transfer without candidates is "pays nothing" only as often as validation says (blocking misses)
            no_cand = ~np.isin(v_dec["t"].to_numpy(), vp["t"].to_numpy())
            # (a pessimistic Beta(1, 2) prior: with no such transfer in validation it stays below 0.5, i.e. review)
            self.empty_confidence_ = float((correct[no_cand].sum() + 1) / (no_cand.sum() + 3))
            v_dec = v_dec.assign(confidence=np.where(no_cand, self.empty_confidence_, v_dec["confidence"].to_numpy()))
            self._validation = pd.DataFrame({"transfer_id": tr["transfer_id"].to_numpy()[v_dec["t"].to_numpy()],
                                             "confidence": v_dec["confidence"].to_numpy(), "correct": correct})
            self.auto_threshold_ = self._choose_threshold(v_dec["confidence"].to_numpy(), correct)
            auto = v_dec["confidence"].to_numpy() >= self.auto_threshold_
            summary.update({
                "validation_transfers": int(n_val),
                "validation_set_accuracy": float(correct.mean()),
                "validation_auto_rate": float(auto.mean()),
                "validation_auto_precision": float(correct[auto].mean()) if auto.any() else None,
            })
            if stages is not None:
                stages.update(1)
        else:
            self.auto_threshold_ = 1.0  # nothing to validate on: every decision goes to review
            self.empty_confidence_ = 1 / 3
            summary["validation_transfers"] = 0

        # --- 2. refit on everything; memory from all links, leave-one-out for the training pairs
        self.memory_ = Memory.learn(inv, tr, links_ti)
        pairs, X = self._block_and_featurize(inv, ic, tr, tc, self.memory_, Memory.exclusion(inv, tr, links_ti))
        y = self._label(pairs, links_ti)
        self.booster_, self.none_booster_ = self._fit_models(pairs, X, y, linked, np.ones(len(pairs), bool))
        if stages is not None:
            stages.update(1)
            stages.close()
        cand_ids = pd.DataFrame({"transfer_id": tr["transfer_id"].to_numpy()[pairs["t"].to_numpy()],
                                 "invoice_id": inv["invoice_id"].to_numpy()[pairs["i"].to_numpy()]})
        self.training_summary_ = {
            "n_transfers": int(n_t), "n_invoices": int(len(inv)), "n_links": int(len(links)),
            "n_links_unmatched_ids": int(len(links) - len(links_ti)), "n_pairs": int(len(pairs)),
            "n_positive_pairs": int(y.sum()), "blocking_recall_train": blocking_recall(cand_ids, links),
            **summary, "auto_threshold": float(self.auto_threshold_),
            "fit_seconds": round(time.perf_counter() - start, 3),
        }
        return self

    @staticmethod
    def _set_correct(links: pd.DataFrame, decisions: pd.DataFrame, links_ti: pd.DataFrame) -> np.ndarray:
        """Per decision row: is the chosen set exactly the true set (the empty set included)?"""
        key = lambda df: df.groupby("t")["i"].apply(lambda s: tuple(sorted(s)))
        pred, true = key(links), key(links_ti)
        tt = decisions["t"]
        p = pred.reindex(tt).map(lambda v: v if isinstance(v, tuple) else ())
        q = true.reindex(tt).map(lambda v: v if isinstance(v, tuple) else ())
        return (p.to_numpy() == q.to_numpy()).astype(bool) if len(tt) else np.zeros(0, bool)

    def _choose_threshold(self, conf: np.ndarray, correct: np.ndarray) -> float:
        """Lowest confidence c such that the transfers with confidence >= c are right with precision >= target.

        Never below MIN_AUTO_THRESHOLD: a few hundred validation transfers can show 99.5% precision down to
        absurd confidences by chance, and a set the model itself thinks more likely wrong is never automatic."""
        if len(conf) == 0:
            return 1.0
        order = np.argsort(-conf, kind="stable")
        c, ok = conf[order], correct[order].astype(np.float64)
        prec = np.cumsum(ok) / np.arange(1, len(ok) + 1)
        last_of_tie = np.r_[c[1:] != c[:-1], True]  # a threshold keeps all tied confidences together
        good = np.flatnonzero((prec >= self.target_precision) & last_of_tie)
        return max(float(c[good[-1]]), MIN_AUTO_THRESHOLD) if len(good) else 1.0

    # ----------------------------------------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "booster_"):
            raise RuntimeError("this Matcher is not fitted; call fit() or Matcher.load() first")

    def match(self, invoices: pd.DataFrame, transfers: pd.DataFrame) -> MatchResult:
        """Match ``transfers`` against ``invoices`` (all invoices that could still be open, any month)."""
        self._check_fitted()
        invoices, transfers = check_frame(invoices, "invoices"), check_frame(transfers, "transfers")
        inv, ic = prepare_invoices(invoices)
        tr, tc = prepare_transfers(transfers)
        pairs, X = self._block_and_featurize(inv, ic, tr, tc, self.memory_, None)
        scored, links, dec = self._decide(pairs, X, inv, tr, self.booster_, self.none_booster_)
        return self._result(scored, links, dec, inv, tr, self.auto_threshold_)

    @staticmethod
    def _result(scored, links, dec, inv, tr, threshold) -> MatchResult:
        tid, iid = tr["transfer_id"].to_numpy(), inv["invoice_id"].to_numpy()
        scored = scored.sort_values(["t", "probability"], ascending=[True, False], kind="stable")
        cands = pd.DataFrame({"transfer_id": tid[scored["t"].to_numpy()], "invoice_id": iid[scored["i"].to_numpy()],
                              "probability": scored["probability"].to_numpy(),
                              "rank": scored.groupby("t").cumcount().to_numpy() + 1})
        out_links = pd.DataFrame({"transfer_id": tid[links["t"].to_numpy()], "invoice_id": iid[links["i"].to_numpy()],
                                  "allocated_amount": links["allocated_amount"].to_numpy(np.float64),
                                  "confidence": links["confidence"].to_numpy(np.float64)})
        decisions = pd.DataFrame({"transfer_id": tid[dec["t"].to_numpy()], "n_invoices": dec["n_invoices"].to_numpy(),
                                  "confidence": dec["confidence"].to_numpy(np.float64)})
        # threshold 1.0 = nothing is safe enough (confidences are clipped below 1)
        decisions["decision"] = np.where(decisions["confidence"].to_numpy() >= threshold, "auto", "review")
        return MatchResult(links=out_links, decisions=decisions, candidates=cands.reset_index(drop=True))

    def predict(self, invoices: pd.DataFrame, transfers: pd.DataFrame) -> pd.DataFrame:
        return self.match(invoices, transfers).links

    def predict_proba_pairs(self, invoices: pd.DataFrame, candidates_frame: pd.DataFrame,
                            transfers: pd.DataFrame | None = None) -> pd.DataFrame:
        """Score given (transfer_id, invoice_id) pairs with the training feature code (for serving).

        The transfer columns come from ``transfers`` or, when it is None, from ``candidates_frame`` itself
        (one row per pair, transfer columns repeated). Features that look across a transfer's candidates are
        computed among the pairs given, so pass all of a transfer's candidates together.
        """
        self._check_fitted()
        if transfers is None:
            cols = [c.name for c in TABLES["transfers"] if c.name in candidates_frame.columns]
            transfers = candidates_frame[cols].drop_duplicates("transfer_id")
        invoices, transfers = check_frame(invoices, "invoices"), check_frame(transfers, "transfers")
        inv, ic = prepare_invoices(invoices)
        tr, tc = prepare_transfers(transfers)
        ti = pd.Series(np.arange(len(tr)), index=tr["transfer_id"])
        ii = pd.Series(np.arange(len(inv)), index=inv["invoice_id"])
        unknown = ~candidates_frame["transfer_id"].astype(str).isin(ti.index) | ~candidates_frame["invoice_id"].astype(str).isin(ii.index)
        if unknown.any():
            raise ValueError(f"{int(unknown.sum())} pair(s) name a transfer/invoice not given, e.g. "
                             f"{candidates_frame.loc[unknown, ['transfer_id', 'invoice_id']].head(3).values.tolist()}")
        pairs = pd.DataFrame({"t": ti[candidates_frame["transfer_id"].astype(str)].to_numpy(),
                              "i": ii[candidates_frame["invoice_id"].astype(str)].to_numpy()})
        X = pair_features(pairs, inv, ic, tr, tc, memory=self.memory_, n_jobs=self.n_jobs)
        out = candidates_frame[["transfer_id", "invoice_id"]].reset_index(drop=True).copy()
        out["probability"] = self._predict(self.booster_, X)
        return out

    # ----------------------------------------------------------------------------------------------------------
    def save(self, path) -> None:
        """A directory: both boosters as UBJSON and meta.json (params, threshold, features, memory). No pickle."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(path / MODEL_FILE))
        self.none_booster_.save_model(str(path / NONE_MODEL_FILE))
        meta = {
            "format_version": FORMAT_VERSION, "library_version": _library_version(), "xgboost_version": xgb.__version__,
            "params": self.get_params(), "auto_threshold_": float(self.auto_threshold_),
            "empty_confidence_": float(self.empty_confidence_),
            "feature_names_": list(self.feature_names_), "transfer_feature_names": list(TRANSFER_FEATURE_NAMES),
            "training_summary_": self.training_summary_,
            "memory": self.memory_.to_dict(),
        }
        (path / META_FILE).write_text(json.dumps(meta, indent=1, default=float))

    @classmethod
    def load(cls, path) -> "Matcher":
        path = Path(path)
        meta = json.loads((path / META_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: saved with format {meta.get('format_version')}, this library reads {FORMAT_VERSION}")
        if meta["feature_names_"] != FEATURE_NAMES or meta.get("transfer_feature_names") != TRANSFER_FEATURE_NAMES:
            raise ValueError(f"{path}: the model was trained with other features than this library computes; retrain it")
        m = cls(**meta["params"])
        m.auto_threshold_ = float(meta["auto_threshold_"])
        m.empty_confidence_ = float(meta["empty_confidence_"])
        m.feature_names_ = list(meta["feature_names_"])
        m.training_summary_ = meta["training_summary_"]
        m.memory_ = Memory.from_dict(meta["memory"])
        m.booster_, m.none_booster_ = xgb.Booster(), xgb.Booster()
        m.booster_.load_model(str(path / MODEL_FILE))
        m.none_booster_.load_model(str(path / NONE_MODEL_FILE))
        for b in (m.booster_, m.none_booster_):
            b.set_param({"nthread": m.n_jobs})
        return m
