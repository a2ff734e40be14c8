"""The recommended landmark (method ``consensus``): the registrations and the agents combined by their agreement.

Registration is very precise where tissue is preserved and fails at the cavity wall; the agents are less
precise but need no smooth deformation. Per landmark (all positions in pre-op world mm):

``R`` is the registration's landmark (``consensus.registration``, default ``ants_syn``), ``R2`` the second,
independent registration's (``consensus.second``, when it runs), ``S`` the seeded agents' refinement of ``R``
(``agent_seeded``: the fine agents started at ``R``), ``G`` the predictions of the agents that searched on their
own (the other methods of ``consensus.methods``); none of them counts where it fell back to its start. Two
points agree when they are at most ``agree_mm`` apart; ``R`` is *confirmed* when ``R2`` or at least one of ``G``
agrees with it.

=====================================  ==================================  ===================  ===================
case                                   position                            uncertainty_mm       flag
=====================================  ==================================  ===================  ===================
R confirmed, S agrees with R and       S (``refined``)                     mean distance of the  when neither R2 nor
``consensus.refine``                                                       confirming ones to   half of G agree
                                                                           the position
R2 agrees with R and                   their mean (``registrations``)      mean distance of R   no
``consensus.average``                                                      and the confirming
                                                                           ones to it
R confirmed (otherwise)                R (``agreement``; ``outlier`` when  as above             as above
                                       some of G do not agree)
R not confirmed; R2 agrees with the    R2 (``second_registration``)        distance R2 - median  yes
median of G                                                                of G
R not confirmed, no R2; G agree       the median of G                     distance R - median  yes
among themselves (>= 2 of them) and    (``registration_overruled``)        of G
are more than ``overrule_mm`` from R
R not confirmed, otherwise             R (``disagreement``; with nothing   distance R - median  yes
                                       else ``unconfirmed``)               of G (unconfirmed:
                                                                           R - R2, NaN without)
no R: R2 takes its place               as above
G only                                 median of G (``agents_only``)       mean distance to it  when two of G are
                                                                           (one: NaN)           more than agree_mm
                                                                                                apart, or only one
nothing                                the start (rigidly aligned) point   NaN                  yes
                                       (``no_method``)
=====================================  ==================================  ===================  ===================

Two independent registrations that agree are stronger evidence than one: ``R`` confirmed by ``R2`` alone is
not flagged. The median is coordinate-wise. PIN is not listed by default: it is experimental (it does worse
than the rigidly aligned position on the demo; see the README).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.config import default, schema_field
from ..core.errors import InputError
from ..io.landmarks import points_of, read_landmarks, write_landmarks

log = logging.getLogger(__name__)

COLUMNS = ["landmark", "x", "y", "z", "uncertainty_mm", "flag", "rule", "methods"]
#: the summary's columns of :func:`flag_statistics`
FLAG_COLUMNS = ["method", "flagged", "flag_catch", "flag_false_alarm"]


@dataclass
class ConsensusConfig:
    """Consensus settings (config key ``consensus``); defaults from the config schema."""

    registration: str = schema_field("consensus", "registration")
    second: str | None = schema_field("consensus", "second")
    methods: list = schema_field("consensus", "methods")
    refine: bool = schema_field("consensus", "refine")
    average: bool = schema_field("consensus", "average")
    agree_mm: float = schema_field("consensus", "agree_mm")
    overrule_mm: float = schema_field("consensus", "overrule_mm")
    flag_error_mm: float = schema_field("consensus", "flag_error_mm")  # the summary scores the flag against errors above this

    def __post_init__(self):
        if not (0 < self.agree_mm <= self.overrule_mm):
            raise ValueError(f"consensus: expected 0 < agree_mm ({self.agree_mm}) <= overrule_mm ({self.overrule_mm})")
        if self.second is not None and self.second == self.registration:
            raise ValueError(f"consensus: the second registration ({self.second}) must not be the first one")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: dict) -> "ConsensusConfig":
        return cls(**{k: v for k, v in (settings or {}).items() if k != "activate"})

    @property
    def registrations(self) -> list[str]:
        return [self.registration] + ([self.second] if self.second else [])


#: the seeded agents: the refinement of the registration's landmark, not an independent vote
SEEDED_METHOD = "agent_seeded"


@dataclass
class Decision:
    point: np.ndarray
    uncertainty_mm: float
    flag: bool
    rule: str


def decide(registration, others: dict, start, cfg: ConsensusConfig, second=None) -> Decision:
    """The consensus of one landmark: ``registration`` (3,) or None, ``second`` the second registration's (3,) or
    None, ``others`` {method: (3,)} (those that did not fall back; ``agent_seeded`` is the refinement ``S``),
    ``start`` (3,) the rigidly aligned position; world mm."""
    pts = {k: np.asarray(v, float) for k, v in others.items()}
    refined = pts.pop(SEEDED_METHOD, None)
    if registration is None and second is not None:
        registration, second = second, None
    g = np.stack(list(pts.values())) if pts else np.empty((0, 3))
    if registration is None:
        return _without_registration(g, start, cfg)
    r = np.asarray(registration, float)
    r2 = None if second is None else np.asarray(second, float)
    d = np.linalg.norm(g - r, axis=1) if len(g) else np.empty(0)
    agree = d <= cfg.agree_mm
    second_agrees = r2 is not None and float(np.linalg.norm(r2 - r)) <= cfg.agree_mm
    if agree.any() or second_agrees:
        confirming = list(g[agree]) + ([r2] if second_agrees else [])
        flag = not second_agrees and bool(agree.sum() < len(g) / 2)
        if cfg.refine and refined is not None and float(np.linalg.norm(refined - r)) <= cfg.agree_mm:
            return Decision(refined, float(np.mean([np.linalg.norm(c - refined) for c in confirming])), flag, "refined")
        if second_agrees and cfg.average:  # two independent estimates of one point: their mean
            mid = (r + r2) / 2
            return Decision(mid, float(np.mean([np.linalg.norm(c - mid) for c in [r] + confirming])), flag,
                            "registrations")
        rule = "agreement" if agree.all() else "outlier"
        return Decision(r, float(np.mean([np.linalg.norm(c - r) for c in confirming])), flag, rule)
    if not len(g):
        return Decision(r, np.nan if r2 is None else float(np.linalg.norm(r2 - r)), True, "unconfirmed")
    median = np.median(g, axis=0)
    if r2 is not None and float(np.linalg.norm(r2 - median)) <= cfg.agree_mm:
        return Decision(r2, float(np.linalg.norm(r2 - median)), True, "second_registration")
    far = float(np.linalg.norm(median - r))
    widest = max((float(np.linalg.norm(a - b)) for i, a in enumerate(g) for b in g[i + 1:]), default=0.0)
    # the agents (trained on one scan, so not independent of each other) overrule a registration only where no
    # second, independent registration contradicts them
    if r2 is None and len(g) >= 2 and widest <= cfg.agree_mm and far > cfg.overrule_mm:
        return Decision(median, far, True, "registration_overruled")
    return Decision(r, far, True, "disagreement")


def _without_registration(g: np.ndarray, start, cfg: ConsensusConfig) -> Decision:
    if len(g) == 1:
        return Decision(g[0], np.nan, True, "agents_only")
    if len(g):
        median = np.median(g, axis=0)
        widest = max(float(np.linalg.norm(a - b)) for i, a in enumerate(g) for b in g[i + 1:])
        return Decision(median, float(np.linalg.norm(g - median, axis=1).mean()), bool(widest > cfg.agree_mm), "agents_only")
    return Decision(np.asarray(start, float), np.nan, True, "no_method")


def build_consensus(landmark_files: dict, start_csv, cfg: ConsensusConfig, out_csv) -> pd.DataFrame:
    """Write ``landmarks/consensus.csv`` (``landmark,x,y,z,uncertainty_mm,flag,rule,methods``, and ``label``
    when the start positions carry the users' labels) from the
    methods' landmark files (``{method: path}``; those not in the config are ignored, missing ones are
    absent) and the rigidly aligned start positions ``start_csv`` (``identity.csv``)."""
    start = read_landmarks(start_csv)
    tables = {}
    for method, path in landmark_files.items():
        if method not in cfg.registrations and method not in cfg.methods:
            continue
        if not Path(path).exists():
            raise InputError(f"{path}: the landmark file of method {method} is missing")
        t = read_landmarks(path).set_index("landmark")
        t["fallback"] = pd.to_numeric(t["fallback"], errors="coerce").fillna(0) if "fallback" in t.columns else 0
        tables[method] = t
    rows = []
    for lid, xyz in zip(start["landmark"], points_of(start)):
        regs = {m: tables[m].loc[lid, ["x", "y", "z"]].to_numpy(float) for m in cfg.registrations
                if m in tables and lid in tables[m].index and not tables[m].loc[lid, "fallback"]}
        others = {}
        for method in cfg.methods:
            t = tables.get(method)
            if t is None or lid not in t.index:
                continue
            if not t.loc[lid, "fallback"]:  # a fallback is the start position, not a prediction
                others[method] = t.loc[lid, ["x", "y", "z"]].to_numpy(float)
        dec = decide(regs.get(cfg.registration), others, xyz, cfg, second=regs.get(cfg.second))
        rows.append({"landmark": lid, "x": dec.point[0], "y": dec.point[1], "z": dec.point[2],
                     "uncertainty_mm": dec.uncertainty_mm, "flag": int(dec.flag), "rule": dec.rule,
                     "methods": "+".join(list(regs) + list(others))})
    df = pd.DataFrame(rows, columns=COLUMNS)
    if "label" in start.columns:  # the labels as the user wrote them ("Point 1"), beside their identifiers
        df["label"] = start["label"].to_numpy()
    write_landmarks(df, out_csv)
    flagged = int(df["flag"].sum())
    log.info("consensus: %d landmarks, %d flagged (%s)", len(df), flagged,
             ", ".join(f"{k} {v}" for k, v in df["rule"].value_counts().items()))
    return df


def flag_statistics(err: pd.DataFrame, threshold_mm: float = default("consensus", "flag_error_mm")) -> pd.DataFrame:
    """Per method with a ``flag`` column (errors table): how well the flag catches errors above
    ``threshold_mm``: ``flag_catch`` = share of those landmarks that are flagged, ``flag_false_alarm`` =
    share of the flagged landmarks whose error is at most ``threshold_mm``, ``flagged`` = their number."""
    rows = []
    if "flag" not in err.columns:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    for method, g in err[err["flag"].notna()].groupby("method", sort=False):
        flag = g["flag"].astype(bool).to_numpy()
        bad = g["error_mm"].to_numpy() > threshold_mm
        rows.append({"method": method, "flagged": int(flag.sum()),
                     "flag_catch": float(flag[bad].mean()) if bad.any() else np.nan,
                     "flag_false_alarm": float((~bad[flag]).mean()) if flag.any() else np.nan})
    return pd.DataFrame(rows, columns=FLAG_COLUMNS)
