"""The ``Matcher`` estimator: blocking -> pair features -> XGBoost pair model -> set model -> set choice.

fit() computes the candidate pairs and their features once, with memory learnt from all training links and
each training transfer's own contribution left out (leave-one-out), so a training pair sees memory as an
unseen transfer would. The transfers are split in ``n_folds`` folds (by id, seeded) and the pair model is
cross-fitted: each fold's pairs are scored by a model trained on the other folds, with early stopping on
them. These out-of-fold probabilities train the *set model* (``sets.py``: which whole set of invoices, the
empty set included, the transfer pays) and, cross-fitted again, give out-of-fold decisions on every training
transfer, on which ``auto_threshold_`` is chosen: the lowest confidence at which the decisions above it reach
``target_precision``. At match time the fold models' probabilities are averaged, so the set
model and the threshold see probabilities like the ones they were fitted on (a model refitted on all data is
more confident than its out-of-fold self, which would make the threshold too lenient).
Transfers without any candidate get ``empty_confidence_``: how often such a training transfer paid nothing.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.contract import TABLES
from ..evaluation.metrics import blocking_recall
from .arrays import run_starts, with_column
from .base import BaseMatcher, MatchResult, booking_batches, check_frame, in_given_ids
from .candidates import InvoiceIndex, generate_candidates
from .explain import InvoiceTexts, Trace, explain_batch
from .features import FEATURE_NAMES, best_pair_view, pair_features
from .inplace import DensePredictor
from .memory import Memory
from .normalize import Prepared
from .parallel import available_cpus, match_batches
from .runtime import check_deadline, current_deadline, deadline_scope, progress, xgboost
from .sets import SET_FEATURE_NAMES, SET_PAIR_COLUMNS, choose_sets, enumerate_sets, named_rows, set_features, set_labels
from .tolerances import FEE_TOLERANCE

FORMAT_VERSION = 2
MIN_AUTO_THRESHOLD = 0.5
PAIR_MODEL_FILE = "pair_model_{k}.ubj"
SET_MODEL_FILE = "set_model.ubj"
META_FILE = "meta.json"
# Transfers whose pair features are computed at a time (``Matcher._pair_features``): a feature is a pair's or its
# transfer's, so the rows are the same in chunks; the temporaries of one call over a 50k-transfer batch (1.4M
# pairs) peaked 0.84 GB above its start, on top of the matrix itself. The golden check passes with chunks of 100.
FEATURE_CHUNK = 4096
SET_ROUNDS, SET_DEPTH = 150, 4
# Predictions of at most so many rows run on one thread (``Matcher._small_predictor``): xgboost splits rows in blocks
# of 64 per thread, so a /match request's 20-100 pairs and their sets leave the second thread idle or nearly so.
SMALL_PREDICT_ROWS = 256
_SMALL_PREDICTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # booster -> (one-thread copy, names)
_SMALL_LOCK = threading.Lock()

xgb = xgboost()  # after the thread settings (runtime)


def _library_version() -> str:
    try:
        from importlib.metadata import version

        return version("ledgerlink")
    except Exception:  # running from a source tree
        return "0+unknown"


class _TqdmCallback(xgb.callback.TrainingCallback):
    def __init__(self, bar):
        self.bar = bar

    def after_iteration(self, model, epoch, evals_log):
        self.bar.update(1)
        return False


class Matcher(BaseMatcher):
    """Learnt transfer -> invoice(s) matcher (scikit-learn style estimator).

    ``validation_fraction`` is kept for compatibility: 0 skips cross-fitting (one pair model, no set model,
    ``auto_threshold_`` = 1: every decision goes to review); any other value cross-fits on ``n_folds`` folds.
    ``n_jobs``: threads (xgboost, string comparisons); ``n_workers``: processes ``match`` spreads a month's
    batches over (None: one per CPU this process may use; 1: none, everything in this process).
    """

    # Whether the family reads the invoices' ``text`` column (the text models do): match's worker processes get the
    # invoice frame without it otherwise (36 MB per worker at 301k open invoices).
    reads_invoice_text = False
    # Whether the family adds pair features of its own (``_extra_features``: the text models' score, computed over
    # all of a call's pairs at once): match then computes every feature before the pair model scores them, instead
    # of scoring FEATURE_CHUNK transfers at a time (``_scored_features``).
    adds_pair_features = False

    def __init__(
        self,
        max_candidates=20,
        max_candidates_weak=100,
        lookback_days=180,
        n_estimators=400,
        max_depth=6,
        learning_rate=0.08,
        target_precision=0.995,
        validation_fraction=0.2,
        n_folds=2,
        early_stopping_rounds=40,
        peel_confidence=0.9,
        batch_size=50000,
        random_state=0,
        n_jobs=2,
        show_progress=False,
        n_workers=None,
    ):
        self.max_candidates = max_candidates
        self.max_candidates_weak = max_candidates_weak
        self.lookback_days = lookback_days
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.target_precision = target_precision
        self.validation_fraction = validation_fraction
        self.n_folds = n_folds
        self.early_stopping_rounds = early_stopping_rounds
        self.peel_confidence = peel_confidence
        self.batch_size = batch_size
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.show_progress = show_progress
        self.n_workers = n_workers

    # ----------------------------------------------------------------------------------------------------------
    # the steps fit and match share

    def _block_and_featurize(self, P: Prepared, memory, exclude):
        pairs = self._block(P, memory, exclude)
        return pairs, self._featurize(pairs, P, memory, exclude)

    def _block(self, P: Prepared, memory, exclude, scopes=(None, None), invoice_index=None) -> pd.DataFrame:
        """Candidate pairs (t, i); ``scopes``: (invoice, transfer) problem numbers when several are matched at once;
        ``invoice_index``: the invoices' blocking index when the same invoices are blocked batch after batch."""
        c = generate_candidates(
            P,
            memory=memory,
            exclude=exclude,
            max_candidates=self.max_candidates,
            max_candidates_weak=self.max_candidates_weak,
            lookback_days=self.lookback_days,
            inv_scope=scopes[0],
            tr_scope=scopes[1],
            invoice_index=invoice_index,
        )
        return pd.DataFrame({"t": c["t"].to_numpy(), "i": c["i"].to_numpy()})  # pandas' take of two columns: 0.3 ms

    def _featurize(self, pairs, P: Prepared, memory, exclude, fold=None):
        X = self._pair_features(pairs, P, memory, exclude)
        return self._extra_features(pairs, P, X, fold)

    def _pair_features(self, pairs, P: Prepared, memory, exclude) -> pd.DataFrame:
        """``pair_features`` of ``pairs``, FEATURE_CHUNK transfers at a time, written into one float32 matrix."""
        if len(P.tr) <= FEATURE_CHUNK:
            return pair_features(pairs, P, memory=memory, exclude=exclude, n_jobs=self.n_jobs)
        values = np.empty((len(pairs), len(FEATURE_NAMES)), np.float32)
        for rows, part in self._feature_chunks(pairs, P, memory, exclude):
            values[rows] = part
        return pd.DataFrame(values, columns=FEATURE_NAMES, copy=False)

    def _feature_chunks(self, pairs, P: Prepared, memory, exclude):
        """(rows of ``pairs``, their ``pair_features`` as a float32 matrix) for each FEATURE_CHUNK transfers."""
        t = pairs["t"].to_numpy()
        for lo in range(0, len(P.tr), FEATURE_CHUNK):
            rows = np.flatnonzero((t >= lo) & (t < lo + FEATURE_CHUNK))
            part = pair_features(pairs.iloc[rows], P, memory=memory, exclude=exclude, n_jobs=self.n_jobs)
            yield rows, part.to_numpy(np.float32)

    def _scored_features(self, pairs, P: Prepared, keep: list[str] | None = None) -> tuple[pd.DataFrame, np.ndarray]:
        """(pair features, ``_pair_proba``) of ``pairs`` at match time; ``keep``: the feature columns the caller
        reads (None: all), the only ones returned for more than FEATURE_CHUNK transfers. The pair model scores the
        features FEATURE_CHUNK transfers at a time and only the kept columns of each chunk are stored: the whole
        matrix of a 50k-transfer batch of a 100k month (1.71M pairs x 57 features, 373 MB float32) was held from the
        features through the set choice and second pass, which read 26 of them (``SET_PAIR_COLUMNS``, 170 MB). A
        prediction is row by row, so ``p`` is the same to the bit (golden check; tested with small chunks). A family
        that adds pair features of its own (``adds_pair_features``) computes them over all the pairs at once."""
        if self.adds_pair_features or len(P.tr) <= FEATURE_CHUNK:
            X = self._featurize(pairs, P, self.memory_, None)
            check_deadline("pair features")
            p = self._pair_proba(X)
            check_deadline("pair model")
            narrow = keep is not None and len(P.tr) > FEATURE_CHUNK  # a request's few pairs: selecting costs more
            return (X[keep] if narrow else X), p
        names = list(FEATURE_NAMES) if keep is None else list(keep)
        where = {c: k for k, c in enumerate(FEATURE_NAMES)}
        cols = [where[c] for c in names]
        values = np.empty((len(pairs), len(names)), np.float32)
        p = np.empty(len(pairs))
        for rows, part in self._feature_chunks(pairs, P, self.memory_, None):
            check_deadline("pair features")
            p[rows] = self._pair_proba(pd.DataFrame(part, columns=FEATURE_NAMES, copy=False))
            check_deadline("pair model")
            values[rows] = part[:, cols]
        return pd.DataFrame(values, columns=names, copy=False), p

    def _extra_features(self, pairs, P: Prepared, X, fold=None):
        """Hook for families that add pair features (the transformer family adds a text score). ``fold`` (per
        transfer, in fit only): score each transfer with the fold model that did not train on it."""
        return X

    def set_threads(self, n_jobs: int) -> None:
        """Run on ``n_jobs`` threads from now on (xgboost included); the answers do not depend on it."""
        self.n_jobs = int(n_jobs)
        for b in getattr(self, "pair_boosters_", []) + [getattr(self, "set_booster_", None)]:
            if b is not None:
                b.set_param({"nthread": self.n_jobs})

    def _xgb_params(self, depth=None) -> dict:
        return {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "tree_method": "hist",
            "max_depth": depth or self.max_depth,
            "learning_rate": self.learning_rate,
            "nthread": self.n_jobs,
            "seed": self.random_state,
            "min_child_weight": 1.0,
            "subsample": 0.9,
            "colsample_bytree": 0.9,
            "max_bin": 128,
        }  # most features take few values; fewer bins halve the time per tree

    def _train(self, X, y, desc, rounds=None, depth=None, eval_set=None) -> xgb.Booster:
        """One booster; with ``eval_set`` (X, y) it stops when the held-out logloss has not improved for
        ``early_stopping_rounds`` rounds and keeps the best iteration."""
        rounds = rounds or self.n_estimators
        bar = progress(self.show_progress, rounds, desc)
        try:
            dtrain = xgb.DMatrix(X.to_numpy(np.float32), label=y, feature_names=list(X.columns), nthread=self.n_jobs)
            kw = {}
            if eval_set is not None and self.early_stopping_rounds and len(eval_set[1]):
                dval = xgb.DMatrix(
                    eval_set[0].to_numpy(np.float32),
                    label=eval_set[1],
                    feature_names=list(X.columns),
                    nthread=self.n_jobs,
                )
                kw = {
                    "evals": [(dval, "val")],
                    "early_stopping_rounds": self.early_stopping_rounds,
                    "verbose_eval": False,
                }
            booster = xgb.train(
                self._xgb_params(depth),
                dtrain,
                num_boost_round=rounds,
                callbacks=[_TqdmCallback(bar)] if bar is not None else None,
                **kw,
            )
            if kw:
                booster = booster[: booster.best_iteration + 1]
            return booster
        finally:
            if bar is not None:
                bar.close()

    def _predict(self, booster: xgb.Booster, X: pd.DataFrame) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        small, names = self._small_predictor(booster)
        same = len(names) == X.shape[1] and all(a == b for a, b in zip(names, X.columns))
        values = (X if same else X[names]).to_numpy(np.float32)
        if len(X) <= SMALL_PREDICT_ROWS:
            return small.predict(values).astype(np.float64)
        return booster.inplace_predict(values).astype(np.float64)

    @staticmethod
    def _small_predictor(booster: xgb.Booster) -> tuple[DensePredictor, list[str]]:
        """(a one-thread copy of ``booster`` behind a ``DensePredictor``, its feature names), made once per booster
        and kept beside it (not on the matcher, whose attributes are its parameters and what fit learns). A
        prediction is row by row, so the copy's answers are the booster's; with few rows a second thread only has to
        be woken and waited for (passive OpenMP waiting, ``runtime``): 3 predictions of one /match request on 2 busy
        cores, ~0.28 -> ~0.23 ms each, and ~0.09 ms less each without a new proxy per call (``inplace``). The names
        are read from the booster once, not on every call."""
        with _SMALL_LOCK:
            entry = _SMALL_PREDICTORS.get(booster)
            if entry is None:
                small = booster.copy()
                small.set_param({"nthread": 1})
                entry = _SMALL_PREDICTORS[booster] = (DensePredictor(small), list(booster.feature_names or []))
            return entry

    def _pair_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Mean probability of the fold models (the models the set model was trained behind)."""
        if len(X) == 0:
            return np.zeros(0)
        return np.mean([self._predict(b, X) for b in self.pair_boosters_], axis=0)

    @staticmethod
    def _groups(pairs, inv) -> np.ndarray:
        nk = inv["name_key"].to_numpy()[pairs["i"].to_numpy()]
        return np.where(nk != "", pd.factorize(nk)[0], -1)

    def _sets(self, pairs, X, p, P: Prepared):
        t, ia = pairs["t"].to_numpy(), P.inv["amount"].to_numpy()[pairs["i"].to_numpy()]
        ta, group = P.tr["amount"].to_numpy(), self._groups(pairs, P.inv)
        named = named_rows(X)
        table = enumerate_sets(t, p, ia, ta, group, named=named, completer=X["completes_named_exact"].to_numpy() > 0)
        check_deadline("set enumeration")
        SX = set_features(table, t, p, ia, ta, group, X)
        check_deadline("set features")
        return table, SX

    def _decide(self, pairs, X, p, P: Prepared, score_sets=None, rescore=None, trace=None):
        """Choose each transfer's set from pair probabilities ``p``: set model, conflicts, then a second pass.

        ``score_sets(SX, set_t)`` -> q (None: no set model, independent pair probabilities decide);
        ``rescore(pairs)`` -> (X, p) of the second pass's pairs (X: at least the columns the set choice reads): the
        invoices that
        transfers decided with confidence >= ``peel_confidence`` settle are taken out of the other transfers'
        candidates, which are then scored and decided again. A contractor's open invoices that this batch pays
        elsewhere no longer hide which of them a transfer without a number pays (same-amount subscriptions,
        multi-invoice sets). ``trace`` (``explain.Trace``): keeps what each pass computed, to explain the choice."""
        scored = with_column(pairs, "probability", p)
        if score_sets is None:
            from .assignment import assign

            tr = P.tr
            links, dec = assign(
                scored, tr["amount"].to_numpy(), P.inv["amount"].to_numpy(), len(tr), booked=tr["booked_at"].to_numpy()
            )
            if trace is not None:
                trace.add(pairs, X, p)
        else:
            links, dec = self._choose(pairs, X, p, P, score_sets, trace)
            check_deadline("set choice")
            if rescore is not None and self.peel_confidence < 1:
                links, dec = self._second_pass(pairs, links, dec, P, score_sets, rescore, trace)
        no_cand = ~np.isin(dec["t"].to_numpy(), pairs["t"].to_numpy())
        dec["confidence"] = np.where(no_cand, self.empty_confidence_, dec["confidence"].to_numpy())
        return scored, links, dec

    def _choose(self, pairs, X, p, P: Prepared, score_sets, trace=None):
        table, SX = self._sets(pairs, X, p, P)
        q = score_sets(SX, table.sets["t"].to_numpy())
        check_deadline("set model")
        if trace is not None:
            trace.add(pairs, X, p, table, SX, q)
        return choose_sets(
            table,
            q,
            pairs["t"].to_numpy(),
            pairs["i"].to_numpy(),
            p,
            P.tr["amount"].to_numpy(),
            P.inv["amount"].to_numpy(),
            len(P.tr),
            booked=P.tr["booked_at"].to_numpy(),
        )

    def _second_pass(self, pairs, links, dec, P: Prepared, score_sets, rescore, trace=None):
        conf = dec["confidence"].to_numpy()
        sure = np.nan_to_num(conf, nan=0.0) >= self.peel_confidence
        amount = np.abs(P.inv["amount"].to_numpy())
        used = np.zeros(len(P.inv))
        sl = sure[links["t"].to_numpy()]  # the sure transfers' links (numpy: a frame's row mask cost ~0.2 ms)
        np.add.at(used, links["i"].to_numpy()[sl], np.abs(links["allocated_amount"].to_numpy()[sl]))
        taken = used >= amount * (1 - FEE_TOLERANCE) - 0.01
        t, i = pairs["t"].to_numpy(), pairs["i"].to_numpy()
        unsure_pair = ~sure[t]
        lost = unsure_pair & taken[i] & (used[i] > 0)
        if not lost.any():
            return links, dec
        redo = np.zeros(len(P.tr), bool)
        redo[t[lost]] = True  # the unsure transfers that lost a candidate are decided again, together
        sub = pairs[redo[t] & ~(taken[i] & (used[i] > 0))].reset_index(drop=True)
        if trace is not None:
            trace.deciding = redo
        if len(sub):
            X2, p2 = rescore(sub)
            check_deadline("second pass: pair model")
            links2, dec2 = self._choose(sub, X2, p2, P, score_sets, trace)
            check_deadline("second pass: set choice")
        else:
            if trace is not None:
                trace.add(sub)
            links2 = links.iloc[:0]
            dec2 = dec.assign(n_invoices=0, confidence=np.nan)
        keep = links[~redo[links["t"].to_numpy()]]
        links = pd.concat([keep, links2[redo[links2["t"].to_numpy()]]], ignore_index=True).sort_values(["t", "i"])
        d2 = dec2.set_index("t")
        dec = dec.copy()
        rt = np.flatnonzero(redo)
        dec.loc[rt, "n_invoices"] = d2["n_invoices"].reindex(rt).fillna(0).astype(np.int64).to_numpy()
        dec.loc[rt, "confidence"] = d2["confidence"].reindex(rt).to_numpy()
        # a transfer left without any candidate pays nothing, as surely as "no candidate" does
        gone = rt[np.isnan(dec.loc[rt, "confidence"].to_numpy())]
        dec.loc[gone, "confidence"] = self.empty_confidence_
        return links.reset_index(drop=True), dec

    @staticmethod
    def _links_ti(links, P: Prepared) -> pd.DataFrame:
        inv, tr = P.inv, P.tr
        ti = pd.Series(np.arange(len(tr)), index=tr["transfer_id"])
        ii = pd.Series(np.arange(len(inv)), index=inv["invoice_id"])
        ok = links["transfer_id"].isin(ti.index) & links["invoice_id"].isin(ii.index)
        lk = links[ok]
        out = pd.DataFrame({"t": ti[lk["transfer_id"]].to_numpy(), "i": ii[lk["invoice_id"]].to_numpy()})
        # links without an allocation are taken to pay the whole invoice
        a = (
            pd.to_numeric(lk["allocated_amount"], errors="coerce").to_numpy()
            if "allocated_amount" in lk
            else np.full(len(lk), np.nan)
        )
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
        # one model per history, whatever order the rows were exported in (sampling and ties follow row order)
        invoices, transfers, links = (
            df.sort_values(key, kind="stable", ignore_index=True)
            for df, key in (
                (invoices, ["invoice_id"]),
                (transfers, ["transfer_id"]),
                (links, ["transfer_id", "invoice_id"]),
            )
        )
        P = Prepared.of(invoices, transfers)
        inv, tr = P.inv, P.tr
        links_ti = self._links_ti(links, P)
        if links_ti.empty:  # a model fitted on no link learns that nothing is ever paid
            raise ValueError(
                f"links: none of the {len(links)} link(s) joins a given transfer ({len(tr)}) to a given invoice "
                f"({len(inv)}); nothing to learn from. Pass the links of these transfers and the invoices they pay."
            )
        n_t = len(tr)
        self.memory_ = Memory.learn(inv, tr, links_ti)
        exclude = Memory.exclusion(inv, tr, links_ti)
        pairs = self._block(P, self.memory_, exclude)
        X = pair_features(pairs, P, memory=self.memory_, exclude=exclude, n_jobs=self.n_jobs)
        y = self._label(pairs, links_ti)
        t = pairs["t"].to_numpy()
        fold = self._folds(tr)
        X = self._fit_extra(pairs, X, y, P, fold)
        self.feature_names_ = list(X.columns)
        summary = self._fit_models(pairs, X, y, t, P, links_ti, exclude, fold)
        cand_ids = pd.DataFrame(
            {
                "transfer_id": tr["transfer_id"].to_numpy()[t],
                "invoice_id": inv["invoice_id"].to_numpy()[pairs["i"].to_numpy()],
            }
        )
        self.training_summary_ = {
            "n_transfers": int(n_t),
            "n_invoices": int(len(inv)),
            "n_links": int(len(links)),
            "n_links_unmatched_ids": int(len(links) - len(links_ti)),
            "n_pairs": int(len(pairs)),
            "n_positive_pairs": int(y.sum()),
            "blocking_recall_train": blocking_recall(cand_ids, links),
            **summary,
            "auto_threshold": float(self.auto_threshold_),
            "fit_seconds": round(time.perf_counter() - start, 3),
        }
        return self

    def _fit_extra(self, pairs, X, y, P: Prepared, fold) -> pd.DataFrame:
        """Hook: a family that adds pair features trains what computes them here, on the training pairs (``y``
        their labels, ``fold`` each transfer's fold), and returns ``X`` with its out-of-fold columns added."""
        return X

    def _folds(self, tr) -> np.ndarray:
        """Fold of each transfer: a seeded permutation of the sorted ids, so row order does not matter."""
        ids = np.sort(tr["transfer_id"].to_numpy())
        k = max(2, int(self.n_folds))
        fold_of = pd.Series(np.random.default_rng(self.random_state).permutation(len(ids)) % k, index=ids)
        return fold_of.reindex(tr["transfer_id"].to_numpy()).to_numpy()

    def _fit_models(self, pairs, X, y, t, P: Prepared, links_ti, exclude, fold) -> dict:
        """Cross-fit the pair model, fit the set model on out-of-fold sets, choose the threshold."""
        n_t = len(P.tr)
        has_cand = np.zeros(n_t, bool)
        has_cand[t] = True
        linked = np.zeros(n_t, bool)
        linked[links_ti["t"].to_numpy()] = True
        # "no candidate" means "pays nothing" as often as it did in training (Jeffreys prior: 0.5 with no data)
        nc = ~has_cand
        self.empty_confidence_ = float(((nc & ~linked).sum() + 0.5) / (nc.sum() + 1))
        if self.validation_fraction <= 0 or n_t < 4 * max(2, self.n_folds) or y.sum() == 0 or y.sum() == len(y):
            self.pair_boosters_ = [self._train(X, y, "xgboost pairs")]
            self.set_booster_ = None
            self.auto_threshold_ = 1.0  # nothing to validate on: every decision goes to review
            return {"validation_transfers": 0}
        pf = fold[t]
        oof = np.zeros(len(y))
        boosters, rounds = [], []
        bar = progress(self.show_progress, self.n_folds + 1, "Matcher.fit")
        for k in range(max(2, self.n_folds)):
            tr_rows, va_rows = pf != k, pf == k
            b = self._train(X[tr_rows], y[tr_rows], f"xgboost pairs fold {k}", eval_set=(X[va_rows], y[va_rows]))
            boosters.append(b)
            rounds.append(b.num_boosted_rounds())
            oof[va_rows] = self._predict(b, X[va_rows])
            if bar is not None:
                bar.update(1)
        self.pair_boosters_ = boosters
        # the set model on out-of-fold probabilities
        table, SX = self._sets(pairs, X, oof, P)
        z = set_labels(table, pairs["i"].to_numpy(), links_ti)
        sf = fold[table.sets["t"].to_numpy()]
        set_folds = []
        for k in range(max(2, self.n_folds)):  # cross-fitted too, so the threshold is chosen on unseen decisions
            set_folds.append(
                self._train(SX[sf != k], z[sf != k], f"xgboost sets fold {k}", rounds=SET_ROUNDS, depth=SET_DEPTH)
            )
        self.set_booster_ = self._train(SX, z, "xgboost sets", rounds=SET_ROUNDS, depth=SET_DEPTH)
        if bar is not None:
            bar.update(1)
            bar.close()

        def by_fold(models, X_, fold_of_rows):
            out = None  # one column per output (the set model has two)
            for k, b in enumerate(models):
                rows = fold_of_rows == k
                if rows.any():
                    pred = self._predict(b, X_[rows])
                    out = np.zeros((len(X_),) + pred.shape[1:]) if out is None else out
                    out[rows] = pred
            return out if out is not None else np.zeros(len(X_))

        def rescore_out_of_fold(sub):
            X2 = self._featurize(sub, P, self.memory_, exclude, fold)
            return X2, by_fold(boosters, X2, fold[sub["t"].to_numpy()])

        _, v_links, v_dec = self._decide(
            pairs,
            X,
            oof,
            P,
            score_sets=lambda SX_, st: by_fold(set_folds, SX_, fold[st]),
            rescore=rescore_out_of_fold,
        )
        correct = self._set_correct(v_links, v_dec, links_ti)
        conf = v_dec["confidence"].to_numpy()
        transfer_id = P.tr["transfer_id"].to_numpy()[v_dec["t"].to_numpy()]
        self.validation_ = pd.DataFrame({"transfer_id": transfer_id, "confidence": conf, "correct": correct})
        self.auto_threshold_ = self._choose_threshold(conf, correct)
        auto = conf >= self.auto_threshold_
        return {
            "validation_transfers": int(n_t),
            "pair_rounds": rounds,
            "n_sets": int(len(z)),
            "sets_with_truth": float(z[:, 0].sum() / max(n_t, 1)),
            "validation_set_accuracy": float(correct.mean()),
            "validation_auto_rate": float(auto.mean()),
            "validation_auto_precision": float(correct[auto].mean()) if auto.any() else None,
        }

    @staticmethod
    def _set_correct(links: pd.DataFrame, decisions: pd.DataFrame, links_ti: pd.DataFrame) -> np.ndarray:
        """Per decision row: is the chosen set exactly the true set (the empty set included)?"""

        def key(df):
            return df.groupby("t")["i"].apply(lambda s: tuple(sorted(s)))

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
        need = self.target_precision
        good = np.flatnonzero((prec >= need) & last_of_tie)
        return max(float(c[good[-1]]), MIN_AUTO_THRESHOLD) if len(good) else 1.0

    # ----------------------------------------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "pair_boosters_"):
            raise RuntimeError(
                f"this {type(self).__name__} is not fitted; call fit() or {type(self).__name__}.load() first"
            )

    def match(
        self,
        invoices: pd.DataFrame,
        transfers: pd.DataFrame,
        *,
        deadline: float | None = None,
        explain: bool = False,
    ) -> MatchResult:
        """Match ``transfers`` against ``invoices`` (all invoices that could still be open, any month).

        More than ``batch_size`` transfers are matched in batches of consecutive booking dates against the same
        prepared invoices, so memory stays bounded (an invoice claimed by transfers of two batches is not
        settled between them; a month's transfers fit in one batch up to ``batch_size``). The batches run on
        ``n_workers`` processes (``parallel``); the answers do not depend on how many.
        ``deadline``: an absolute ``time.monotonic()`` value; past it, ``MatchTimeout`` names the stage.
        ``explain``: links and decisions get a ``reasons`` column (``explain.py``); the rest is unchanged."""
        self._check_fitted()
        with deadline_scope(deadline):
            return in_given_ids(self._match(invoices, transfers, explain), invoices, transfers)

    def _match(self, invoices: pd.DataFrame, transfers: pd.DataFrame, explain: bool = False) -> MatchResult:
        invoices, transfers = check_frame(invoices, "invoices"), check_frame(transfers, "transfers")
        check_deadline("input check")
        P = Prepared.of(invoices, transfers)
        check_deadline("text preparation")
        texts = InvoiceTexts.of(invoices) if explain else None
        del invoices, transfers  # the checked copies: P holds what the batches need
        plan = booking_batches(P.tr["booked_at"].to_numpy(), self.batch_size)
        if len(plan) == 1:
            scored, links, dec = self._match_batch(P, texts=texts)
            return self._result(scored, links, dec, P, self.auto_threshold_)
        batches = [P.with_transfers(idx) for idx in plan]
        P = P.ids_only()  # what the result needs: the batches hold the rest, and hand it to the workers
        parts = self._match_batches(P, batches, texts)
        glob = lambda df, idx: df.assign(t=idx[df["t"].to_numpy()]) if len(df) else df  # noqa: E731
        scored = pd.concat([glob(p[0], idx) for p, idx in zip(parts, plan)], ignore_index=True)
        links = pd.concat([glob(p[1], idx) for p, idx in zip(parts, plan)], ignore_index=True)
        dec = pd.concat([glob(p[2], idx) for p, idx in zip(parts, plan)], ignore_index=True)
        links = links.sort_values(["t", "i"], kind="stable").reset_index(drop=True)
        dec = dec.sort_values("t", kind="stable").reset_index(drop=True)
        return self._result(scored, links, dec, P, self.auto_threshold_)

    def _match_batches(self, P: Prepared, batches: list[Prepared], texts: InvoiceTexts | None) -> list[tuple]:
        """(scored, links, decisions) of each batch (``batches``: the same invoices, each its own transfers), in
        order: on ``n_workers`` processes (``parallel``, which empties ``batches`` once the workers have the invoice
        side) or here. The invoices are tokenised for blocking once, for all batches; ``texts``: explain
        (``_match_batch``)."""
        workers = min(self.n_workers or available_cpus(), len(batches))
        bar = progress(self.show_progress, len(batches), f"match: {len(batches)} batches on {workers} process(es)")
        try:
            if workers > 1:
                return match_batches(self, batches, texts, workers, current_deadline(), bar)
            index = InvoiceIndex.of(batches[0], self.memory_)
            check_deadline("blocking index")
            parts = []
            for batch in batches:
                parts.append(self._match_batch(batch, texts=texts, invoice_index=index))
                if bar is not None:
                    bar.update(1)
            return parts
        finally:
            if bar is not None:
                bar.close()

    def match_many(
        self,
        problems: list[tuple[pd.DataFrame, pd.DataFrame]],
        *,
        deadline: float | None = None,
        explain: bool = False,
    ) -> list[MatchResult]:
        """Match independent (invoices, transfers) problems in one call, e.g. concurrent HTTP requests.

        Each answer is the one ``match(invoices, transfers)`` gives for that problem alone: blocking keeps the
        problems apart (``generate_candidates`` scopes), and two problems may offer the same invoice without
        either taking it from the other (conflicts are settled between rows; a problem's rows are its own).
        Everything runs once over all problems, so the fixed cost of a call is paid once per batch, not per
        request. A problem must fit in one batch (at most ``batch_size`` transfers); larger ones go to ``match``.
        ``deadline``: as in ``match``, for the whole call (all problems fail together); ``explain`` as in ``match``."""
        self._check_fitted()
        problems = list(problems)
        if not problems:
            return []
        with deadline_scope(deadline):
            results = self._match_many(problems, explain)
        return [in_given_ids(r, invoices, transfers) for r, (invoices, transfers) in zip(results, problems)]

    def _match_many(
        self, problems: list[tuple[pd.DataFrame, pd.DataFrame]], explain: bool = False
    ) -> list[MatchResult]:
        P, inv_scope, tr_scope = self._prepare_many(problems)
        check_deadline("input check and text preparation")
        texts = InvoiceTexts.of(pd.concat([i for i, _ in problems], ignore_index=True)) if explain else None
        # blocking keeps the problems apart: its statistics (how many invoices share a reference token, an amount,
        # a name word) and its date window are each problem's own
        pairs = self._block(P, self.memory_, None, (inv_scope, tr_scope))
        check_deadline("blocking")
        scored, links, dec = self._match_batch(P, pairs, texts)
        # one result, cut per problem: its frames are sorted by transfer, and a problem's transfers are contiguous
        bounds = [
            np.r_[0, np.cumsum(np.bincount(tr_scope[df["t"].to_numpy()], minlength=len(problems)))]
            for df in (scored, links, dec)
        ]
        result = self._result(scored, links, dec, P, self.auto_threshold_)
        frames = (result.candidates, result.links, result.decisions)
        cut = lambda df, b, k: df.iloc[b[k] : b[k + 1]].reset_index(drop=True)  # noqa: E731
        return [
            MatchResult(
                candidates=cut(frames[0], bounds[0], k),
                links=cut(frames[1], bounds[1], k),
                decisions=cut(frames[2], bounds[2], k),
            )
            for k in range(len(problems))
        ]

    def _prepare_many(self, problems):
        """Checked and prepared frames of all problems, one after the other, with each row's problem number.

        Problems with the same columns are checked and prepared together (one pandas pass for the batch).
        Otherwise each is prepared on its own: a column that one problem lacks must not appear, filled with
        nulls, in another (a missing ``counterparty_name`` makes the title stand in for the payer)."""
        for k, p in enumerate(problems):
            if not (isinstance(p, (tuple, list)) and len(p) == 2):
                raise TypeError(
                    f"problem {k}: expected an (invoices, transfers) pair of DataFrames, got {type(p).__name__}"
                )
            for frame, table in zip(p, ("invoices", "transfers")):
                if not isinstance(frame, pd.DataFrame):
                    raise TypeError(f"problem {k}: {table} must be a pandas DataFrame, got {type(frame).__name__}")
            if len(p[1]) > self.batch_size:
                raise ValueError(
                    f"problem {k}: {len(p[1])} transfers, more than batch_size={self.batch_size}; "
                    "match it alone with match(), which splits it into batches"
                )
        inv_scope = np.repeat(np.arange(len(problems)), [len(i) for i, _ in problems])
        tr_scope = np.repeat(np.arange(len(problems)), [len(t) for _, t in problems])
        same = len({tuple(i.columns) for i, _ in problems}) == 1 and len({tuple(t.columns) for _, t in problems}) == 1
        if same:
            try:
                invoices = check_frame(pd.concat([i for i, _ in problems], ignore_index=True), "invoices", inv_scope)
                transfers = check_frame(pd.concat([t for _, t in problems], ignore_index=True), "transfers", tr_scope)
            except ValueError as exc:
                raise ValueError(f"{exc} (checked {len(problems)} problem(s) together)") from exc
            return Prepared.of(invoices, transfers), inv_scope, tr_scope  # row by row: the same as per problem
        parts = []
        for k, (invoices, transfers) in enumerate(problems):
            try:
                parts.append(Prepared.of(check_frame(invoices, "invoices"), check_frame(transfers, "transfers")))
            except ValueError as exc:
                raise ValueError(f"problem {k}: {exc}") from exc
        return Prepared.concat(parts), inv_scope, tr_scope

    def _match_batch(self, P: Prepared, pairs=None, texts: InvoiceTexts | None = None, invoice_index=None):
        """(scored pairs, links, decisions) of one batch; ``pairs`` (t, i): the candidates, when already blocked.
        ``texts`` (the invoices as written): explain, links and decisions get their ``reasons``.
        ``invoice_index``: the invoices' blocking index shared by the batches of one call."""
        if pairs is None:
            pairs = self._block(P, self.memory_, None, invoice_index=invoice_index)
            check_deadline("blocking")
        keep = None if texts is not None else SET_PAIR_COLUMNS  # explaining reads every feature
        X, p = self._scored_features(pairs, P, keep)
        score_sets = None
        if self.set_booster_ is not None:
            score_sets = lambda SX, st: self._predict(self.set_booster_, SX)  # noqa: E731
        trace = Trace() if texts is not None else None
        scored, links, dec = self._decide(
            pairs, X, p, P, score_sets, rescore=lambda sub: self._scored_features(sub, P, keep), trace=trace
        )
        if trace is not None:
            links, dec = explain_batch(self, trace, P, texts, links, dec)
        return scored, links, dec

    @staticmethod
    def _result(scored, links, dec, P: Prepared, threshold) -> MatchResult:
        tid, iid = P.tr["transfer_id"].to_numpy(), P.inv["invoice_id"].to_numpy()
        st, si, sp = scored["t"].to_numpy(), scored["i"].to_numpy(), scored["probability"].to_numpy()
        o = np.lexsort((si, -sp, st))  # each transfer's candidates, most probable first
        st, si, sp = st[o], si[o], sp[o]
        start = run_starts(st)
        rank = np.arange(len(st)) - np.repeat(start, np.diff(np.r_[start, len(st)])) + 1
        cands = pd.DataFrame({"transfer_id": tid[st], "invoice_id": iid[si], "probability": sp, "rank": rank})
        out_links = pd.DataFrame(
            {
                "transfer_id": tid[links["t"].to_numpy()],
                "invoice_id": iid[links["i"].to_numpy()],
                "allocated_amount": links["allocated_amount"].to_numpy(np.float64),
                "confidence": links["confidence"].to_numpy(np.float64),
            }
        )
        decisions = pd.DataFrame(
            {
                "transfer_id": tid[dec["t"].to_numpy()],
                "n_invoices": dec["n_invoices"].to_numpy(),
                "confidence": dec["confidence"].to_numpy(np.float64),
            }
        )
        # threshold 1.0 = nothing is safe enough (confidences are clipped below 1)
        decisions["decision"] = np.where(decisions["confidence"].to_numpy() >= threshold, "auto", "review")
        if "reasons" in links.columns:  # explained
            out_links["reasons"] = links["reasons"].to_numpy()
            decisions["reasons"] = dec["reasons"].to_numpy()
        return MatchResult(links=out_links, decisions=decisions, candidates=cands.reset_index(drop=True))

    def predict(self, invoices: pd.DataFrame, transfers: pd.DataFrame) -> pd.DataFrame:
        return self.match(invoices, transfers).links

    def pair_feature_frame(self, invoices: pd.DataFrame, transfers: pd.DataFrame) -> pd.DataFrame:
        """Drift view (``features.best_pair_view``): blocking and pair features exactly as ``match``'s first pass
        computes them, one row per transfer: its candidate with the highest pair-model probability. For monitoring:
        the view of the training months against the view of a new month."""
        self._check_fitted()
        P = Prepared.of(check_frame(invoices, "invoices"), check_frame(transfers, "transfers"))
        pairs = self._block(P, self.memory_, None)
        X = self._featurize(pairs, P, self.memory_, None)
        return best_pair_view(pairs, X, self._pair_proba(X), P.tr["transfer_id"].to_numpy())

    def predict_proba_pairs(
        self, invoices: pd.DataFrame, candidates_frame: pd.DataFrame, transfers: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """Score given (transfer_id, invoice_id) pairs with the training feature code (pair probabilities only:
        no set choice; for callers that bring their own candidates and want scores).

        The transfer columns come from ``transfers`` or, when it is None, from ``candidates_frame`` itself
        (one row per pair, transfer columns repeated). Features that look across a transfer's candidates are
        computed among the pairs given, so pass all of a transfer's candidates together.
        """
        self._check_fitted()
        if transfers is None:
            cols = [c.name for c in TABLES["transfers"] if c.name in candidates_frame.columns]
            transfers = candidates_frame[cols].drop_duplicates("transfer_id")
        invoices, transfers = check_frame(invoices, "invoices"), check_frame(transfers, "transfers")
        P = Prepared.of(invoices, transfers)
        ti = pd.Series(np.arange(len(P.tr)), index=P.tr["transfer_id"])
        ii = pd.Series(np.arange(len(P.inv)), index=P.inv["invoice_id"])
        unknown = ~candidates_frame["transfer_id"].astype(str).isin(ti.index) | ~candidates_frame["invoice_id"].astype(
            str
        ).isin(ii.index)
        if unknown.any():
            raise ValueError(
                f"{int(unknown.sum())} pair(s) name a transfer/invoice not given, e.g. "
                f"{candidates_frame.loc[unknown, ['transfer_id', 'invoice_id']].head(3).values.tolist()}"
            )
        pairs = pd.DataFrame(
            {
                "t": ti[candidates_frame["transfer_id"].astype(str)].to_numpy(),
                "i": ii[candidates_frame["invoice_id"].astype(str)].to_numpy(),
            }
        )
        X = self._featurize(pairs, P, self.memory_, None)
        out = candidates_frame[["transfer_id", "invoice_id"]].reset_index(drop=True).copy()
        out["probability"] = self._pair_proba(X)
        return out

    # ----------------------------------------------------------------------------------------------------------
    def save(self, path) -> None:
        """A directory: the boosters as UBJSON and meta.json (params, threshold, features, memory). No pickle."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for k, b in enumerate(self.pair_boosters_):
            b.save_model(str(path / PAIR_MODEL_FILE.format(k=k)))
        if self.set_booster_ is not None:
            self.set_booster_.save_model(str(path / SET_MODEL_FILE))
        meta = {
            "format_version": FORMAT_VERSION,
            "library_version": _library_version(),
            "xgboost_version": xgb.__version__,
            "params": self.get_params(),
            "auto_threshold_": float(self.auto_threshold_),
            "empty_confidence_": float(self.empty_confidence_),
            "n_pair_models": len(self.pair_boosters_),
            "feature_names_": list(self.feature_names_),
            "set_feature_names": list(SET_FEATURE_NAMES),
            "training_summary_": self.training_summary_,
            "memory": self.memory_.to_dict(),
        }
        meta.update(self._save_extra(path))
        (path / META_FILE).write_text(json.dumps(meta, indent=1, default=float))

    def _save_extra(self, path: Path) -> dict:
        """Hook: a family saves its own parts into ``path`` and returns what meta.json should record."""
        return {}

    def _load_extra(self, path: Path, meta: dict) -> None:
        """Hook: the counterpart of ``_save_extra``."""

    @classmethod
    def _expected_features(cls, params: dict) -> list[str]:
        return list(FEATURE_NAMES)

    @classmethod
    def load(cls, path) -> "Matcher":
        path = Path(path)
        meta = json.loads((path / META_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: saved with format {meta.get('format_version')}, this library reads {FORMAT_VERSION}"
            )
        if (
            meta["feature_names_"] != cls._expected_features(meta["params"])
            or meta.get("set_feature_names") != SET_FEATURE_NAMES
        ):
            raise ValueError(
                f"{path}: the model was trained with other features than this library computes; retrain it"
            )
        m = cls(**meta["params"])
        m.auto_threshold_ = float(meta["auto_threshold_"])
        m.empty_confidence_ = float(meta["empty_confidence_"])
        m.feature_names_ = list(meta["feature_names_"])
        m.training_summary_ = meta["training_summary_"]
        m.memory_ = Memory.from_dict(meta["memory"])
        m.pair_boosters_ = []
        for k in range(int(meta["n_pair_models"])):
            b = xgb.Booster()
            b.load_model(str(path / PAIR_MODEL_FILE.format(k=k)))
            m.pair_boosters_.append(b)
        m.set_booster_ = None
        if (path / SET_MODEL_FILE).exists():
            m.set_booster_ = xgb.Booster()
            m.set_booster_.load_model(str(path / SET_MODEL_FILE))
        for b in m.pair_boosters_ + ([m.set_booster_] if m.set_booster_ is not None else []):
            b.set_param({"nthread": m.n_jobs})
        m._load_extra(path, meta)
        return m
