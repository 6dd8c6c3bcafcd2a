"""The monthly plan: the numeric world month by month (transfers, the invoices they pay, the links), no strings.

``Planner.month`` draws one month as a sequence of steps on one random stream per month, each filling in
the month's ``MonthDraft``: lay out the payment kinds (``kinds.PAYMENT_KINDS``), book the remainders of
earlier partial payments, pick counterparties, lay out how titles show numbers, draw the invoices paid,
fees, partial payments, allocations, payers, transfers that pay nothing, open invoices, and (description
only) batch deposits and voided invoices on their own stream. The order of the steps is the order of the
random draws, which is what makes a seed reproduce its data exactly; a new step goes last.

``TAIL_MONTHS`` months are simulated past the horizon and cut off (``assemble``), so the last months hold
invoices that get paid after the horizon, like any real open month.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import SyntheticConfig
from .kinds import (
    ABSENT,
    EXACT,
    INSTALMENT,
    INSTALMENT_GAP_DAYS,
    INSTALMENT_PARTS,
    INSTALMENT_PARTS_P,
    MULTI,
    NO_INVOICE_REASONS,
    NONE,
    NUMBER_STYLES,
    OTHER,
    OUTGOING_REASONS,
    PARTIAL,
    PAYMENT_KINDS,
    R_ADVANCE,
    R_CARD,
    R_DUPLICATE,
    R_OTHER_INCOME,
    R_REFUND,
    R_SALARY,
    REASON_P,
    REASONS,
    REFERENCE,
    REFERS_TO_INVOICE,
    REMITTANCE,
    REMITTANCE_SIZES,
    SINGLE,
    Share,
)
from .world import World

TAIL_MONTHS = 3  # months simulated past the horizon so late months hold invoices paid later
UNPAID_RATE = 0.04  # invoices never paid, as a share of the month's paid invoices
BATCH_RATE, VOID_RATE = 0.02, 0.02  # description_only extras
MULTI_SIZES, MULTI_SIZE_P = [2, 3, 4, 5, 6], [0.4, 0.25, 0.15, 0.12, 0.08]  # invoices paid by one multi transfer


def group_sum(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return np.add.reduceat(x, starts) if len(starts) else np.zeros(0)


def lay_out(
    codes: np.ndarray, slots: np.ndarray, shares: tuple[Share, ...], cfg: SyntheticConfig, n: int
) -> dict[int, np.ndarray]:
    """Give each share its exact count ``round(rate * n)`` of ``slots`` (a permutation), in order, and return
    the slots each got; the slots left over keep their default code."""
    out, used = {}, 0
    for share in shares:
        k = round(getattr(cfg, share.rate) * n)
        out[share.code] = slots[used : used + k]
        codes[out[share.code]] = share.code
        used += k
    return out


def swap_code(
    codes: np.ndarray, code: int, holders: np.ndarray, takers: np.ndarray, rng: np.random.Generator, avoid=()
) -> None:
    """Move ``code`` from the ``holders`` that have it to ``takers`` that have neither it nor a code in ``avoid``,
    each move a swap of the two rows' codes, so every code keeps its exact count."""
    give = rng.permutation(holders[codes[holders] == code])
    take = takers[~np.isin(codes[takers], (code, *avoid))]
    n = min(len(give), len(take))
    give, take = give[:n], rng.choice(take, n, replace=False)
    codes[give], codes[take] = codes[take], code


def instalment_amounts(rng: np.random.Generator, amount: np.ndarray, k: np.ndarray, width: int) -> np.ndarray:
    """(plans x width) part amounts of positive ``amount``s paid in ``k`` parts: roughly equal shares, half of the
    plans in round amounts, the last part what is left; 15 % of the parts lose a small deduction (bank charges,
    5-25 or up to 1.5 %), so the invoice ends short by it. Zero past a plan's k parts."""
    n = len(amount)
    used = np.arange(width)[None, :] < k[:, None]
    share = rng.dirichlet(np.full(width, 6.0), n) * used
    share /= share.sum(1, keepdims=True)
    raw = share * amount[:, None]
    step = np.where(amount > 2000, 100.0, 10.0)[:, None]
    parts = np.where(rng.random((n, 1)) < 0.5, np.round(raw / step) * step, np.round(raw, 2)) * used
    rows, last = np.arange(n), k - 1
    parts[rows, last] = 0.0
    parts[rows, last] = np.round(amount - parts.sum(1), 2)
    bad = ((parts <= 0) & used).any(1)  # rounding ate the last part: exact shares instead
    parts[bad] = np.round(raw[bad], 2)
    parts[bad, last[bad]] = 0.0
    parts[bad, last[bad]] = np.round(amount[bad] - parts[bad].sum(1), 2)
    ded = np.where(rng.random((n, width)) < 0.5, rng.choice([5.0, 10.0, 15.0, 25.0], (n, width)), parts * 0.015)
    cut = (rng.random((n, width)) < 0.15) & used & (parts > 0.02)
    return np.where(cut, np.round(parts - np.minimum(ded, 0.02 * parts), 2), parts)


@dataclass
class PaidInvoices:
    """The invoices the month's new paying transfers pay: one row per invoice, grouped by transfer."""

    transfers: np.ndarray  # the new paying transfers (not remainders), one group each
    n_per: np.ndarray  # invoices per transfer
    rep: np.ndarray  # the transfer of each invoice
    starts: np.ndarray  # first row of each group
    last: np.ndarray  # last row of each group
    contr: np.ndarray
    issued: np.ndarray
    term: np.ndarray
    amount: np.ndarray  # signed: negative for outgoing payments and credit notes
    credit: np.ndarray
    total: np.ndarray  # per transfer: the sum of its invoices
    ids: np.ndarray | None = None  # invoice ids, once added


@dataclass
class MonthDraft:
    """One month of the plan while ``Planner.month``'s steps fill it in: arrays over the month's transfers
    (``kind``, ``booked``, ...) and its links. Replaces the seventeen loose arrays once passed around."""

    index: int
    rng: np.random.Generator
    days: np.ndarray  # the month's weekdays, in days since the epoch
    first_day: int
    end_day: int  # first day of the next month
    booked: np.ndarray
    kind: np.ndarray
    slots: dict[int, np.ndarray]  # payment kind -> the transfers laid out for it
    role: np.ndarray  # partial payments: 1 first part, 2 remainder
    out: np.ndarray  # outgoing (we pay a supplier)
    contr: np.ndarray  # the contractor paid or paying, -1 none
    amount: np.ndarray  # the transfer amount (signed)
    cat: np.ndarray  # how the title shows the number (kinds.CATS)
    fee: np.ndarray
    other: np.ndarray  # paid by another entity (parent or factor)
    variant: np.ndarray  # payer name shown in a variant
    payer: np.ndarray
    reason: np.ndarray  # kinds.REASONS index for transfers that pay nothing, -1 otherwise
    ref: np.ndarray  # the invoice a refund, advance or duplicate refers to, -1 none
    batch: np.ndarray
    due_rows: np.ndarray  # rows of the planner's pool of remainders that fall due this month
    due: dict[str, np.ndarray]  # those rows
    remainder_slots: np.ndarray  # the transfers that pay them
    part: np.ndarray  # instalments: the part a transfer pays (1 the first, 2.. later ones), 0 none
    n_parts: np.ndarray  # instalments: the number of parts of its plan
    over: np.ndarray  # overpayment: the transfer is larger than the invoice it pays
    remit_partial: np.ndarray  # a remittance that pays its last invoice only in part
    inst_rows: np.ndarray  # rows of the planner's instalment pool that fall due this month
    inst_due: dict[str, np.ndarray]  # those rows
    inst_slots: np.ndarray  # the transfers that pay them
    new: np.ndarray | None = None  # the other paying transfers: each pays invoices of this month's plan
    paid: PaidInvoices | None = None
    link_t: np.ndarray | None = None
    link_inv: np.ndarray | None = None
    link_alloc: np.ndarray | None = None
    n_unpaid: int = 0  # open invoices to add: never paid
    n_open_credit_notes: int = 0  # and credit notes not offset in a transfer

    @property
    def n(self) -> int:
        return len(self.kind)

    def transfer_columns(self) -> dict[str, np.ndarray]:
        return dict(
            month=np.full(self.n, self.index),
            booked=self.booked,
            kind=self.kind,
            role=self.role,
            out=self.out,
            contr=self.contr,
            payer=self.payer,
            amount=np.round(self.amount, 2),
            cat=self.cat,
            fee=self.fee,
            other=self.other,
            variant=self.variant,
            reason=self.reason,
            ref=self.ref,
            batch=self.batch,
            part=self.part,
            n_parts=self.n_parts,
            over=self.over,
            remit_partial=self.remit_partial,
        )

    def link_columns(self) -> dict[str, np.ndarray]:
        return dict(
            t=self.link_t,
            inv=self.link_inv,
            alloc=np.round(self.link_alloc, 2),
            month=np.full(len(self.link_t), self.index),
        )

    def add_links(self, transfers: np.ndarray, invoices: np.ndarray, alloc: np.ndarray) -> None:
        self.link_t = np.concatenate([self.link_t, transfers])
        self.link_inv = np.concatenate([self.link_inv, invoices])
        self.link_alloc = np.concatenate([self.link_alloc, alloc])


class Planner:
    """Numeric world month by month: transfers, the invoices they pay, links; no strings here."""

    def __init__(self, cfg: SyntheticConfig, world: World):
        self.cfg, self.w = cfg, world
        start = pd.Period(cfg.start_month, freq="M")
        self.bounds = [
            (
                int(np.datetime64(str(start + i), "D").astype(np.int64)),
                int(np.datetime64(str(start + i + 1), "D").astype(np.int64)),
            )
            for i in range(cfg.months + TAIL_MONTHS + 1)
        ]
        self.start_day, self.end_day = self.bounds[0][0], self.bounds[cfg.months][0]
        self.inv: list[dict] = []
        self.n_inv = 0
        self.trf: list[dict] = []
        self.lnk: list[dict] = []
        # remainders of partial payments still to be paid: invoice, rest, due day, contractor, outgoing
        self.pool = {
            k: np.zeros(0, t)
            for k, t in [("inv", np.int64), ("rest", float), ("due", np.int64), ("contr", np.int64), ("out", bool)]
        }
        # later instalments still to be paid: invoice, amount, due day, contractor, outgoing, part, parts
        self.inst_pool = {
            k: np.zeros(0, t)
            for k, t in [
                ("inv", np.int64),
                ("amount", float),
                ("due", np.int64),
                ("contr", np.int64),
                ("out", bool),
                ("part", np.int8),
                ("n_parts", np.int8),
            ]
        }

    def weekdays(self, i: int) -> np.ndarray:
        d = np.arange(*self.bounds[i])
        return d[(d + 3) % 7 < 5]

    def amounts(self, rng: np.random.Generator, c: np.ndarray) -> np.ndarray:
        """Log-normal around the contractor's scale; many round or round-net-plus-VAT amounts."""
        w, n = self.w, len(c)
        a = w.scale[c] * rng.lognormal(0.0, 0.6, n)
        s = rng.random(n)
        step = np.where(a >= 2000, 100.0, 10.0)
        rounded = np.maximum(np.round(a / step) * step, step)
        gross = np.round(rounded * w.vat[c], 2)
        a = np.where(s < 0.22, rounded, np.where(s < 0.37, gross, np.round(a, 2)))
        a = np.where((w.fixed[c] > 0) & (rng.random(n) < 0.9), w.fixed[c], a)
        return np.maximum(a, 5.0)

    def add_invoices(self, **cols) -> np.ndarray:
        n = len(cols["contr"])
        cols.setdefault("credit", np.zeros(n, bool))
        cols.setdefault("void", np.zeros(n, np.int8))  # 1 voided original, 2 its reversal
        cols.setdefault("void_ref", np.full(n, -1, np.int64))
        cols.setdefault("inst", np.zeros(n, bool))  # paid in instalments: its description carries an assignment
        self.inv.append(cols)
        ids = np.arange(self.n_inv, self.n_inv + n)
        self.n_inv += n
        return ids

    def run(self) -> dict:
        for i in range(self.cfg.months + TAIL_MONTHS):
            self.month(i)
        return self.assemble()

    # -- one month, step by step (the order is the order of the random draws) ----------------------------
    def month(self, i: int) -> None:
        d = self.layout(i)
        self.remainders_due(d)
        self.instalments_due(d)
        self.counterparties(d)
        self.number_styles_and_phenomena(d)
        self.invoices_paid(d)
        self.fees(d)
        self.overpayments(d)
        self.partial_payments(d)
        self.remittance_partials(d)
        self.instalment_plans(d)
        self.allocations(d)
        self.payers(d)
        self.no_invoice_transfers(d)
        self.open_invoices(d)
        if self.cfg.description_only and i < self.cfg.months:  # own stream: the base world is unchanged
            self.description_extras(d)
        self.trf.append(d.transfer_columns())
        self.lnk.append(d.link_columns())

    def layout(self, i: int) -> MonthDraft:
        """Booking days and the payment kinds, with exact counts (``kinds.PAYMENT_KINDS``)."""
        rng = np.random.default_rng([self.cfg.seed, 1, i])
        T = self.cfg.transfers_per_month
        days = self.weekdays(i)
        booked = rng.choice(days, T)
        kind = np.full(T, SINGLE, np.int8)
        order = rng.permutation(T)
        slots = lay_out(kind, order, PAYMENT_KINDS, self.cfg, T)
        empty = np.zeros(0, np.int64)
        return MonthDraft(
            index=i,
            rng=rng,
            days=days,
            first_day=self.bounds[i][0],
            end_day=self.bounds[i][1],
            booked=booked,
            kind=kind,
            slots=slots,
            role=np.zeros(T, np.int8),
            out=np.zeros(T, bool),
            contr=np.full(T, -1, np.int64),
            amount=np.zeros(T),
            cat=np.full(T, ABSENT, np.int8),
            fee=np.zeros(T, bool),
            other=np.zeros(T, bool),
            variant=np.zeros(T, bool),
            payer=np.full(T, -1, np.int64),
            reason=np.full(T, -1, np.int8),
            ref=np.full(T, -1, np.int64),
            batch=np.zeros(T, bool),
            due_rows=empty,
            due={},
            remainder_slots=empty,
            part=np.zeros(T, np.int8),
            n_parts=np.zeros(T, np.int8),
            over=np.zeros(T, bool),
            remit_partial=np.zeros(T, bool),
            inst_rows=empty,
            inst_due={k: v[:0] for k, v in self.inst_pool.items()},
            inst_slots=empty,
        )

    def remainders_due(self, d: MonthDraft) -> None:
        """Remainders of earlier partial payments that fall due now take partial slots (role 2), the rest of the
        partial slots pay a first part (role 1)."""
        part_slots, pool = d.slots[PARTIAL], self.pool
        elig = np.flatnonzero(pool["due"] < d.end_day)
        elig = elig[np.argsort(pool["due"][elig], kind="stable")][: int(0.6 * len(part_slots))]
        rem_slots, first_slots = part_slots[: len(elig)], part_slots[len(elig) :]
        d.role[rem_slots], d.role[first_slots] = 2, 1
        due = pool["due"][elig]
        days = d.days
        d.booked[rem_slots] = np.where(
            due >= d.first_day, days[np.minimum(np.searchsorted(days, due), len(days) - 1)], d.booked[rem_slots]
        )
        d.out[rem_slots] = pool["out"][elig]
        d.contr[rem_slots] = pool["contr"][elig]
        d.due_rows, d.due, d.remainder_slots = elig, {k: v[elig] for k, v in pool.items()}, rem_slots

    def instalments_due(self, d: MonthDraft) -> None:
        """Later instalments that fall due now take instalment slots (oldest due first, as many as there are slots);
        the other instalment slots start a new plan (part 1). A late part is booked early in the month."""
        slots, pool = d.slots[INSTALMENT], self.inst_pool
        elig = np.flatnonzero(pool["due"] < d.end_day)
        elig = elig[np.argsort(pool["due"][elig], kind="stable")][: len(slots)]
        due_slots, first_slots = slots[: len(elig)], slots[len(elig) :]
        d.part[first_slots] = 1
        due = {k: v[elig] for k, v in pool.items()}
        d.part[due_slots], d.n_parts[due_slots] = due["part"], due["n_parts"]
        d.out[due_slots], d.contr[due_slots] = due["out"], due["contr"]
        # a late part is booked early in the month, later parts of one plan a few days after the earlier ones
        day = np.maximum(due["due"], d.first_day + 5 * (due["part"].astype(np.int64) - 2)) + d.rng.integers(
            0, 3, len(elig)
        )
        d.booked[due_slots] = d.days[np.minimum(np.searchsorted(d.days, day), len(d.days) - 1)]
        d.amount[due_slots] = due["amount"]
        d.inst_rows, d.inst_due, d.inst_slots = elig, due, due_slots

    def counterparties(self, d: MonthDraft) -> None:
        """Outgoing payments (``rate_outgoing`` of all transfers) go to suppliers, the rest come from customers;
        remittances come from the big customers (``World.remitters``)."""
        cfg, w, rng = self.cfg, self.w, d.rng
        new = np.flatnonzero((d.kind != NONE) & (d.role != 2) & (d.part <= 1))
        may_out = new[d.kind[new] != REMITTANCE]
        k_out = min(len(may_out), max(0, round(cfg.rate_outgoing * d.n) - int(d.out.sum())))
        d.out[rng.choice(may_out, k_out, replace=False)] = True
        new_in, new_out = new[~d.out[new]], new[d.out[new]]
        d.contr[new_in] = w.customers[rng.choice(len(w.customers), len(new_in), p=w.cust_p)]
        d.contr[new_out] = w.suppliers[rng.choice(len(w.suppliers), len(new_out), p=w.sup_p)]
        remit = new[d.kind[new] == REMITTANCE]
        d.contr[remit] = w.remitters[rng.choice(len(w.remitters), len(remit), p=w.remit_p)]
        d.new = new

    def number_styles_and_phenomena(self, d: MonthDraft) -> None:
        """Among paying transfers, exact counts: how the title shows the number (``kinds.NUMBER_STYLES``), fees,
        another payer, a name variant."""
        cfg, rng = self.cfg, d.rng
        paying = np.flatnonzero(d.kind != NONE)
        n_pay = len(paying)
        p = rng.permutation(paying)
        used = sum(len(v) for v in lay_out(d.cat, p, NUMBER_STYLES, cfg, n_pay).values())
        d.cat[p[used:]] = OTHER

        def pick(pool_idx, rate):
            m = np.zeros(d.n, bool)
            m[rng.choice(pool_idx, min(len(pool_idx), round(rate * n_pay)), replace=False)] = True
            return m

        d.fee = pick(paying[(d.kind[paying] != PARTIAL) & (d.kind[paying] != INSTALMENT)], cfg.rate_fee)
        d.other = pick(paying, cfg.rate_other_payer)
        d.variant = pick(paying, cfg.rate_name_variant)
        self.shape_styles(d, paying)

    def shape_styles(self, d: MonthDraft, paying: np.ndarray) -> None:
        """Swap laid-out number styles (counts stay exact) so that a remittance lists numbers (not nothing, nor
        references), a title quotes a description reference only where the invoice has one, and instalments quote
        their assignment most of the time; instalment payers' names are mostly damaged."""
        rng, kind = d.rng, d.kind
        remit = kind[paying] == REMITTANCE
        inst = kind[paying] == INSTALMENT
        has_ref = inst | self.w.uses_refs[np.maximum(d.contr[paying], 0)]
        for code in (ABSENT, REFERENCE):
            swap_code(d.cat, code, paying[remit], paying[~remit & ~inst], rng, avoid=(ABSENT, REFERENCE))
        swap_code(d.cat, REFERENCE, paying[~has_ref], paying[has_ref & ~remit], rng)
        wants = paying[inst & (rng.random(len(paying)) < 0.65)]
        swap_code(d.cat, REFERENCE, paying[has_ref & ~inst & ~remit], wants, rng)
        d.variant[paying[inst]] |= rng.random(int(inst.sum())) < 0.6

    def invoices_paid(self, d: MonthDraft) -> None:
        """The invoices of the new paying transfers: 2..6 for a multi payment, issued 0..90 days before (most
        within the payment term), credit notes offset inside incoming multi payments."""
        cfg, w, rng, new = self.cfg, self.w, d.rng, d.new
        n_per = np.where(d.kind[new] == MULTI, rng.choice(MULTI_SIZES, len(new), p=MULTI_SIZE_P), 1)
        lo, hi = REMITTANCE_SIZES
        n_per = np.where(d.kind[new] == REMITTANCE, rng.integers(lo, hi + 1, len(new)), n_per)
        rep = np.repeat(new, n_per)
        N = len(rep)
        starts = (np.cumsum(n_per) - n_per).astype(np.int64)
        last = starts + n_per - 1
        ic = d.contr[rep]
        term = w.term[ic]
        u = rng.random(N)
        delay = np.where(
            u < 0.08,
            rng.uniform(0, 0.3, N) * term,
            np.where(u < 0.88, rng.uniform(0.3, 1.0, N) * term, term + rng.integers(1, 61, N)),
        )
        delay = np.minimum(np.round(delay).astype(np.int64), 90)
        issued = d.booked[rep] - delay
        early = issued < self.start_day
        issued[early] = self.start_day + (rng.random(early.sum()) * (d.booked[rep][early] - self.start_day + 1)).astype(
            np.int64
        )
        amount = self.amounts(rng, ic)
        credit = np.zeros(N, bool)
        d.n_unpaid = max(1, round(UNPAID_RATE * N))  # >= 1: every month has invoices
        n_cn = round(cfg.rate_credit_note * (N + d.n_unpaid))
        multi_in = np.flatnonzero(np.isin(d.kind[new], [MULTI, REMITTANCE]) & ~d.out[new])
        n_cn_linked = min(round(0.75 * n_cn), len(multi_in))
        d.n_open_credit_notes = n_cn - n_cn_linked
        g = rng.choice(multi_in, n_cn_linked, replace=False)
        others = group_sum(amount, starts)[g] - amount[last[g]]
        amount[last[g]] = -np.round(rng.uniform(0.05, 0.45, len(g)) * others, 2)
        credit[last[g]] = True
        inst = (d.kind[rep] == INSTALMENT) & ~credit  # a plan of instalments is for a larger invoice
        step = np.where(amount >= 2000, 100.0, 10.0)
        amount[inst] = np.round(amount[inst] * rng.uniform(1.5, 4.0, int(inst.sum())) / step[inst]) * step[inst]
        amount = np.where(d.out[rep], -amount, amount)
        total = np.round(group_sum(amount, starts), 2)
        d.amount[new] = total
        d.paid = PaidInvoices(new, n_per, rep, starts, last, ic, issued, term, amount, credit, total)

    def fees(self, d: MonthDraft) -> None:
        """Fees / discounts: up to 2 % or a fixed 5-25, always below the invoice total."""
        rng, paid = d.rng, d.paid
        new, total = paid.transfers, paid.total
        f_new = d.fee[new]
        ded = np.where(
            rng.random(len(new)) < 0.4,
            rng.choice([5.0, 10.0, 15.0, 20.0, 25.0], len(new)),
            np.abs(total) * rng.uniform(0.002, 0.02, len(new)),
        )
        ded = np.maximum(0.01, np.round(np.minimum(ded, 0.02 * np.abs(total)), 2))
        d.amount[new[f_new]] = np.round(total[f_new] - np.sign(total[f_new]) * ded[f_new], 2)

    def overpayments(self, d: MonthDraft) -> None:
        """Overpayments (``rate_overpayment`` of paying transfers): one invoice paid with more than its amount, by a
        round surplus or a few percent; the surplus stays on account, the link allocates the invoice amount."""
        cfg, rng, w = self.cfg, d.rng, self.w
        n_pay = int((d.kind != NONE).sum())
        new = d.paid.transfers
        single = new[(d.kind[new] == SINGLE) & (d.role[new] == 0) & ~d.fee[new] & ~d.out[new]]
        o = rng.choice(single, min(len(single), round(cfg.rate_overpayment * n_pay)), replace=False)
        base = np.abs(d.amount[o])
        round_surplus = rng.choice([10.0, 20.0, 50.0, 100.0, 200.0, 500.0], len(o)) * np.maximum(
            1.0, np.round(w.fx[d.contr[o]])
        )
        surplus = np.where(rng.random(len(o)) < 0.4, round_surplus, np.round(base * rng.uniform(0.01, 0.3, len(o)), 2))
        d.amount[o] = np.round(d.amount[o] + np.maximum(surplus, 0.01), 2)
        d.over[o] = True

    def partial_payments(self, d: MonthDraft) -> None:
        """First parts pay 30-70 % (often round); half get their remainder paid 7..60 days later (into the pool).
        The month's paid invoices get their ids here, and the remainders due now their amounts."""
        rng, paid = d.rng, d.paid
        new, total = paid.transfers, paid.total
        fp = d.role[new] == 1
        share = np.abs(total[fp]) * rng.uniform(0.3, 0.7, fp.sum())
        step = np.where(np.abs(total[fp]) > 2000, 100.0, 10.0)
        part = np.where(rng.random(fp.sum()) < 0.5, np.round(share / step) * step, np.round(share, 2))
        part = np.where((part <= 0) | (part >= np.abs(total[fp])), np.round(share, 2), part) * np.sign(total[fp])
        d.amount[new[fp]] = part
        later = rng.random(fp.sum()) < 0.5
        paid.ids = self.add_invoices(
            contr=paid.contr,
            issued=paid.issued,
            due=paid.issued + paid.term,
            amount=paid.amount,
            credit=paid.credit,
            inst=d.kind[paid.rep] == INSTALMENT,
        )
        pool = self.pool
        self.pool = {
            k: np.concatenate([v[np.setdiff1d(np.arange(len(v)), d.due_rows)], add])
            for (k, v), add in zip(
                pool.items(),
                [
                    paid.ids[paid.starts[fp]][later],
                    np.round(total[fp] - part, 2)[later],
                    d.booked[new[fp]][later] + rng.integers(7, 61, later.sum()),
                    d.contr[new[fp]][later],
                    d.out[new[fp]][later],
                ],
            )
        }
        d.amount[d.remainder_slots] = d.due["rest"]

    def remittance_partials(self, d: MonthDraft) -> None:
        """A third of the remittances (without a fee or a credit note) pay their last invoice only in part (30-90 %):
        the transfer is that much smaller, and that link allocates what was paid. The rest stays open."""
        rng, paid = d.rng, d.paid
        g = np.flatnonzero((d.kind[paid.transfers] == REMITTANCE) & ~d.fee[paid.transfers] & ~paid.credit[paid.last])
        g = g[rng.random(len(g)) < 0.35]
        last_amount = paid.amount[paid.last[g]]
        unpaid = np.round(last_amount * (1 - rng.uniform(0.3, 0.9, len(g))), 2)
        t = paid.transfers[g]
        d.amount[t] = np.round(d.amount[t] - unpaid, 2)
        d.remit_partial[t] = True

    def instalment_plans(self, d: MonthDraft) -> None:
        """New plans: the invoice is paid in 2-5 parts 7-35 days apart, roughly equal (often round) amounts, the last
        part what is left; some parts lose a small deduction (bank charges). The first part is paid now, the others
        go to the instalment pool."""
        rng, paid, pool = d.rng, d.paid, self.inst_pool
        g = np.flatnonzero((d.kind[paid.transfers] == INSTALMENT) & (d.part[paid.transfers] == 1))
        t, inv, a = paid.transfers[g], paid.ids[paid.starts[g]], paid.amount[paid.starts[g]]
        k = rng.choice(INSTALMENT_PARTS, len(g), p=INSTALMENT_PARTS_P)
        K = max(INSTALMENT_PARTS)
        parts = instalment_amounts(rng, np.abs(a), k, K) * np.sign(a)[:, None]
        gaps = rng.integers(INSTALMENT_GAP_DAYS[0], INSTALMENT_GAP_DAYS[1] + 1, (len(g), K))
        due = d.booked[t][:, None] + np.cumsum(gaps, axis=1) - gaps[:, :1]
        d.amount[t] = parts[:, 0]
        d.n_parts[t] = k
        later_r, later_p = np.nonzero((np.arange(K)[None, :] >= 1) & (np.arange(K)[None, :] < k[:, None]))
        keep = np.setdiff1d(np.arange(len(pool["due"])), d.inst_rows)
        add = {
            "inv": inv[later_r],
            "amount": parts[later_r, later_p],
            "due": due[later_r, later_p],
            "contr": d.contr[t][later_r],
            "out": d.out[t][later_r],
            "part": (later_p + 1).astype(np.int8),
            "n_parts": k[later_r].astype(np.int8),
        }
        self.inst_pool = {key: np.concatenate([v[keep], add[key]]) for key, v in pool.items()}

    def allocations(self, d: MonthDraft) -> None:
        """Links: invoice amounts, scaled proportionally under a fee (cents residue on the last link); partial
        payments allocate the transfer amount."""
        paid, rep = d.paid, d.paid.rep
        ratio = np.where(d.fee[rep], d.amount[rep] / np.repeat(paid.total, paid.n_per), 1.0)
        alloc = np.round(paid.amount * ratio, 2)
        residue = np.round(d.amount[paid.transfers] - group_sum(alloc, paid.starts), 2)
        alloc[paid.last] += np.where(d.over[paid.transfers], 0.0, residue)  # an overpayment allocates the invoice
        alloc = np.where((d.role[rep] == 1) | (d.part[rep] == 1), d.amount[rep], np.round(alloc, 2))
        d.link_t = np.concatenate([rep, d.remainder_slots, d.inst_slots])
        d.link_inv = np.concatenate([paid.ids, d.due["inv"], d.inst_due["inv"]])
        d.link_alloc = np.concatenate([alloc, d.amount[d.remainder_slots], d.amount[d.inst_slots]])

    def payers(self, d: MonthDraft) -> None:
        """The entity that pays: the contractor, or for ``other`` its parent company (60 % if any) or its factor."""
        w = self.w
        d.payer = d.contr.copy()
        op = np.flatnonzero(d.other)
        par = w.parent[d.contr[op]]
        use_parent = (par >= 0) & (d.rng.random(len(op)) < 0.6)
        d.payer[op] = np.where(use_parent, par, w.factor[d.contr[op]])

    def no_invoice_transfers(self, d: MonthDraft) -> None:
        """Transfers that pay nothing: a reason (``kinds.NO_INVOICE_REASONS``), its amount and counterparty; refunds,
        advances and duplicates refer to a real invoice of a known contractor."""
        cfg, rng, paid = self.cfg, d.rng, d.paid
        new, none = paid.transfers, d.slots[NONE]
        n_none, N = len(none), len(paid.rep)
        reason = rng.choice(len(REASONS), n_none, p=REASON_P)
        reason[rng.choice(n_none, min(n_none, round(cfg.rate_duplicate * d.n)), replace=False)] = R_DUPLICATE
        single_in = np.flatnonzero((d.kind[new] == SINGLE) & ~d.out[new])
        if len(single_in) == 0:  # nothing to refer to: no refunds, advances or duplicates
            reason[REFERS_TO_INVOICE[reason]] = R_CARD
        needs_ref = REFERS_TO_INVOICE[reason]
        src = single_in[rng.integers(0, len(single_in), n_none)] if len(single_in) else np.zeros(n_none, np.int64)
        ref_local = paid.starts[src] if len(single_in) else src
        nz = none[needs_ref]
        d.ref[nz] = paid.ids[ref_local[needs_ref]]
        d.contr[nz] = paid.contr[ref_local[needs_ref]]
        d.payer[nz] = d.contr[nz]
        ramt = paid.amount[ref_local] if len(single_in) else np.zeros(n_none)
        amt = np.zeros(n_none)
        for r, spec in enumerate(NO_INVOICE_REASONS):
            if spec.amounts is not None:
                lo, hi = spec.amounts
                sel = reason == r
                amt[sel] = np.round(np.exp(rng.uniform(np.log(lo), np.log(hi), sel.sum())), 2)
        sal = reason == R_SALARY
        amt[sal] = np.where(rng.random(sal.sum()) < 0.4, np.round(amt[sal], -2), amt[sal])
        card_eq = (reason == R_CARD) & (rng.random(n_none) < 0.15)  # coincidences with invoice amounts
        amt[card_eq] = np.abs(paid.amount[rng.integers(0, N, card_eq.sum())]) if N else amt[card_eq]
        amt[reason == R_OTHER_INCOME] = np.round(amt[reason == R_OTHER_INCOME], -2)
        refund_full = rng.random(n_none) < 0.6
        amt = np.where(
            reason == R_REFUND, np.where(refund_full, ramt, np.round(ramt * rng.uniform(0.05, 0.5, n_none), 2)), amt
        )
        amt = np.where((reason == R_ADVANCE) | (reason == R_DUPLICATE), ramt, amt)
        amt = np.where(np.isin(reason, OUTGOING_REASONS), -np.abs(amt), np.abs(amt))
        d.amount[none] = amt
        dup = none[reason == R_DUPLICATE]
        after = d.booked[new[src[reason == R_DUPLICATE]]] + rng.integers(0, 21, len(dup))
        d.booked[dup] = d.days[np.minimum(np.searchsorted(d.days, after), len(d.days) - 1)]
        d.cat[none] = ABSENT
        d.cat[none[(reason == R_DUPLICATE) | ((reason == R_REFUND) & (rng.random(n_none) < 0.5))]] = EXACT
        d.variant[nz] = rng.random(len(nz)) < cfg.rate_name_variant
        for r, spec in enumerate(NO_INVOICE_REASONS):
            if spec.counterparty is not None:
                entities = self.w.special[spec.counterparty]
                sel = none[reason == r]
                d.payer[sel] = entities[rng.integers(0, len(entities), len(sel))]
        d.reason[none] = reason

    def open_invoices(self, d: MonthDraft) -> None:
        """Invoices never paid (customers mostly, some suppliers) and credit notes left open."""
        w, rng, n_unpaid = self.w, d.rng, d.n_unpaid
        cu = w.customers[rng.choice(len(w.customers), n_unpaid + d.n_open_credit_notes, p=w.cust_p)]
        nsup = rng.random(n_unpaid) < 0.2
        cu[:n_unpaid][nsup] = w.suppliers[rng.choice(len(w.suppliers), nsup.sum(), p=w.sup_p)]
        ua = self.amounts(rng, cu)
        ua[:n_unpaid][nsup] *= -1
        ucn = np.arange(len(cu)) >= n_unpaid
        ua[ucn] = -np.round(ua[ucn] * rng.uniform(0.05, 0.45, ucn.sum()), 2)
        ui = rng.integers(d.first_day, d.end_day, len(cu))
        self.add_invoices(contr=cu, issued=ui, due=ui + w.term[cu], amount=ua, credit=ucn)

    def description_extras(self, d: MonthDraft) -> None:
        """Batch deposits (several contractors' invoices in one transfer) and voided/reversed invoices."""
        w = self.w
        rng = np.random.default_rng([self.cfg.seed, 2, d.index])
        cand = np.flatnonzero((d.kind == SINGLE) & (d.role == 0) & ~d.fee & ~d.other & ~d.out)
        b = rng.choice(cand, min(len(cand), round(BATCH_RATE * d.n)), replace=False)
        k = rng.integers(1, 5, len(b))
        rep = np.repeat(b, k)
        cc = w.customers[rng.choice(len(w.customers), len(rep), p=w.cust_p)]
        iss = np.maximum(self.start_day, d.booked[rep] - rng.integers(0, 41, len(rep)))
        amt = self.amounts(rng, cc)
        ids = self.add_invoices(contr=cc, issued=iss, due=iss + w.term[cc], amount=amt)
        np.add.at(d.amount, rep, amt)
        d.kind[b], d.cat[b], d.batch[b], d.variant[b] = MULTI, ABSENT, True, False
        nv = round(VOID_RATE * len(d.paid.rep))
        vc = w.customers[rng.choice(len(w.customers), nv, p=w.cust_p)]
        vi = rng.integers(d.first_day, d.end_day, nv)
        va = self.amounts(rng, vc)
        orig = self.add_invoices(contr=vc, issued=vi, due=vi + w.term[vc], amount=va, void=np.ones(nv, np.int8))
        ri = vi + rng.integers(0, 11, nv)
        self.add_invoices(contr=vc, issued=ri, due=ri, amount=-va, void=np.full(nv, 2, np.int8), void_ref=orig)
        d.add_links(rep, ids, amt)

    def billing_days(self, inv: dict) -> None:
        """Contractors that bill in batches (``World.billing_day``) issue each invoice on the last billing day at or
        before the day it was drawn for: many invoices share an issue date. One that would fall before the first
        day keeps its own date (no pile of invoices on the first day of the first month)."""
        bd = self.w.billing_day[inv["contr"]]
        sel = np.flatnonzero(bd > 0)
        day = inv["issued"][sel].astype("datetime64[D]")
        month = day.astype("datetime64[M]")

        def billing(m):  # the billing day in month m (the month's last day when it is shorter)
            first = m.astype("datetime64[D]")
            length = ((m + 1).astype("datetime64[D]") - first).astype(np.int64)
            return first + np.minimum(bd[sel], length) - 1

        this = billing(month)
        snapped = np.where(this <= day, this, billing(month - 1)).astype(np.int64)
        snapped = np.where(snapped >= self.start_day, snapped, inv["issued"][sel])  # none before the first day
        inv["due"][sel] = snapped + (inv["due"][sel] - inv["issued"][sel])
        inv["issued"][sel] = snapped

    def assemble(self) -> dict:
        """Cut the tail: keep horizon transfers/links and invoices issued before the horizon end."""
        M = self.cfg.months
        inv = {k: np.concatenate([d[k] for d in self.inv]) for k in self.inv[0]}
        self.billing_days(inv)
        keep = inv["issued"] < self.end_day
        remap = np.cumsum(keep) - 1
        inv = {k: v[keep] for k, v in inv.items()}
        inv["void_ref"] = np.where(inv["void_ref"] >= 0, remap[inv["void_ref"]], -1)
        trf = {k: np.concatenate([d[k] for d in self.trf[:M]]) for k in self.trf[0]}
        offs = np.concatenate([[0], np.cumsum([len(d["kind"]) for d in self.trf[:M]])])
        lnk = {k: np.concatenate([d[k] for d in self.lnk[:M]]) for k in self.lnk[0]}
        lnk["t"] = lnk["t"] + offs[lnk["month"]]
        lnk["inv"] = remap[lnk["inv"]]
        trf["ref"] = np.where(trf["ref"] >= 0, remap[trf["ref"]], -1)
        assert keep[np.concatenate([d["inv"] for d in self.lnk[:M]])].all()
        return dict(inv=inv, trf=trf, lnk=lnk)
