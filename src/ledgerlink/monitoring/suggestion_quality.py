"""Production quality from the tags: a month's suggestions compared with what the finance team tagged later.

This is the figure the finance team cares about: of the transfers the model matched automatically, how many did
the humans confirm. A suggestion is judged per transfer, as the auto-match threshold was chosen (the matcher's
``target_precision``): it is right when its set of invoices is exactly the tagged set, the empty set included (a
transfer the model said pays nothing, which pays nothing).

- ``auto_precision``: right auto transfers / auto transfers that were tagged (None when there was no auto one);
- ``auto_recall``: right auto transfers / all tagged transfers of the month (the share of the month's work the
  model did correctly on its own; a tagged transfer it never saw counts as not done);
- ``review_share``: review transfers / suggested transfers;
- ``auto_amount``: the allocated amount of the auto suggestions (absolute), ``auto_amount_confirmed`` of the
  right ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import pandas as pd

from ..evaluation.metrics import transfer_outcomes


@dataclass
class SuggestionQuality:
    """One model version's suggestions of one month, scored against the month's tags."""

    auto_precision: float | None
    auto_recall: float
    review_share: float
    auto_amount: float
    auto_amount_confirmed: float
    suggested: int  # transfers with a suggestion
    tagged: int  # transfers of the collected month
    auto: int  # auto transfers among the tagged ones
    auto_confirmed: int
    review: int
    not_tagged: int  # suggested transfers missing from the collected month
    not_suggested: int  # tagged transfers that got no suggestion

    def to_dict(self) -> dict:
        out = asdict(self)
        if out["auto_precision"] is None:  # a metadata store holds no None: absent means "no auto suggestion"
            del out["auto_precision"]
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> "SuggestionQuality":
        names = {f.name for f in fields(cls)}
        return cls(**{"auto_precision": None, **{k: v for k, v in raw.items() if k in names}})


def score_suggestions(suggestions: pd.DataFrame, transfers: pd.DataFrame, links: pd.DataFrame) -> SuggestionQuality:
    """``suggestions``: one model version's rows of the month (``suggested_links``); ``transfers``/``links``: the
    month as collected with its tags. Whether a transfer's set is exactly right is decided by the evaluation's own
    ``transfer_outcomes``, so production's figure and the frozen-test ``auto_match_precision`` mean the same thing."""
    if suggestions[["model_name", "model_version"]].drop_duplicates().shape[0] > 1:
        raise ValueError("score one model version's suggestions at a time (group by model_name, model_version)")
    tagged_ids = pd.Index(transfers["transfer_id"].unique())
    rows = suggestions.assign(
        _allocated=pd.to_numeric(suggestions["allocated_amount"], errors="coerce").abs().fillna(0.0).astype(float)
    )
    per = rows.groupby("transfer_id", sort=False).agg(decision=("decision", "first"), allocated=("_allocated", "sum"))
    per["tagged"] = per.index.isin(tagged_ids)
    scored = per[per["tagged"]]
    predicted = rows.loc[rows["invoice_id"].notna() & rows["transfer_id"].isin(scored.index)]
    outcomes = transfer_outcomes(
        predicted[["transfer_id", "invoice_id"]],
        links[["transfer_id", "invoice_id"]],
        pd.DataFrame({"transfer_id": scored.index}),
        scored["decision"].rename_axis("transfer_id").reset_index(),
    ).set_index("transfer_id")
    auto, right = outcomes["auto"], outcomes["exact"]
    n_auto, n_right = int(auto.sum()), int((auto & right).sum())
    confirmed = scored["allocated"].reindex(outcomes.index)[auto & right]
    is_auto = per["decision"].eq("auto")
    return SuggestionQuality(
        auto_precision=n_right / n_auto if n_auto else None,
        auto_recall=n_right / len(tagged_ids) if len(tagged_ids) else 0.0,
        review_share=float(per["decision"].eq("review").mean()) if len(per) else 0.0,
        auto_amount=float(per.loc[is_auto, "allocated"].sum()),
        auto_amount_confirmed=float(confirmed.sum()),
        suggested=int(len(per)),
        tagged=int(len(tagged_ids)),
        auto=n_auto,
        auto_confirmed=n_right,
        review=int(per["decision"].eq("review").sum()),
        not_tagged=int((~per["tagged"]).sum()),
        not_suggested=int((~tagged_ids.isin(per.index)).sum()),
    )


def score_month(
    suggestions: pd.DataFrame, transfers: pd.DataFrame, links: pd.DataFrame
) -> dict[tuple[str, str], SuggestionQuality]:
    """Every model version's suggestions of the month: (model_name, model_version) -> ``SuggestionQuality``."""
    out = {}
    for key, rows in suggestions.groupby(["model_name", "model_version"], sort=True):
        out[(str(key[0]), str(key[1]))] = score_suggestions(rows, transfers, links)
    return out


def month_tags(store, month: str) -> dict[str, pd.DataFrame]:
    """The collected month's transfers and links (the frozen test part too, when it is the test set's month)."""
    data = store.load_train([month])
    test = store.read_manifest().test
    if test is not None and test.get("month") == month:
        frozen = store.load_test()
        data = {t: pd.concat([data[t], frozen[t]], ignore_index=True) for t in ("transfers", "links")}
    return {"transfers": data["transfers"], "links": data["links"]}
