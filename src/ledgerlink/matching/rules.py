"""The rules baseline a finance team would write first: the exact invoice number is in the title AND the
amount is equal (the sum, when the title names several invoices). Anything else goes to review. Explained, each
link and decision gives the rule that fired (or why none did) in the words of ``reasons.py``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import reasons as R
from .base import BaseMatcher, MatchResult, check_frame, in_given_ids
from .candidates import generate_candidates
from .explain import InvoiceTexts, object_column
from .features import best_pair_view, heuristic_score, pair_features
from .normalize import Prepared
from .runtime import check_deadline, deadline_scope
from .tolerances import CENT, ISSUE_AFTER_BOOKING_DAYS


class RulesMatcher(BaseMatcher):
    """Same fit/match/predict API as ``Matcher``; fit is a no-op."""

    def __init__(self, lookback_days: int = 180):
        self.lookback_days = lookback_days

    def fit(self, invoices=None, transfers=None, links=None) -> "RulesMatcher":
        return self

    def match(
        self,
        invoices: pd.DataFrame,
        transfers: pd.DataFrame,
        *,
        deadline: float | None = None,
        explain: bool = False,
    ) -> MatchResult:
        with deadline_scope(deadline):
            return in_given_ids(self._match(invoices, transfers, explain), invoices, transfers)

    def _match(self, invoices: pd.DataFrame, transfers: pd.DataFrame, explain: bool = False) -> MatchResult:
        invoices, transfers = check_frame(invoices, "invoices"), check_frame(transfers, "transfers")
        check_deadline("input check")
        P = Prepared.of(invoices, transfers)
        inv, tr = P.inv, P.tr
        check_deadline("text preparation")
        # exact number: same alphanumerics once case, separators and diacritics are ignored
        hits = P.tr_chunks[["t", "alnum"]].merge(P.inv_chunks[["i", "alnum"]], on="alnum")[["t", "i"]].drop_duplicates()
        t, i = hits["t"].to_numpy(np.int64), hits["i"].to_numpy(np.int64)
        days = (
            (tr["booked_at"].to_numpy()[t] - inv["issued_at"].to_numpy()[i]).astype("timedelta64[D]").astype(np.int64)
        )
        hits = hits[(days >= -ISSUE_AFTER_BOOKING_DAYS) & (days <= self.lookback_days)].reset_index(drop=True)
        ta = tr["amount"].to_numpy()[hits["t"].to_numpy()]
        ia = inv["amount"].to_numpy()[hits["i"].to_numpy()]
        hits["ia"], hits["eq"] = ia, np.abs(ta - ia) < CENT
        g = hits.groupby("t")
        total, size = g["ia"].transform("sum").to_numpy(), g["ia"].transform("size").to_numpy()
        all_sum = np.abs(total - ta) < CENT * size
        # the named invoices sum to the amount -> all of them; else exactly one named invoice with equal amount
        n_eq = g["eq"].transform("sum").to_numpy()
        chosen = hits[all_sum | (~all_sum & hits["eq"].to_numpy() & (n_eq == 1))]
        tid, iid = tr["transfer_id"].to_numpy(), inv["invoice_id"].to_numpy()
        n_chosen = chosen.groupby("t").size()
        t_amount = tr["amount"].to_numpy()
        alloc = np.where(
            n_chosen.reindex(chosen["t"]).to_numpy() == 1, t_amount[chosen["t"].to_numpy()], chosen["ia"].to_numpy()
        )
        links = pd.DataFrame(
            {
                "transfer_id": tid[chosen["t"].to_numpy()],
                "invoice_id": iid[chosen["i"].to_numpy()],
                "allocated_amount": alloc.astype(np.float64),
                "confidence": 1.0,
            }
        )
        n_inv = n_chosen.reindex(np.arange(len(tr))).fillna(0).astype(np.int64).to_numpy()
        decisions = pd.DataFrame(
            {
                "transfer_id": tid,
                "n_invoices": n_inv,
                "confidence": (n_inv > 0).astype(np.float64),
                "decision": np.where(n_inv > 0, "auto", "review"),
            }
        )
        cands = pd.DataFrame(
            {
                "transfer_id": tid[hits["t"].to_numpy()],
                "invoice_id": iid[hits["i"].to_numpy()],
                "probability": 1.0,
                "rank": hits.groupby("t").cumcount().to_numpy() + 1,
            }
        )
        if explain:
            links, decisions = self._explain(P, InvoiceTexts.of(invoices), hits, chosen, links, decisions)
        return MatchResult(links=links.reset_index(drop=True), decisions=decisions, candidates=cands)

    @staticmethod
    def _explain(P: Prepared, texts: InvoiceTexts, hits, chosen, links, decisions):
        """The rule that fired, per link and decision; for a transfer it did not fire on, which half failed."""
        digits: dict[int, set[str]] = {}
        for t, d in zip(P.tr_chunks["t"].tolist(), P.tr_chunks["digits"].tolist()):
            digits.setdefault(t, set()).add(d)
        iid = P.inv["invoice_id"].to_numpy()
        ct, ci = chosen["t"].to_numpy(), chosen["i"].to_numpy()
        size = np.bincount(ct, minlength=len(P.tr))
        link_reasons = []
        for t, i in zip(ct.tolist(), ci.tolist()):
            number = R.rule_number(texts.number_of(i, digits.get(t, set())))
            link_reasons.append((number, "amount equal") if size[t] == 1 else (number, R.rule_sum(int(size[t]))))
        named: dict[int, list[str]] = {}
        equal = np.bincount(hits["t"].to_numpy(), weights=hits["eq"].to_numpy(), minlength=len(P.tr))
        for t, i in zip(hits["t"].tolist(), hits["i"].tolist()):
            named.setdefault(t, []).append(str(iid[i]))
        dec_reasons = []
        for t in range(len(P.tr)):
            if size[t] == 1:
                dec_reasons.append((R.RULE_MATCHED,))
            elif size[t] > 1:
                dec_reasons.append((R.RULE_MATCHED_SUM,))
            elif t in named and equal[t] > 1:
                dec_reasons.append((R.RULE_AMBIGUOUS.format(ids=", ".join(named[t][:3])),))
            elif t in named:
                dec_reasons.append((R.RULE_AMOUNT_DIFFERS.format(ids=", ".join(named[t][:3])),))
            else:
                dec_reasons.append((R.RULE_NO_NUMBER,))
        return links.assign(reasons=object_column(link_reasons)), decisions.assign(reasons=object_column(dec_reasons))

    def predict(self, invoices: pd.DataFrame, transfers: pd.DataFrame) -> pd.DataFrame:
        return self.match(invoices, transfers).links

    def pair_feature_frame(self, invoices: pd.DataFrame, transfers: pd.DataFrame) -> pd.DataFrame:
        """Drift view (``features.best_pair_view``) with the learnt families' feature code, since the rules read
        only two of those features (an exact number, an equal amount): blocking within ``lookback_days`` and pair
        features without memory (the rules learn none), the best candidate by the hand-weighted heuristic that
        ranks candidates for the rank features."""
        P = Prepared.of(check_frame(invoices, "invoices"), check_frame(transfers, "transfers"))
        pairs = generate_candidates(P, lookback_days=self.lookback_days)[["t", "i"]].reset_index(drop=True)
        X = pair_features(pairs, P)
        return best_pair_view(pairs, X, heuristic_score(X), P.tr["transfer_id"].to_numpy())
