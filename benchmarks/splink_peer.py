"""The peer in ``benchmarks/scale.py``: a link-only splink 5 model of transfers against invoices.

Built as a practitioner would build it for this data, with splink's own API (``SettingsCreator``, ``block_on``,
comparison levels, ``estimate_u_using_random_sampling``, ``estimate_m_from_pairwise_labels``, ``predict``) on
DuckDB. Both tables are standardised in DuckDB SQL into one schema:

- ``amount`` / ``amount_cents``;
- ``name``: the counterparty name folded to ASCII, lower case, punctuation and legal forms removed (the same
  legal-form list ledgerlink strips); a transfer's name is its payer's, or its title's words without one;
  ``name_tokens``: the name's words of 3+ letters that are rare among the invoices (at most ``MAX_DF``);
- ``ref_tokens``: reference tokens, the digits of each alphanumeric chunk with 3+ digits and each digit run of
  3+ digits without leading zeros (4-digit years left out); invoices read their number (or description),
  transfers their title; tokens shared by more than ``MAX_DF`` invoices are dropped (IDF cut, as ledgerlink's);
  ``ref_near``: the tokens with their one-deletion variants (a typo, transposition, missing digit);
- ``issued`` (invoices) and ``booked`` (transfers): a pair's day gap is ``booked - issued``.

Blocking (``blocking_rules_to_generate_predictions``): exact amount in cents, a shared reference token, a
shared rare name token (arrays exploded by splink). Comparisons: amount (exact, within the 2% fee tolerance,
a part payment 28-72%, else), reference (two shared tokens, one, one digit off the invoice's main number,
else), name (Jaro-Winkler 1.0 / 0.95 / 0.88 / 0.7, exact with term-frequency adjustment) and days between
issue and booking (-7..0, 0..14, 15..30, 31..60, 61..120, else).

Training on the same labelled history as ledgerlink: ``probability_two_random_records_match`` from the
training links over all training pairs, u by random sampling (1e7 pairs, seeded), m from the training links
as pairwise labels (supervised; EM on a blocking rule would throw the labels away). Then the decision rule is
tuned on the training data: each transfer takes its single best invoice (one invoice per transfer) if its match
probability reaches the threshold that maximises training pair F1.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import duckdb
import pandas as pd

MAX_DF = 50  # a token in more invoices than this blocks nothing (ledgerlink's ref_max_df / amount_max_df)
PRED_FLOOR = 1e-4  # pairs below this match probability are never chosen: not kept after predict
U_PAIRS = 1e7

_LEGAL = [
    "spolka z ograniczona odpowiedzialnoscia", "spolka akcyjna", "spolka komandytowa", "spolka jawna",
    "gesellschaft mit beschrankter haftung", "sp z o o", "sp z oo", "sp zoo", "sp z o", "sp k", "sp j", "s a",
    "gmbh co kg", "gmbh", "co kg", "kg", "ag", "ltd", "limited", "llc", "llp", "inc", "plc", "corp", "bv", "b v",
    "nv", "n v", "srl", "sarl", "sas", "spa", "oy", "ab", "as", "a s", "sro", "s r o", "kft", "doo", "sa", "se",
    "sp",
]  # fmt: skip


def _fold(col: str) -> str:
    """SQL: lower-case ASCII letters and digits, single spaces."""
    special = "translate({c}, 'łŁøØđĐßæÆ', 'lLoOdDsaA')".format(c=col)
    return f"trim(regexp_replace(lower(strip_accents({special})), '[^a-z0-9]+', ' ', 'g'))"


def _name(col: str) -> str:
    legal = "|".join(sorted(_LEGAL, key=len, reverse=True))
    return f"trim(regexp_replace(regexp_replace({_fold(col)}, '\\b({legal})\\b', ' ', 'g'), ' +', ' ', 'g'))"


def _tokens(text: str) -> str:
    """SQL: the reference tokens of ``text`` (see the module docstring)."""
    chunks = f"regexp_extract_all(lower(coalesce({text}, '')), '[a-z0-9]+(?:[/.\\-][a-z0-9]+)*')"
    chunk_digits = f"list_transform({chunks}, c -> regexp_replace(c, '[^0-9]', '', 'g'))"
    runs = f"list_transform(regexp_extract_all(coalesce({text}, ''), '[0-9]{{3,}}'), d -> ltrim(d, '0'))"
    return (
        f"list_distinct(list_filter(list_concat({chunk_digits}, {runs}), "
        f"d -> length(d) >= 3 and not regexp_full_match(d, '20[0-3][0-9]')))"
    )


def _deletions(tokens: str) -> str:
    """SQL: each token with its one-deletion variants (symmetric deletion: a typo, transposition, missing or extra
    digit leaves two numbers sharing a variant)."""
    variants = "list_transform(range(length(t)), k -> t[1:k] || t[k + 2:])"
    return f"nullif(list_distinct(flatten(list_transform({tokens}, t -> list_concat([t], {variants})))), [])"


def standardise(con: duckdb.DuckDBPyConnection, invoices: pd.DataFrame, transfers: pd.DataFrame) -> None:
    """Tables ``inv`` and ``tr`` in one schema (module docstring), rare tokens chosen on the invoices."""
    con.register("inv_raw", invoices)
    con.register("tr_raw", transfers)
    ref_text = "coalesce(nullif(invoice_number, ''), description)"
    con.execute(f"""
        create or replace table inv0 as select
            invoice_id as unique_id, amount, cast(round(amount * 100) as bigint) as amount_cents,
            {_name("coalesce(counterparty_name, '')")} as name,
            {_tokens(ref_text)} as ref_all,
            cast(issued_at as date) as issued, cast(null as date) as booked
        from inv_raw""")
    con.execute(f"""
        create or replace table tr0 as select
            transfer_id as unique_id, amount, cast(round(amount * 100) as bigint) as amount_cents,
            coalesce(nullif({_name("coalesce(counterparty_name, '')")}, ''),
                     trim(regexp_replace({_fold("coalesce(title, '')")}, '[0-9]+', ' ', 'g'))) as name,
            {_tokens("title")} as ref_all,
            cast(null as date) as issued, cast(booked_at as date) as booked
        from tr_raw""")
    # document frequencies over the invoices: tokens in more than MAX_DF of them block and compare nothing
    con.execute(f"""
        create or replace table ref_df as
        select tok, count(distinct unique_id) as n from (select unique_id, unnest(ref_all) as tok from inv0)
        group by tok having count(distinct unique_id) <= {MAX_DF}""")
    con.execute(f"""
        create or replace table name_df as
        select tok, count(*) as n from (
            select distinct unique_id, unnest(string_split(name, ' ')) as tok from inv0
        ) where length(tok) >= 3 group by tok having count(*) <= {MAX_DF}""")
    for side in ("inv", "tr"):
        con.execute(f"""
            create or replace table {side}_std as
            with refs as (
                select unique_id, list(tok order by tok) as ref_tokens
                from (select unique_id, unnest(ref_all) as tok from {side}0) semi join ref_df using (tok)
                group by unique_id),
            names as (
                select unique_id, list(tok order by tok) as name_tokens
                from (select distinct unique_id, unnest(string_split(name, ' ')) as tok from {side}0)
                semi join name_df using (tok)
                group by unique_id)
            select unique_id, amount, amount_cents, name, ref_tokens, {_deletions("ref_tokens")} as ref_near,
                name_tokens, issued, booked
            from {side}0 left join refs using (unique_id) left join names using (unique_id)""")


def settings(prior: float):
    import splink.comparison_level_library as cll
    from splink import SettingsCreator, block_on

    days = "date_diff('day', coalesce(issued_l, issued_r), coalesce(booked_l, booked_r))"
    amount_ratio = "abs(least(abs(amount_l), abs(amount_r)) / greatest(abs(amount_l), abs(amount_r)))"
    return SettingsCreator(
        link_type="link_only",
        probability_two_random_records_match=prior,
        blocking_rules_to_generate_predictions=[
            block_on("amount_cents"),
            block_on("ref_tokens", arrays_to_explode=["ref_tokens"]),
            block_on("name_tokens", arrays_to_explode=["name_tokens"]),
        ],
        comparisons=[
            {
                "output_column_name": "amount",
                "comparison_levels": [
                    cll.NullLevel("amount"),
                    cll.ExactMatchLevel("amount_cents"),
                    cll.CustomLevel(
                        f"sign(amount_l) = sign(amount_r) and {amount_ratio} >= 0.98", "within the fee tolerance"
                    ),
                    cll.CustomLevel(
                        f"sign(amount_l) = sign(amount_r) and {amount_ratio} between 0.28 and 0.72", "part payment"
                    ),
                    cll.ElseLevel(),
                ],
            },
            {
                "output_column_name": "reference",
                "comparison_levels": [
                    cll.CustomLevel("ref_tokens_l is null or ref_tokens_r is null", "no reference").configure(
                        is_null_level=True
                    ),
                    cll.CustomLevel("len(list_intersect(ref_tokens_l, ref_tokens_r)) >= 2", "two shared tokens"),
                    cll.CustomLevel("len(list_intersect(ref_tokens_l, ref_tokens_r)) >= 1", "one shared token"),
                    cll.CustomLevel("len(list_intersect(ref_near_l, ref_near_r)) >= 1", "one digit off"),
                    cll.ElseLevel(),
                ],
            },
            {
                "output_column_name": "name",
                "comparison_levels": [
                    cll.CustomLevel("name_l = '' or name_r = ''", "no name").configure(is_null_level=True),
                    cll.ExactMatchLevel("name").configure(tf_adjustment_column="name", tf_adjustment_weight=1.0),
                    cll.JaroWinklerLevel("name", 0.95),
                    cll.JaroWinklerLevel("name", 0.88),
                    cll.JaroWinklerLevel("name", 0.7),
                    cll.ElseLevel(),
                ],
            },
            {
                "output_column_name": "days",
                "comparison_levels": [
                    cll.CustomLevel(f"{days} is null", "no date").configure(is_null_level=True),
                    cll.CustomLevel(f"{days} between -7 and 0", "-7..0"),
                    cll.CustomLevel(f"{days} between 1 and 14", "1..14"),
                    cll.CustomLevel(f"{days} between 15 and 30", "15..30"),
                    cll.CustomLevel(f"{days} between 31 and 60", "31..60"),
                    cll.CustomLevel(f"{days} between 61 and 120", "61..120"),
                    cll.ElseLevel(),
                ],
            },
        ],
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )


def _linker(con, model):
    from splink import DuckDBAPI, Linker

    db = DuckDBAPI(connection=con)
    tables = [
        db.register("inv_std", dataset_display_name="inv"),
        db.register("tr_std", dataset_display_name="tr"),
    ]
    return db, Linker(tables, model, log_level=None)


def _best_per_transfer(con, predictions: str) -> pd.DataFrame:
    """Each transfer's best invoice (highest match weight) with its probability."""
    return con.execute(f"""
        select transfer_id, invoice_id, p from (
            select case when source_dataset_l = 'tr' then unique_id_l else unique_id_r end as transfer_id,
                   case when source_dataset_l = 'tr' then unique_id_r else unique_id_l end as invoice_id,
                   match_probability as p,
                   row_number() over (partition by transfer_id order by match_weight desc, invoice_id) as k
            from {predictions}) where k = 1""").df()


def _pairs(con, predictions: str) -> pd.DataFrame:
    return con.execute(f"""
        select case when source_dataset_l = 'tr' then unique_id_l else unique_id_r end as transfer_id,
               case when source_dataset_l = 'tr' then unique_id_r else unique_id_l end as invoice_id
        from {predictions}""").df()


def _best_threshold(best: pd.DataFrame, links: pd.DataFrame) -> float:
    """The probability threshold on each transfer's best invoice that maximises pair F1 on ``links``."""
    truth = set(zip(links["transfer_id"], links["invoice_id"]))
    b = best.assign(ok=[k in truth for k in zip(best["transfer_id"], best["invoice_id"])]).sort_values(
        "p", ascending=False
    )
    tp = b["ok"].cumsum().to_numpy()
    n = pd.RangeIndex(1, len(b) + 1).to_numpy()
    f1 = 2 * tp / (n + len(truth))
    k = int(f1.argmax())
    return float(b["p"].iloc[k])


def fit(invoices: pd.DataFrame, transfers: pd.DataFrame, links: pd.DataFrame, model_path: Path) -> dict:
    """Train on labelled history; write the splink model (JSON) with the tuned threshold beside it."""
    logging.getLogger("splink").setLevel(logging.WARNING)
    con = duckdb.connect()
    standardise(con, invoices, transfers)
    prior = len(links) / max(len(invoices) * len(transfers), 1)
    db, linker = _linker(con, settings(prior))
    linker.training.estimate_u_using_random_sampling(max_pairs=U_PAIRS, seed=0)
    labels = pd.DataFrame(
        {
            "source_dataset_l": "inv",
            "unique_id_l": links["invoice_id"].astype(str).to_numpy(),
            "source_dataset_r": "tr",
            "unique_id_r": links["transfer_id"].astype(str).to_numpy(),
        }
    )
    linker.training.estimate_m_from_pairwise_labels(
        linker.table_management.register_labels_table(db.register(labels, dataset_display_name="labels"))
    )
    pred = linker.inference.predict(threshold_match_probability=PRED_FLOOR, warning_mode="never")
    threshold = _best_threshold(_best_per_transfer(con, pred.physical_name), links)
    model = linker.misc.save_model_to_json()
    model_path.write_text(json.dumps({"splink": model, "threshold": threshold}))
    return {"threshold": threshold, "prior": prior}


def match(invoices: pd.DataFrame, transfers: pd.DataFrame, model_path: Path) -> dict:
    """(links, candidates) of a new month: each transfer's best invoice above the threshold, and every blocked
    pair (for blocking recall)."""
    logging.getLogger("splink").setLevel(logging.WARNING)
    saved = json.loads(model_path.read_text())
    con = duckdb.connect()
    standardise(con, invoices, transfers)
    _, linker = _linker(con, saved["splink"])
    pred = linker.inference.predict(warning_mode="never")
    best = _best_per_transfer(con, pred.physical_name)
    links = best[best["p"] >= saved["threshold"]][["transfer_id", "invoice_id"]].reset_index(drop=True)
    return {"links": links, "candidates": _pairs(con, pred.physical_name)}
