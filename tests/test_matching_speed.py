"""The matcher's two speed paths give the answers of the plain one: a month's batches on worker processes
(``matching.parallel``, with the invoices tokenised once per call) and one transfer with its candidates
(``matching.single.match_one``, the ``/match`` fast path)."""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time

import pandas as pd
import pytest

from ledgerlink.data.synthetic import SyntheticConfig, generate
from ledgerlink.deploy.payloads import candidate_invoices, match_request, pick_transfers
from ledgerlink.matching import Matcher, MatchTimeout
from ledgerlink.matching import candidates as C
from ledgerlink.matching.normalize import Prepared
from ledgerlink.matching.parallel import available_cpus, threads_per_process
from ledgerlink.matching.single import SingleMatch, match_one
from ledgerlink.serving.schemas import MatchRequest

WORLD = dict(seed=5, months=3, contractors=40, transfers_per_month=240)
FAST = dict(n_estimators=30, max_depth=4, n_jobs=2)


@pytest.fixture(scope="module")
def world():
    d = generate(SyntheticConfig(**WORLD))
    month = sorted(d["transfers"]["month"].unique())[-1]
    train = {k: d[k][d[k]["month"] < month] for k in ("invoices", "transfers", "links")}
    matcher = Matcher(**FAST).fit(train["invoices"], train["transfers"], train["links"])
    return d, month, matcher


def _frames(result):
    return (result.links, result.decisions, result.candidates)


def _same(a, b):
    for x, y in zip(_frames(a), _frames(b)):
        pd.testing.assert_frame_equal(x, y, check_exact=True)


def test_batches_on_worker_processes_give_the_sequential_answers(world, capsys):
    d, month, matcher = world
    inv, tr = d["invoices"], d["transfers"][d["transfers"]["month"] == month]
    params = {**matcher.get_params(), "batch_size": 60}  # 240 transfers: four batches
    seq, par = Matcher(**{**params, "n_workers": 1}), Matcher(**{**params, "n_workers": 2, "show_progress": True})
    for m in (seq, par):
        m.__dict__.update({k: v for k, v in matcher.__dict__.items() if k.endswith("_")})
    one = seq.match(inv, tr)
    _same(one, par.match(inv, tr))
    assert "match: 4 batches on 2 process(es)" in capsys.readouterr().err  # the progress bar names the batches
    assert one.decisions["transfer_id"].tolist() == sorted(tr["transfer_id"])  # every transfer, once
    # a batch's candidates are the same with the invoices tokenised once for all batches as without
    P = Prepared.of(inv, tr)
    index = C.InvoiceIndex.of(P, matcher.memory_)
    for k in range(0, len(tr), 60):
        batch = P.with_transfers(pd.RangeIndex(k, min(k + 60, len(tr))).to_numpy())
        pd.testing.assert_frame_equal(
            matcher._block(batch, matcher.memory_, None),
            matcher._block(batch, matcher.memory_, None, invoice_index=index),
            check_exact=True,
        )


def test_blocking_in_chunks_of_transfers_gives_the_candidates_of_blocking_at_once(world, monkeypatch):
    d, month, matcher = world
    from ledgerlink.matching.memory import Memory

    inv, tr = d["invoices"], d["transfers"][d["transfers"]["month"] == month]
    P = Prepared.of(inv, tr)
    index = C.InvoiceIndex.of(P, matcher.memory_)
    # as in fit: the training transfers with their own links left out of memory (positions renumbered per chunk)
    hist = {k: d[k][d[k]["month"] < month] for k in ("invoices", "transfers", "links")}
    H = Prepared.of(hist["invoices"], hist["transfers"])
    links_ti = matcher._links_ti(hist["links"], H)
    memory = Memory.learn(H.inv, H.tr, links_ti)
    exclude = Memory.exclusion(H.inv, H.tr, links_ti)
    assert len(H.tr) > 2 * 37 and len(exclude.own)
    whole = {
        "match": C.generate_candidates(P, matcher.memory_, invoice_index=index),
        "fit": C.generate_candidates(H, memory, exclude),
    }
    monkeypatch.setattr(C, "BLOCK_CHUNK", 37)  # many chunks, one of them short
    chunked = {
        "match": C.generate_candidates(P, matcher.memory_, invoice_index=index),
        "fit": C.generate_candidates(H, memory, exclude),
    }
    for case in whole:
        assert len(whole[case]) > 10 * len(tr) // 2
        pd.testing.assert_frame_equal(whole[case], chunked[case], check_exact=True)


def test_pair_features_in_chunks_of_transfers_are_those_of_one_call(world, monkeypatch):
    from ledgerlink.matching import model as M

    d, month, matcher = world
    P = Prepared.of(d["invoices"], d["transfers"][d["transfers"]["month"] == month])
    pairs = matcher._block(P, matcher.memory_, None).sample(frac=1.0, random_state=0)  # any order of rows
    whole = matcher._featurize(pairs, P, matcher.memory_, None)
    monkeypatch.setattr(M, "FEATURE_CHUNK", 37)
    pd.testing.assert_frame_equal(whole, matcher._featurize(pairs, P, matcher.memory_, None), check_exact=True)


def test_pair_model_scores_chunks_and_a_batch_keeps_only_what_the_set_choice_reads(world, monkeypatch):
    """At volume a batch's pair model scores FEATURE_CHUNK transfers at a time and keeps only SET_PAIR_COLUMNS:
    the same probabilities to the bit, the same columns, and the same answers, explained or not."""
    from ledgerlink.matching import model as M
    from ledgerlink.matching.sets import SET_PAIR_COLUMNS

    d, month, matcher = world
    inv, tr = d["invoices"], d["transfers"][d["transfers"]["month"] == month]
    P = Prepared.of(inv, tr)
    pairs = matcher._block(P, matcher.memory_, None).sample(frac=1.0, random_state=1)  # any order of rows
    whole = matcher._featurize(pairs, P, matcher.memory_, None)
    p_whole = matcher._pair_proba(whole)
    X, p = matcher._scored_features(pairs, P, SET_PAIR_COLUMNS)  # one chunk (240 transfers): everything kept
    assert list(X.columns) == list(whole.columns) and (p == p_whole).all()
    expected, explained = matcher.match(inv, tr), matcher.match(inv, tr, explain=True)
    monkeypatch.setattr(M, "FEATURE_CHUNK", 37)
    X, p = matcher._scored_features(pairs, P, SET_PAIR_COLUMNS)
    assert p.dtype == p_whole.dtype and (p == p_whole).all()
    pd.testing.assert_frame_equal(X, whole[SET_PAIR_COLUMNS], check_exact=True)
    X, p = matcher._scored_features(pairs, P)  # explaining: every column
    pd.testing.assert_frame_equal(X, whole, check_exact=True)
    assert (p == p_whole).all()
    _same(expected, matcher.match(inv, tr))
    chunked = matcher.match(inv, tr, explain=True)
    _same(explained, chunked)
    assert chunked.links["reasons"].map(len).gt(0).all()


def test_a_deadline_stops_the_workers_and_reaches_the_caller(world, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # this call's files only, not another match's
    d, month, matcher = world
    inv, tr = d["invoices"], d["transfers"][d["transfers"]["month"] == month]
    m = Matcher(**{**matcher.get_params(), "batch_size": 60, "n_workers": 2})
    m.__dict__.update({k: v for k, v in matcher.__dict__.items() if k.endswith("_")})
    start = time.monotonic()
    with pytest.raises(MatchTimeout) as info:
        m.match(inv, tr, deadline=time.monotonic() + 0.5)  # passes while the workers start or match
    assert info.value.stage and time.monotonic() - start < 120
    # nothing is left behind: no worker process, no pickled invoice side
    assert multiprocessing.active_children() == []
    assert not list(tmp_path.glob("ledgerlink-match-*"))


def test_worker_count_defaults_to_the_cpus_this_process_may_use(world):
    assert Matcher().n_workers is None and available_cpus() >= 1
    assert "n_workers" in Matcher().get_params()


@pytest.mark.parametrize(
    "files, quota",
    [
        ({"cpu.max": "150000 100000\n"}, 2),  # cgroup v2: 1.5 CPUs -> 2
        ({"cpu.max": "max 100000\n"}, None),  # no quota
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),  # no cgroup files
    ],
)
def test_available_cpus_honour_the_containers_cpu_quota(tmp_path, files, quota):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(str(tmp_path)) == (min(affinity, quota) if quota else affinity)
    assert threads_per_process(2, str(tmp_path)) == max(1, available_cpus(str(tmp_path)) // 2)
    assert threads_per_process(10**6, str(tmp_path)) == 1


def _requests(d, month, n, foreign=0):
    """``n`` transfers of ``month`` with their candidates (1, 5, 30 or 50, the invoices they pay among them), then
    ``foreign`` of them sent with the 30 candidates of another transfer in their currency (most pay none of those)."""
    recent = {**d, "transfers": d["transfers"][d["transfers"]["month"] == month]}
    picked = [t for _, t in pick_transfers(recent, "any", n).iterrows()]
    out = []
    for k, t in enumerate(picked):
        size = (1, 5, 30, 50)[k % 4]
        out.append(
            MatchRequest.model_validate(match_request(t, candidate_invoices(t, d["invoices"], d["links"], size)))
        )
    for t in picked[:foreign]:
        same = [o for o in picked[::-1] if o["currency"] == t["currency"] and o["transfer_id"] != t["transfer_id"]]
        cands = candidate_invoices(same[0], d["invoices"], d["links"], 30)
        out.append(MatchRequest.model_validate(match_request(t, cands)))
    return out


def test_the_fast_path_answers_as_match(world):
    d, month, matcher = world
    from ledgerlink.serving.answers import match_problem

    requests = _requests(d, month, 40, foreign=8)
    kinds = set()
    for req in requests:
        fast = match_one(matcher, req.transfer, req.candidates)
        general = SingleMatch.of_result(matcher.match(*match_problem(req)), req.transfer.transfer_id)
        assert fast == general, req.transfer.transfer_id  # decision, confidence, chosen, ranked: bit for bit
        kinds.add((bool(fast.chosen), len(fast.scored) < len(req.candidates)))
        # explained, as the service asks: the same answer, and the same reasons word for word
        fast = match_one(matcher, req.transfer, req.candidates, explain=True)
        general = matcher.match(*match_problem(req), explain=True)
        assert fast == SingleMatch.of_result(general, req.transfer.transfer_id), req.transfer.transfer_id
        assert fast.reasons and all(why for *_, why in fast.chosen)
    assert len(kinds) >= 3  # paying and paying nothing; some candidates ruled out by blocking and none


def test_the_fast_path_keeps_the_deadline(world):
    d, month, matcher = world
    req = _requests(d, month, 1)[0]
    with pytest.raises(MatchTimeout):
        match_one(matcher, req.transfer, req.candidates, deadline=time.monotonic() - 1)


def test_the_small_input_shortcuts_give_the_general_answers(world, monkeypatch):
    """What the /match path does differently for few rows gives the same numbers: one-thread booster copies, the
    last memory lookup kept, few memory keys found through a dict, pairs given as arrays to paid_before, all pairs
    compared in _cdist."""
    import pickle

    import numpy as np
    from rapidfuzz import fuzz

    from ledgerlink.matching import features as F
    from ledgerlink.matching import model as M

    d, month, matcher = world
    P = Prepared.of(d["invoices"], d["transfers"][d["transfers"]["month"] == month])
    pairs = matcher._block(P, matcher.memory_, None)
    X = matcher._featurize(pairs, P, matcher.memory_, None)
    assert len(X) > M.SMALL_PREDICT_ROWS  # both sides of the row limit below
    for b in matcher.pair_boosters_:
        whole = b.inplace_predict(X.to_numpy(np.float32)).astype(np.float64)
        np.testing.assert_array_equal(matcher._predict(b, X), whole)
        np.testing.assert_array_equal(matcher._predict(b, X.iloc[:40]), whole[:40])  # on the one-thread copy
    assert all(b in M._SMALL_PREDICTORS for b in matcher.pair_boosters_)  # kept beside the boosters ...
    assert not [k for k in vars(matcher) if k.startswith("_")]  # ... not on the matcher

    mem = matcher.memory_
    keys = mem._cached("acc", lambda: mem._key_index("acc"))["keys"]
    asked = np.array(list(keys[:5]) + ["no such payer", ""] + list(keys[-3:]), dtype=object)
    np.testing.assert_array_equal(mem._positions("acc", keys, asked), keys.get_indexer(asked))  # few keys: a dict
    first = mem.lookup(P.tr)
    assert mem.lookup(P.tr) is first  # the same transfers: the kept answer
    other = P.tr.iloc[::-1].reset_index(drop=True)
    again = mem.lookup(other)  # other transfers: their own answer, as a fresh lookup gives it
    for a, b in zip(again, mem._lookup(other, None)):
        assert list(a) == list(b)
        for col in a:
            np.testing.assert_array_equal(a[col], b[col])
    assert "_last_lookup" not in pickle.loads(pickle.dumps(mem)).__dict__

    t, i = pairs["t"].to_numpy(), pairs["i"].to_numpy()
    for x, y in zip(mem.paid_before(P.inv, {"t": t, "i": i}, P.tr), mem.paid_before(P.inv, pairs, P.tr)):
        np.testing.assert_array_equal(x, y)

    names, titles = P.inv["name"].to_numpy()[i], P.tr["name"].to_numpy()[t]
    for n in (1, 30, F.SMALL_COMPARE_ROWS):
        small = F._cdist(names[:n], titles[:n], fuzz.token_set_ratio, 1)
        monkeypatch.setattr(F, "SMALL_COMPARE_ROWS", 0)  # the distinct pairs first, as for many rows
        np.testing.assert_array_equal(small, F._cdist(names[:n], titles[:n], fuzz.token_set_ratio, 1))
        monkeypatch.undo()


def test_the_dense_predictor_gives_inplace_predict_bit_for_bit(world):
    """``inplace.DensePredictor`` (one proxy per thread) answers as ``Booster.inplace_predict``: on real features,
    on random matrices with missing values, from another thread, and for a matrix with the wrong width (its
    error)."""
    import threading

    import numpy as np

    from ledgerlink.matching import inplace

    d, month, matcher = world
    assert inplace._ARGS is not None  # the pinned xgboost: the proxy path runs
    P = Prepared.of(d["invoices"], d["transfers"][d["transfers"]["month"] == month])
    pairs = matcher._block(P, matcher.memory_, None)
    X = matcher._featurize(pairs, P, matcher.memory_, None).to_numpy(np.float32)
    rng = np.random.default_rng(0)
    boosters = [b for b in matcher.pair_boosters_ + [matcher.set_booster_] if b is not None]
    assert len(boosters) > len(matcher.pair_boosters_)  # the set model too
    for b in boosters:
        fast = inplace.DensePredictor(b)
        noise = rng.normal(size=(300, b.num_features())).astype(np.float32)
        noise[rng.random(noise.shape) < 0.3] = np.nan
        for values in (X, noise) if b in matcher.pair_boosters_ else (noise,):
            for rows in (values[:1], values[:37], values):
                np.testing.assert_array_equal(fast.predict(rows), b.inplace_predict(rows))
        got = []
        worker = threading.Thread(target=lambda: got.append(fast.predict(noise[:5])))
        worker.start()
        worker.join()
        np.testing.assert_array_equal(got[0], b.inplace_predict(noise[:5]))
    with pytest.raises(ValueError):
        inplace.DensePredictor(matcher.pair_boosters_[0]).predict(X[:, :3])


def test_paired_sets_in_chunks_of_keys_are_those_of_one_search(monkeypatch):
    """``subsets.paired_sets`` joins the pairs of PAIRED_PAIRS_PER_CHUNK keys' candidates at a time (memory): the
    same sets, in the same order, whatever the chunk, down to one key per chunk."""
    import numpy as np

    from ledgerlink.matching import subsets as S

    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 110, 40)  # keys below, inside and above the searched range (MAX_GROUP+1..LARGE_GROUP)
    key = np.repeat(np.arange(len(sizes)), sizes)[rng.permutation(int(sizes.sum()))]
    key[rng.random(len(key)) < 0.05] = -1
    cents = rng.choice(rng.integers(100, 5000, 12), len(key))  # few distinct amounts: many exact sets
    target = rng.integers(200, 20000, len(key))
    for k in range(len(sizes)):
        rows = np.flatnonzero(key == k)
        target[rows] = cents[rows[: 2 + k % 3]].sum()
    whole = {m: S.paired_sets(key, cents, target, max_size=m) for m in (2, 3, 4)}
    assert len(whole[4]) > 100 and (whole[4] >= 0).sum(1).max() == 4
    for chunk in (1, 500, 20000):
        monkeypatch.setattr(S, "PAIRED_PAIRS_PER_CHUNK", chunk)
        for m, expected in whole.items():
            np.testing.assert_array_equal(S.paired_sets(key, cents, target, max_size=m), expected)


def test_reference_postings_shared_by_chunks_give_the_pairs_of_one_call(world):
    """``candidates.RefPostings``: the reference channel's invoice side counted once for a batch's chunks of
    transfers gives each chunk the pairs (and scores, to the bit) that one call over all the transfers gives them,
    and that counting it again for the chunk gives, with problem scopes (currencies, a service batch) and without."""
    import numpy as np

    d, month, _ = world
    inv, tr = d["invoices"], d["transfers"][d["transfers"]["month"] == month]
    P = Prepared.of(inv, tr)
    tokens = C.RefTokens.of(P.inv_chunks)
    live = np.arange(len(P.inv))
    rng = np.random.default_rng(0)

    def by_pair(pairs: dict) -> dict:
        o = np.lexsort((pairs["i"], pairs["t"]))
        return {col: np.asarray(v)[o] for col, v in pairs.items()}

    for inv_scope, tr_scope in ((None, None), (rng.integers(0, 3, len(P.inv)), rng.integers(0, 3, len(P.tr)))):
        n_scopes = 1 if inv_scope is None else 3
        postings = C.RefPostings.of(P.inv_chunks, live, tokens, 50, inv_scope, n_scopes)
        assert postings is not None and len(postings.ic)
        whole = by_pair(C.ref_channel(P.inv_chunks, P.tr_chunks, live, 50, inv_scope, tr_scope, tokens=tokens))
        n_pairs = 0
        for lo in range(0, len(P.tr), 50):
            ct = P.tr_chunks["t"].to_numpy()
            chunk = P.tr_chunks[(ct >= lo) & (ct < lo + 50)].assign(t=lambda f: f["t"] - lo).reset_index(drop=True)
            scopes = {"inv_scope": inv_scope, "tr_scope": None if tr_scope is None else tr_scope[lo : lo + 50]}
            alone = by_pair(C.ref_channel(P.inv_chunks, chunk, live, 50, **scopes, tokens=tokens))
            shared = by_pair(C.ref_channel(P.inv_chunks, chunk, live, 50, **scopes, tokens=tokens, postings=postings))
            in_chunk = (whole["t"] >= lo) & (whole["t"] < lo + 50)
            expected = {col: v[in_chunk] - (lo if col == "t" else 0) for col, v in whole.items()}
            assert alone.keys() == shared.keys() == expected.keys()
            for col in alone:
                np.testing.assert_array_equal(alone[col], expected[col])
                np.testing.assert_array_equal(shared[col], expected[col])
            n_pairs += len(alone["t"])
        assert n_pairs == len(whole["t"]) > len(P.tr) // 2


def test_name_and_amount_postings_shared_by_chunks_give_the_pairs_of_counting_per_chunk(world):
    """``candidates.NamePostings`` and ``AmountPostings``: the name and amount channels' invoice sides counted once
    for a batch's chunks of transfers give each chunk the pairs (and name shares, to the bit) of counting them again
    for that chunk, with problem scopes (currencies, a service batch) and without."""
    import numpy as np

    d, month, _ = world
    inv, tr = d["invoices"], d["transfers"][d["transfers"]["month"] == month]
    P = Prepared.of(inv, tr)
    live = np.arange(len(P.inv))
    rng = np.random.default_rng(1)
    for inv_scope, tr_scope in ((None, None), (rng.integers(0, 3, len(P.inv)), rng.integers(0, 3, len(P.tr)))):
        n_scopes = 1 if inv_scope is None else 3
        names = C.NamePostings.of(P.inv, live, 0.15, inv_scope, n_scopes)
        amounts = C.AmountPostings.of(P.inv, live, 50, inv_scope)
        assert names is not None and len(names.ex_code) and len(names.fz_code) and len(amounts.pos)
        n_pairs = {"name": 0, "amount": 0}
        for lo in range(0, len(P.tr), 50):
            chunk = P.tr.iloc[lo : lo + 50].reset_index(drop=True)
            scopes = {"inv_scope": inv_scope, "tr_scope": None if tr_scope is None else tr_scope[lo : lo + 50]}
            for channel, shared, arg in (("name", names, 0.15), ("amount", amounts, 50)):
                fn = getattr(C, f"{channel}_channel")
                alone = fn(P.inv, chunk, live, arg, **scopes)
                with_shared = fn(P.inv, chunk, live, arg, **scopes, postings=shared)
                assert alone.keys() == with_shared.keys()
                for col in alone:
                    np.testing.assert_array_equal(alone[col], with_shared[col])
                n_pairs[channel] += len(alone["t"])
        assert n_pairs["name"] > len(P.tr) and n_pairs["amount"] > len(P.tr) // 2


def test_reference_tokens_are_found_by_hash_even_when_hashes_collide(world, monkeypatch):
    """``RefTokens.codes_of`` finds a token by its hash and one string comparison: a token's code is its code in
    the invoices' vocabulary, a token no invoice has gets a new one (in order of first appearance), also when many
    strings share a hash (a hash of 101 values here)."""
    import numpy as np

    d, month, _ = world
    P = Prepared.of(d["invoices"], d["transfers"][d["transfers"]["month"] == month])
    c = P.tr_chunks
    _, query, _ = C._ref_tokens(c["t"].to_numpy(), c["digits"].tolist(), c["long_groups"].tolist(), False)
    query = query + ["x999999999999", "n0000", query[0]]  # tokens no invoice has, and a repeat
    tokens = C.RefTokens.of(P.inv_chunks)
    colliding = lambda values: np.array([sum(map(ord, x)) % 101 for x in values], np.uint64)  # noqa: E731
    monkeypatch.setattr(C, "_string_hashes", colliding)
    tokens_colliding = C.RefTokens.of(P.inv_chunks)
    vocabulary = dict(zip(tokens.tokens.tolist(), tokens.token_codes.tolist()))
    new: dict[str, int] = {}
    expected = [vocabulary[x] if x in vocabulary else len(vocabulary) + new.setdefault(x, len(new)) for x in query]
    found = sum(x in vocabulary for x in query)
    assert 0 < found < len(query)
    np.testing.assert_array_equal(tokens_colliding.codes_of(query), expected)
    monkeypatch.undo()
    np.testing.assert_array_equal(tokens.codes_of(query), expected)
    np.testing.assert_array_equal(tokens_colliding.code, tokens.code)
