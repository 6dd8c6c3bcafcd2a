"""Rendering: strings, ids and frames from the numeric plan (invoice numbers, titles, payer names, accounts, the
title_format and payer_change drifts), and the ground truth per transfer.

Text comes from ``random.Random`` streams of its own (transfers in month order, invoices, processor text),
so a drift from month k leaves the text of earlier months untouched.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import SyntheticConfig, month_labels, parse_drift_kind
from .kinds import (
    ABSENT,
    CATS,
    DAMAGED,
    EXACT,
    INSTALMENT,
    KINDS,
    MULTI,
    NONE,
    OTHER,
    REASONS,
    REFERENCE,
    REMITTANCE,
    SINGLE,
)
from .text import (
    CONTRACT_BLOCK,
    CONTRACT_STYLE,
    UNIQUE_REF_STYLES,
    abbreviate,
    damage,
    invoice_number,
    money,
    other_format,
    ref_label,
    reference,
)
from .vocabulary import (
    D_REASON,
    FORM_VARIANTS,
    MON_DE,
    MON_EN,
    MON_PL,
    PROCESSORS,
    SERVICES,
    T_INST,
    T_INST_NONUM,
    T_NONUM,
    T_NUM,
    T_PART1,
    T_PART2,
    T_PROC,
    T_REASON,
    T_REMIT,
    fold,
)
from .world import BIG_BANK, PayerChange, World

# payer_change: shares of processor titles with invoice numbers, with the contractor's abbreviated name, of
# processor payments losing a small fee, and of payments from another of the processor's accounts
PROC_NUMBER_SHARE, PROC_ABBR_SHARE, PROC_FEE_SHARE, PROC_OTHER_ACCOUNT = 0.3, 0.4, 0.2, 0.05


@dataclass
class TitleDraft:
    """What the title of one transfer is written from (``Renderer.title``, ``Renderer.bank_line``)."""

    t: int  # the transfer
    payer: int  # the paying entity
    lang: str
    ctx: dict  # date and month words, a reference number: the templates' fields
    n_invoices: int
    parts: list[str]  # the invoice numbers as shown
    noise: bool  # add a number that is not an invoice number
    name: str  # the payer's name as shown
    reason: str | None  # why it pays nothing, None when it pays
    drifted: bool  # title_format drift
    kind: int = SINGLE  # kinds.KINDS code
    amounts: list[float] | None = None  # what the transfer pays on each shown invoice (remittances list them)


class Renderer:
    """Strings, ids and frames from the numeric plan."""

    def __init__(self, cfg: SyntheticConfig, world: World, plan: dict):
        self.cfg, self.w = cfg, world
        self.inv, self.trf, self.lnk = plan["inv"], plan["trf"], plan["lnk"]
        self.r = random.Random(f"{cfg.seed}-transfers")  # transfers are rendered in month order, so drift
        self.r_inv = random.Random(f"{cfg.seed}-invoices")  # leaves earlier months' text untouched
        self.r_proc = random.Random(f"{cfg.seed}-payer_change")  # processor text: the main stream is untouched
        self.pc = PayerChange(cfg, world)

    # numbers ----------------------------------------------------------------------------------
    def numbers(self) -> None:
        inv, w = self.inv, self.w
        d = inv["issued"].astype("datetime64[D]")
        y = d.astype("datetime64[Y]").astype(np.int64) + 1970
        m = d.astype("datetime64[M]").astype(np.int64) % 12 + 1
        c = inv["contr"]
        fmt = np.where(inv["credit"], np.where(np.isin(w.fmt[c], [0, 2, 3]), 8, 9), w.fmt[c])
        per_month = np.isin(fmt, [0, 3, 8])
        key = (
            fmt * 10**9
            + np.where(fmt >= 5, c, 0) % 10**6 * 10**3
            + np.where(fmt == 4, 0, (y % 100) * 13 + np.where(per_month, m, 0))
        )
        rng = np.random.default_rng([self.cfg.seed, 3])
        order = np.lexsort((rng.random(len(c)), inv["issued"]))
        seq = np.empty(len(c), np.int64)
        seq[order] = pd.Series(key[order]).groupby(key[order]).cumcount().to_numpy()
        ukeys, kidx = np.unique(key, return_inverse=True)
        seq += 1 + np.random.default_rng([self.cfg.seed, 4]).integers(0, 400, len(ukeys))[kidx]
        seq[inv["void"] == 2] = seq[inv["void_ref"][inv["void"] == 2]]
        self.seq, self.y, self.m = seq, y, m
        self.num = [invoice_number(*a) for a in zip(fmt.tolist(), y.tolist(), m.tolist(), seq.tolist())]
        for k in np.flatnonzero(inv["void"] == 2):
            self.num[k] = self.num[inv["void_ref"][k]]
        self.references(order)

    def references(self, order: np.ndarray) -> None:
        """The reference each invoice's description carries (``self.ref``, None without one): invoices of contractors
        that use references and every invoice paid in instalments (an assignment or document number, unique). Numbered
        per contractor and style in issue order, from a random start; a contract number covers a block of invoices."""
        inv, w = self.inv, self.w
        c = inv["contr"]
        style = np.where(inv["inst"], np.array(UNIQUE_REF_STYLES)[c % len(UNIQUE_REF_STYLES)], w.ref_style[c])
        has = (w.uses_refs[c] | inv["inst"]) & (inv["void"] == 0)
        key = c.astype(np.int64) * 16 + style
        rank = np.empty(len(c), np.int64)
        rank[order] = pd.Series(key[order]).groupby(key[order]).cumcount().to_numpy()
        ukeys, kidx = np.unique(key, return_inverse=True)
        start = np.random.default_rng([self.cfg.seed, 11]).integers(100, 90000, len(ukeys))[kidx]
        rseq = start + np.where(style == CONTRACT_STYLE, rank // CONTRACT_BLOCK, rank)
        self.ref_seq = rseq
        self.ref = [
            reference(st, yy, mm, n) if h else None
            for h, st, yy, mm, n in zip(has.tolist(), style.tolist(), self.y.tolist(), self.m.tolist(), rseq.tolist())
        ]
        self.ref_style = style

    # names ------------------------------------------------------------------------------------
    def variant(self, e: int) -> str:
        """Payer name as the bank shows it when it differs from the legal name."""
        for _ in range(5):
            name = self._variant(e)
            if name != self.w.legal[e]:
                return name
        return self.w.legal[e].upper() + "."

    def _variant(self, e: int) -> str:
        r, base, form = self.r, self.w.base[e], self.w.form[e]
        x = r.random()
        if x < 0.2:
            words = base.split()
            abbr = (
                "".join(wd[0] for wd in words).upper()
                if len(words) > 1 and r.random() < 0.5
                else " ".join(wd[:4] + "." if len(wd) > 5 else wd for wd in words)
            )
            return f"{abbr} {form}".strip()
        if x < 0.4:
            return base
        if x < 0.6:
            return f"{base} {r.choice(FORM_VARIANTS.get(form, [form.upper() or 'Co']))}".strip()
        if x < 0.8:
            s = list(base)
            i = r.randrange(1, len(s))
            op = r.random()
            if op < 0.4:
                s[i] = r.choice("aeiourstnl")
            elif op < 0.7:
                del s[i]
            else:
                s.insert(i, s[i - 1])
            return f"{''.join(s)} {form}".strip()
        return fold(f"{base} {form}".strip()).upper()[:20].rstrip()

    # frames -----------------------------------------------------------------------------------
    def frames(self) -> dict[str, pd.DataFrame]:
        self.numbers()
        cfg, inv, trf, lnk = self.cfg, self.inv, self.trf, self.lnk
        labels = month_labels(cfg)
        start = pd.Period(cfg.start_month, freq="M")
        inv_month = (
            inv["issued"].astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
            - (start.year - 1970) * 12
            - (start.month - 1)
        )
        inv_order = np.lexsort((np.random.default_rng([cfg.seed, 5]).random(len(inv_month)), inv_month))
        trf_order = np.lexsort((np.random.default_rng([cfg.seed, 6]).random(len(trf["month"])), trf["month"]))
        iw = max(7, len(str(len(inv_order))))
        tw = max(7, len(str(len(trf_order))))
        inv_id = np.empty(len(inv_order), object)
        inv_id[inv_order] = [f"INV-{k + 1:0{iw}d}" for k in range(len(inv_order))]
        trf_id = np.empty(len(trf_order), object)
        trf_id[trf_order] = [f"TRF-{k + 1:0{tw}d}" for k in range(len(trf_order))]
        month_lbl = np.array(labels, dtype=object)

        # link lookup per transfer
        lo = np.argsort(lnk["t"], kind="stable")
        lt, li = lnk["t"][lo], lnk["inv"][lo]
        bounds = np.searchsorted(lt, np.arange(len(trf["kind"]) + 1))

        n = len(trf["kind"])
        kinds = parse_drift_kind(cfg.drift_kind)
        post = trf["month"] + 1 >= cfg.drift_month if cfg.drift_month is not None else np.zeros(n, bool)
        retitled = np.zeros(n, bool)  # title_format
        if "title_format" in kinds:
            ent = trf["payer"]
            retitled = post & (ent >= 0) & (self.w.bank[np.maximum(ent, 0)] == BIG_BANK)
        proc = np.zeros(n, bool)  # payer_change: paid by a processor
        if "payer_change" in kinds:
            c = trf["contr"]
            proc = (
                post
                & (trf["kind"] != NONE)
                & ~trf["out"]
                & ~trf["batch"]
                & (c >= 0)
                & (self.pc.proc[np.clip(c, 0, self.w.C - 1)] >= 0)
            )
        la = lnk["alloc"][lo]
        titles, names, accounts, cats = self.transfer_text(li, la, bounds, retitled, proc)
        drifted = retitled | proc
        fee, other, variant = trf["fee"].copy(), trf["other"] | proc, trf["variant"].copy()
        variant[proc] = self.proc_variant[proc]
        if proc.any():
            fee = self.processor_fee(proc, fee, lo, bounds)
            trf, lnk = self.trf, self.lnk
        invoices = self.invoice_frame(inv_id, inv_month, month_lbl)
        w = self.w
        contr = trf["contr"]
        t_currency = np.where(contr >= 0, w.currency[np.clip(contr, 0, w.C - 1)], cfg.currency)
        # per transfer, over its links: a credit note netted, a large-amount or batch-issuing contractor
        link_c = inv["contr"][lnk["inv"]]
        n_t = len(trf["kind"])

        def any_link(flag: np.ndarray) -> np.ndarray:
            return np.bincount(lnk["t"], weights=flag.astype(np.float64), minlength=n_t) > 0

        netted = np.sign(inv["amount"][lnk["inv"]]) != np.sign(trf["amount"][lnk["t"]])
        credit_note = any_link(inv["credit"][lnk["inv"]] & netted)
        large = any_link(w.large[link_c])
        batch_issued = any_link(w.billing_day[link_c] > 0)
        desc_ref = any_link(np.array([self.ref[k] is not None for k in lnk["inv"].tolist()], bool))
        transfers = (
            pd.DataFrame(
                {
                    "transfer_id": trf_id,
                    "month": month_lbl[trf["month"]],
                    "booked_at": trf["booked"].astype("datetime64[D]").astype("datetime64[us]"),
                    "amount": trf["amount"],
                    "currency": t_currency,
                    "title": titles,
                    "counterparty_name": names,
                    "counterparty_account": accounts,
                }
            )
            .iloc[trf_order]
            .reset_index(drop=True)
        )
        links = pd.DataFrame(
            {
                "transfer_id": trf_id[lnk["t"]],
                "invoice_id": inv_id[lnk["inv"]],
                "allocated_amount": lnk["alloc"],
                "month": month_lbl[lnk["month"]],
            }
        )
        links = links.iloc[np.lexsort((links["invoice_id"].to_numpy(), links["transfer_id"].to_numpy()))].reset_index(
            drop=True
        )
        truth = (
            pd.DataFrame(
                {
                    "transfer_id": trf_id,
                    "month": month_lbl[trf["month"]],
                    "kind": KINDS[trf["kind"]],
                    "number_in_title": CATS[cats],
                    "fee": fee,
                    "other_payer": other,
                    "name_variant": variant,
                    "drifted": drifted,
                    "outgoing": trf["out"],
                    "batch": trf["batch"],
                    "noise_numbers": self.noise,
                    "reason": np.where(
                        trf["reason"] >= 0, np.array(REASONS, dtype=object)[np.maximum(trf["reason"], 0)], None
                    ),
                    "n_invoices": np.diff(bounds),
                    "instalment_part": trf["part"],
                    "n_parts": trf["n_parts"],
                    "overpayment": trf["over"],
                    "remittance_partial": trf["remit_partial"],
                    "credit_note": credit_note,
                    "currency": t_currency,
                    "foreign_currency": t_currency != cfg.currency,
                    "large_amount": large,
                    "batch_issued": batch_issued,
                    "description_ref": desc_ref,
                }
            )
            .iloc[trf_order]
            .reset_index(drop=True)
        )
        if cfg.description_only:
            invoices = invoices.drop(columns=["invoice_number", "counterparty_name"])
            transfers = transfers.drop(columns=["counterparty_name", "counterparty_account"])
        return {"invoices": invoices, "transfers": transfers, "links": links, "truth": truth}

    def invoice_frame(self, inv_id, inv_month, month_lbl) -> pd.DataFrame:
        inv, w, r = self.inv, self.w, self.r_inv
        legal = [w.legal[c] for c in inv["contr"].tolist()]
        desc = []
        for k, (c, credit, void, mon) in enumerate(
            zip(inv["contr"].tolist(), inv["credit"].tolist(), inv["void"].tolist(), (self.m - 1).tolist())
        ):
            service = "credit note" if credit else SERVICES[(w.service[c] + (k % 3 == 0)) % len(SERVICES)]
            ref = self.ref[k]
            if self.cfg.description_only:
                if void == 2:
                    desc.append(f"{r.choice(['VOID', 'STORNO'])} {self.num[k]} {legal[k]}")
                else:
                    tail = f" - {ref}" if ref is not None else ""
                    desc.append(f"{legal[k]} - {service} {MON_EN[mon]} - {self.num[k]}{tail}")
            elif ref is not None:
                desc.append(self.reference_description(service, ref, int(self.ref_style[k]), mon, int(self.y[k]), c))
            else:
                desc.append(None if r.random() < 0.3 else f"{service} {mon + 1:02d}/{self.y[k]}")
        df = pd.DataFrame(
            {
                "invoice_id": inv_id,
                "month": month_lbl[inv_month],
                "issued_at": inv["issued"].astype("datetime64[D]").astype("datetime64[us]"),
                "due_at": inv["due"].astype("datetime64[D]").astype("datetime64[us]"),
                "amount": np.round(inv["amount"], 2),
                "currency": w.currency[inv["contr"]],
                "invoice_number": self.num,
                "counterparty_name": legal,
                "description": desc,
            }
        )
        return df.iloc[np.lexsort((inv_id, inv_month))].reset_index(drop=True)

    def reference_description(self, service: str, ref: str, style: int, mon: int, y: int, c: int) -> str:
        """A description that carries a reference: "consulting services 03/2025, PO 4500012345", "Zlecenie
        ASG-2025-004411 - maintenance", "Vertrag KTR/2024/118; Leistungen März"."""
        r, lang = self.r_inv, self.w.lang[c]
        label = ref_label(style, lang)
        period = r.choice([f"{mon + 1:02d}/{y}", MON_EN[mon], f"{MON_EN[mon][:3]} {y}", ""])
        forms = [
            f"{service} {period}, {label} {ref}",
            f"{label} {ref} - {service}",
            f"{label}: {ref}; {service} {period}",
            f"{service} ({label.lower()} {ref})",
            f"{ref} {service}",
        ]
        return " ".join(r.choice(forms).split())

    def transfer_text(self, li, la, bounds, drifted, proc):
        """Title, payer name and account per transfer. ``drifted``: title_format rewrite; ``proc``: paid by a
        processor (payer_change). Processor transfers draw their ordinary text first and then replace it, so
        the main random stream, and with it every other transfer's text, is the same as without payer_change."""
        cfg, w, r, trf = self.cfg, self.w, self.r, self.trf
        n = len(trf["kind"])
        titles, names, accounts = [None] * n, [None] * n, [None] * n
        cats = trf["cat"].copy()
        self.noise = np.zeros(n, bool)
        self.proc_variant = np.zeros(n, bool)
        num, seq, inv = self.num, self.seq, self.inv
        booked = trf["booked"].astype("datetime64[D]").astype(object)
        for t in range(n):
            e, cat = int(trf["payer"][t]), int(cats[t])
            lang = w.lang[e]
            d = booked[t]
            invs = li[bounds[t] : bounds[t + 1]].tolist()
            paid = dict(zip(invs, la[bounds[t] : bounds[t + 1]].tolist()))
            if trf["ref"][t] >= 0:
                invs = [int(trf["ref"][t])]
            ctx = dict(
                y=d.year,
                mm=f"{d.month:02d}",
                dd=f"{d.day:02d}",
                q=(d.month - 1) // 3 + 1,
                ref=r.randrange(10**5, 10**8),
                mon=MON_EN[d.month - 1],
                mon_pl=MON_PL[d.month - 1],
                mon_de=MON_DE[d.month - 1],
                MON=MON_EN[d.month - 1][:3].upper(),
            )
            if invs:
                im = int(self.m[invs[0]]) - 1
                ctx.update(mon=MON_EN[im], mon_pl=MON_PL[im], mon_de=MON_DE[im], MON=MON_EN[im][:3].upper())
            # numbers as they appear in the title
            shown = [k for k in invs if not inv["credit"][k] or r.random() < 0.5] or invs
            if cat == EXACT:
                parts = [num[k] for k in shown]
            elif cat == DAMAGED:
                j = r.randrange(len(shown))
                parts = [damage(num[k], r) if i == j else num[k] for i, k in enumerate(shown)]
            elif cat == OTHER:
                style, sep = r.random(), r.choice([" ", "-", ".", "/"])
                parts = [other_format(num[k], int(seq[k]), style, sep) for k in shown]
            elif cat == REFERENCE:
                style, sep = r.random(), r.choice([" ", "-", ".", "/"])
                plain = r.random() < 0.7
                parts = [
                    self.ref[k] if plain else other_format(self.ref[k], int(self.ref_seq[k]), style, sep)
                    for k in shown
                    if self.ref[k] is not None
                ] or [num[k] for k in shown]
            else:
                parts = []
            kind = int(trf["kind"][t])
            amounts = [paid.get(k, 0.0) for k in shown]
            if kind == REMITTANCE and parts:  # the advice lists most numbers, not always all
                listed = [j for j in range(len(parts)) if r.random() < 0.92] or [0]
                parts, amounts = [parts[j] for j in listed], [amounts[j] for j in listed]
            if cfg.description_only and cat == OTHER:
                parts = [str(int(seq[k])) for k in shown]
            if drifted[t] and parts:
                if r.random() < 0.4:
                    parts, cats[t] = [], ABSENT
                else:
                    parts = [re.sub(r"[/\-\s.]", "", p).upper() for p in parts]
                    if cat == EXACT and any(p != num[k] for p, k in zip(parts, shown)):
                        cats[t] = OTHER
            noise = r.random() < 0.3
            self.noise[t] = noise
            name = w.legal[e] if not trf["variant"][t] else self.variant(e)
            reason = REASONS[trf["reason"][t]] if trf["reason"][t] >= 0 else None
            draft = TitleDraft(t, e, lang, ctx, len(invs), parts, noise, name, reason, bool(drifted[t]), kind, amounts)
            if cfg.description_only:
                title = self.bank_line(draft)
            else:
                title = self.title(draft)
                if title is None:
                    self.noise[t] = False
                if drifted[t]:
                    title = ("SCT /REMI/ " + (title or "").upper()).strip()
                    name = fold(name).upper()[:18].rstrip()
            titles[t] = title
            names[t] = name
            x = r.random()
            if reason not in ("bank_fee", "interest") and x >= 0.02:
                accounts[t] = w.alt_account[e] if x < 0.06 else w.account[e]
            if proc[t]:
                titles[t], names[t], accounts[t], cats[t], self.proc_variant[t] = self.processor_text(
                    int(trf["contr"][t]), invs
                )
                self.noise[t] = True  # the processor's reference number
        return titles, names, accounts, cats

    def processor_text(self, c: int, invs: list[int]):
        """(title, name, account, number category, name shown in a variant) of a transfer a processor pays for ``c``."""
        r, pc, inv = self.r_proc, self.pc, self.inv
        p = int(pc.proc[c])
        legal, shown, weights, _, _, n_acc, _, short = PROCESSORS[p]
        name = r.choices(shown, weights)[0]
        home = int(pc.home[c])
        k = home if n_acc == 1 or r.random() >= PROC_OTHER_ACCOUNT else r.choice([a for a in range(n_acc) if a != home])
        account = pc.accounts[p][k]
        ref = str(r.randrange(10**13, 10**14) if p == 0 else r.randrange(10**10, 10**11))
        cat, parts = ABSENT, []
        if r.random() < PROC_NUMBER_SHARE:
            shown_inv = [i for i in invs if not inv["credit"][i]] or invs
            parts = [re.sub(r"[/\-\s.]", "", self.num[i]).upper() if p == 0 else self.num[i] for i in shown_inv]
            cat = EXACT if all(a == self.num[i] for a, i in zip(parts, shown_inv)) else OTHER
        abbr = abbreviate(self.w.base[c], r) if r.random() < PROC_ABBR_SHARE else ""
        if self.cfg.description_only:
            title = " ".join([short, ref, *parts, abbr]).strip()
        else:
            head, with_inv, with_abbr = r.choice(T_PROC[p])
            title = (
                head.format(ref=ref)
                + (with_inv.format(inv=" ".join(parts)) if parts else "")
                + (with_abbr.format(abbr=abbr) if abbr else "")
            )
        return title, name, account, cat, name != legal

    def processor_fee(self, proc, fee, lo, bounds) -> np.ndarray:
        """A small processor fee off some processor transfers (single/multi, no discount yet): the transfer amount
        drops by <= 2 % and its allocations are scaled as for a discount, cents residue on the last link."""
        trf, lnk = self.trf, self.lnk
        rng = np.random.default_rng([self.cfg.seed, 9])
        n = len(proc)
        u, fixed = rng.random(n), rng.random(n) < 0.5
        amt = trf["amount"]
        ded = np.where(fixed, rng.choice([0.5, 1.0, 1.5, 2.0, 2.5], n), np.abs(amt) * rng.uniform(0.001, 0.008, n))
        ded = np.maximum(0.01, np.round(np.minimum(ded, 0.02 * np.abs(amt)), 2))
        sel = np.flatnonzero(
            proc
            & np.isin(trf["kind"], [SINGLE, MULTI])
            & (trf["role"] == 0)
            & ~fee
            & ~trf["over"]
            & (u < PROC_FEE_SHARE)
        )
        amount, alloc = amt.copy(), lnk["alloc"].copy()
        for t in sel.tolist():
            new = round(float(amt[t] - np.sign(amt[t]) * ded[t]), 2)
            idx = lo[bounds[t] : bounds[t + 1]]
            a = np.round(alloc[idx] * (new / amt[t]), 2)
            a[-1] = round(a[-1] + round(new - a.sum(), 2), 2)
            alloc[idx], amount[t] = a, new
        self.trf = {**trf, "amount": amount}
        self.lnk = {**lnk, "alloc": alloc}
        fee = fee.copy()
        fee[sel] = True
        return fee

    def title(self, d: TitleDraft) -> str | None:
        """A payer's title in its language: the number(s) in a phrase, a reason's phrase, or a phrase without a
        number; partial-payment words, a noise number, sometimes upper case. None: an empty title (1 %)."""
        r, reason, lang, parts, ctx = self.r, d.reason, d.lang, d.parts, d.ctx
        if reason is not None and reason != "duplicate":
            key = "refund_num" if reason == "refund" and parts else reason
            title = r.choice(T_REASON[key]).format(n=" ".join(parts), **ctx)
        elif d.kind == REMITTANCE and parts:
            return self.remittance_title(d)
        elif d.kind == INSTALMENT:
            k, of = int(self.trf["part"][d.t]), int(self.trf["n_parts"][d.t])
            joined = " ".join(parts)
            title = r.choice(T_INST[lang] if parts else T_INST_NONUM[lang]).format(n=joined, k=k, of=of)
            title = " ".join(title.split())
        elif parts:
            joiner = r.choice(
                [", ", " ", "; ", " + "]
                + ([" i ", " oraz "] if lang == "pl" else [" und "] if lang == "de" else [" and "])
            )
            title = r.choice(T_NUM[lang]).format(n=joiner.join(parts))
        else:
            if r.random() < 0.01:
                return None
            title = r.choice(T_NONUM[lang]).format(**ctx)
        if self.trf["role"][d.t] == 1:
            title += " " + r.choice(T_PART1[lang])
        elif self.trf["role"][d.t] == 2:
            title += " " + r.choice(T_PART2[lang])
        if d.noise:
            tok = self.noise_token(d.t, ctx)
            title = f"{tok} {title}" if r.random() < 0.4 else f"{title} {tok}"
        if r.random() < 0.08:
            title = title.upper()
        return title

    def remittance_title(self, d: TitleDraft) -> str:
        """A remittance advice: most invoice numbers, in one of several list styles, sometimes each with the amount
        paid on it ("remit 2025/0142 1200.00; 2025/0150 830.50")."""
        r, lang = self.r, d.lang
        with_amounts = r.random() < 0.4
        items = [f"{p} {money(a, lang, r)}" if with_amounts else p for p, a in zip(d.parts, d.amounts)]
        sep = r.choice(["; ", ", ", " / ", " "] if not with_amounts else ["; ", " / ", " | "])
        title = r.choice(T_REMIT[lang]).format(n=sep.join(items), count=len(items))
        return title.upper() if r.random() < 0.08 else title

    def noise_token(self, t, ctx) -> str:
        """Numbers that are not invoice numbers: orders, dates, account fragments, amounts, tax ids."""
        r = self.r
        a = abs(float(self.trf["amount"][t]))
        acct = self.w.account[int(self.trf["payer"][t])]
        return r.choice(
            [
                f"PO {r.randrange(10**6, 10**7)}",
                f"zam. {r.randrange(100, 9999)}/{ctx['y']}",
                f"ZAM/{ctx['y']}/{ctx['mm']}/{r.randrange(1, 999):04d}",
                f"{ctx['dd']}.{ctx['mm']}.{ctx['y']}",
                f"{ctx['y']}-{ctx['mm']}-{ctx['dd']}",
                f"acc ...{acct[-4:]}",
                f"kwota {a:,.2f}".replace(",", " ").replace(".", ","),
                f"{self.currency_of(t)} {a:.2f}",
                f"Kd-Nr. {r.randrange(10**5, 10**6)}",
                f"order {r.randrange(10**4, 10**5)}",
                f"NIP {r.randrange(10**9, 10**10)}",
                f"client no {r.randrange(10**5, 10**6)}",
            ]
        )

    def currency_of(self, t: int) -> str:
        c = int(self.trf["contr"][t])
        return str(self.w.currency[c]) if c >= 0 else self.cfg.currency

    def bank_line(self, d: TitleDraft) -> str:
        """Terse bank line for description_only: "NORDWIND HANDELS 142 MAR"."""
        r, trf, reason, parts, ctx, drifted = self.r, self.trf, d.reason, d.parts, d.ctx, d.drifted
        if trf["batch"][d.t]:
            return f"BATCH DEPOSIT {d.n_invoices} ITEMS"
        form = self.w.form[d.payer]
        base = d.name if form == "" or r.random() < 0.3 else d.name.replace(form, "")
        nm = fold(base).upper().replace(".", "").strip()[: (12 if drifted else r.choice([16, 18, 20]))].rstrip()
        if reason is not None and reason != "duplicate":
            line = " ".join(r.choice(D_REASON[reason]).format(NAME=nm, n=" ".join(parts), PERSON=nm, **ctx).split())
        else:
            line = " ".join([nm, *parts, ctx["MON"]])
            if trf["role"][d.t]:
                line += " PART"
            elif trf["part"][d.t]:
                line += f" PART {trf['part'][d.t]}/{trf['n_parts'][d.t]}"
        if d.noise:
            line += f" REF {r.randrange(10**4, 10**6)}"
        return ("SCT " + line) if drifted else line
