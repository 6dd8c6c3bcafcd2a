"""The entities of the synthetic world and their stable traits: contractors (customers and suppliers),
parent companies, factors, the special counterparties of transfers that pay nothing, persons, their banks
and accounts; and, for the payer_change drift, which customers a payment processor takes over.

Drawn once per seed on their own random streams, so the monthly plan and the rendering can change without
moving a contractor.
"""

from __future__ import annotations

import numpy as np

from .config import SyntheticConfig
from .text import N_REF_STYLES
from .vocabulary import (
    BASES,
    BILLING_DAYS,
    COUNTRIES,
    COUNTRY_CURRENCY,
    COUNTRY_P,
    FACTORS,
    FIRST_NAMES,
    FOREIGN_CURRENCIES,
    FORMS,
    FX_PER_EUR,
    INDUSTRIES,
    LANG,
    LAST_NAMES,
    PROCESSORS,
    REGIONS,
    SERVICES,
    SPECIAL,
    VAT,
)

BIG_BANK = 0  # the bank of ~40 % of payers; its customers' titles change in the title_format drift


def iban(rng: np.random.Generator, country: str, bank_code: str) -> str:
    """IBAN-like account with valid mod-97 check digits (country-typical length)."""
    n = {"PL": 16, "DE": 10, "GB": 8, "NL": 10, "CZ": 16, "SE": 17}[country]
    bban = bank_code + "".join(map(str, rng.integers(0, 10, n)))
    num = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(num) % 97:02d}{bban}"


class World:
    """Entities (contractors, parents, factors, special counterparties, persons) and their traits."""

    def __init__(self, cfg: SyntheticConfig):
        rng = np.random.default_rng([cfg.seed, 0])
        C = cfg.contractors
        bases, forms, countries = [], [], []
        # unique contractor names: base x industry (x region when more are needed)
        nb, ni = len(BASES), len(INDUSTRIES)
        total = nb * ni * (1 + len(REGIONS))
        picks = rng.permutation(nb * ni)[:C] if C <= nb * ni else rng.permutation(total)[:C]
        ctry = rng.choice(COUNTRIES, C, p=COUNTRY_P)
        for k, p in enumerate(picks):
            b, rest = BASES[p % nb], p // nb
            ind, reg = INDUSTRIES[rest % ni], rest // ni
            base = f"{b} {ind}" + (f" {REGIONS[reg - 1]}" if reg else "") + (f" {k}" if k >= total else "")
            form = FORMS[ctry[k]][rng.integers(len(FORMS[ctry[k]]))]
            bases.append(base), forms.append(form), countries.append(ctry[k])
        # parent companies and factors
        G = max(1, C // 12)
        for g in range(G):
            c = str(rng.choice(COUNTRIES, p=COUNTRY_P))
            form = FORMS[c][0]
            (
                bases.append(f"{BASES[rng.integers(nb)]} {['Group', 'Holding', 'Capital'][g % 3]}"),
                forms.append(form),
                countries.append(c),
            )
        self.factor_ids = np.arange(len(bases), len(bases) + len(FACTORS))
        for b, f, c in FACTORS:
            bases.append(b), forms.append(f), countries.append(c)
        self.special = {}
        for key, items in SPECIAL.items():
            self.special[key] = np.arange(len(bases), len(bases) + len(items))
            for b, f, c in items:
                bases.append(b), forms.append(f), countries.append(c)
        P = max(20, C // 4)
        self.special["person"] = np.arange(len(bases), len(bases) + P)
        for _ in range(P):
            (
                bases.append(
                    f"{FIRST_NAMES[rng.integers(len(FIRST_NAMES))]} {LAST_NAMES[rng.integers(len(LAST_NAMES))]}"
                ),
                forms.append(""),
                countries.append("PL"),
            )
        E = len(bases)
        self.base, self.form, self.country = bases, forms, countries
        self.legal = [f"{b} {f}".strip() for b, f in zip(bases, forms)]
        self.lang = [LANG[c] if rng.random() < 0.8 else "en" for c in countries]
        self.bank = rng.choice(6, E, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05])
        self.bank[self.special["bank"]] = 1  # our own bank is not the drifting one
        codes = {
            (c, b): (
                (
                    "".join(rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), 4))
                    + "".join(map(str, rng.integers(0, 10, 6 if c == "GB" else 0)))
                )
                if c in ("GB", "NL")
                else "".join(map(str, rng.integers(0, 10, 4 if c == "CZ" else 8)))
            )
            for c in COUNTRIES
            for b in range(6)
        }
        self.account = [iban(rng, c, codes[c, b]) for c, b in zip(countries, self.bank)]
        self.alt_account = [iban(rng, c, codes[c, (b + 1) % 6]) for c, b in zip(countries, self.bank)]
        # contractor traits
        self.C = C
        sup = np.zeros(C, bool)
        sup[rng.permutation(C)[: min(C - 1, max(1, round(0.2 * C)))]] = True
        self.supplier = sup
        weight = np.exp(rng.normal(0.0, 1.0, C))  # a few big, many small contractors
        self.customers, self.suppliers = np.flatnonzero(~sup), np.flatnonzero(sup)
        self.cust_p = weight[self.customers] / weight[self.customers].sum()
        self.sup_p = weight[self.suppliers] / weight[self.suppliers].sum()
        self.scale = np.exp(rng.normal(np.log(1200), 0.9, C))
        self.vat = np.array([VAT[c] for c in countries[:C]])
        self.term = rng.choice([7, 14, 14, 21, 30, 30, 30, 45, 60], C)
        fixed = np.zeros(C)
        subs = rng.permutation(C)[: round(cfg.rate_same_amount_siblings * C)]
        prices = np.array([49, 99, 149, 199, 249, 299, 350, 499, 799, 999, 1200, 1499, 2500, 2999, 4500])
        for c in subs:
            fixed[c] = (
                float(prices[np.abs(prices - self.scale[c]).argmin()])
                if rng.random() < 0.6
                else round(round(self.scale[c], -1) * self.vat[c], 2)
            )
        self.fixed = fixed
        self.fmt = np.where(sup, rng.choice([5, 6, 7], C), rng.choice(5, C, p=[0.3, 0.25, 0.15, 0.15, 0.15]))
        self.parent = np.where((rng.random(C) < 0.25) & ~sup, C + rng.integers(0, G, C), -1)
        self.factor = self.factor_ids[rng.integers(0, len(FACTORS), C)]
        self.service = rng.integers(0, len(SERVICES), C)
        self.weight = weight
        self._shapes(cfg, np.random.default_rng([cfg.seed, 10]))

    def _shapes(self, cfg: SyntheticConfig, rng: np.random.Generator) -> None:
        """Traits of the payment shapes (issue 15), on their own stream: currencies, large amounts, billing days,
        description references, and the big customers that pay by remittance."""
        C = self.C
        # currency: the home one, or (rate_foreign_currency) the country's own or another one
        self.currency = np.full(C, cfg.currency, dtype=object)
        foreign = np.flatnonzero(rng.random(C) < cfg.rate_foreign_currency)
        others = [c for c in FOREIGN_CURRENCIES if c != cfg.currency]
        for c in foreign.tolist():
            own = COUNTRY_CURRENCY.get(self.country[c])
            pick = own if own in others and rng.random() < 0.6 else others[rng.integers(len(others))]
            self.currency[c] = pick
        self.fx = np.array([FX_PER_EUR.get(cur, 1.0) / FX_PER_EUR.get(cfg.currency, 1.0) for cur in self.currency])
        # large amounts: 30-1000x the scale, at most ~2M in the contractor's currency (amounts up to ~10^7)
        self.large = rng.random(C) < cfg.rate_large_amounts
        boost = np.where(self.large, 10 ** rng.uniform(1.5, 3.0, C), 1.0)
        self.scale = np.minimum(self.scale * boost * self.fx, np.maximum(self.scale * self.fx, 2e6))
        fixed = self.fixed * self.fx
        self.fixed = np.where(self.fx >= 10, np.round(fixed, -1), np.round(fixed, 2))
        # invoices issued in batches: all of a month's invoices on the contractor's billing day (0: any day)
        self.billing_day = np.where(rng.random(C) < cfg.rate_batch_issue, rng.choice(BILLING_DAYS, C), 0)
        # references in the invoice description: a style per contractor (every contractor's instalment invoices
        # carry one; rate_invoice_reference of them put one in every description)
        self.uses_refs = rng.random(C) < cfg.rate_invoice_reference
        self.ref_style = rng.integers(0, N_REF_STYLES, C)
        # remittances come from the big customers: the top fifth by activity
        cw = self.weight[self.customers]
        big = cw >= np.quantile(cw, 0.8)
        self.remitters, self.remit_p = self.customers[big], cw[big] / cw[big].sum()


class PayerChange:
    """payer_change drift: which customers each processor pays for, and from which of its accounts.

    Own random stream, so the world, the plan and every other draw are the same as without it."""

    def __init__(self, cfg: SyntheticConfig, world: World):
        rng = np.random.default_rng([cfg.seed, 8])
        k = round(cfg.drift_share_contractors * len(world.customers))
        chosen = np.sort(rng.permutation(world.customers)[:k])
        self.proc = np.full(world.C, -1, np.int64)  # processor per contractor, -1: pays itself
        self.proc[chosen] = rng.choice(len(PROCESSORS), k, p=[p.share for p in PROCESSORS])
        self.accounts = [[iban(rng, p.country, p.bank_code) for _ in range(p.n_accounts)] for p in PROCESSORS]
        n_acc = np.array([p.n_accounts for p in PROCESSORS])
        self.home = np.zeros(world.C, np.int64)  # the processor account a contractor's payments usually come from
        self.home[chosen] = (rng.random(k) * n_acc[self.proc[chosen]]).astype(np.int64)
        self.contractors = chosen
