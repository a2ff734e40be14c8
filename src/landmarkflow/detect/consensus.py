"""The recommended landmark (method ``consensus``): ANTs SyN and the agents combined by their agreement.

Registration is very precise where tissue is preserved and fails at the cavity wall; the agents are less
precise but need no smooth deformation. Per landmark (all positions in pre-op world mm):

``R`` is the registration's landmark (``consensus.registration``, default ``ants_syn``), ``G`` the
predictions of the other listed methods (``consensus.methods``) that did not fall back to their start
position; a method agrees with another when they are at most ``agree_mm`` apart.

=====================================  ==================================  ===================  ======
case                                   position                            uncertainty_mm       flag
=====================================  ==================================  ===================  ======
R and some of G agree with R           R (``agreement``; ``outlier`` when  mean distance of the  when fewer than half
                                       some of G do not)                   agreeing G to R      of G agree
R, none of G agree with R; G agree     the median of G                     distance R - median   yes
among themselves (>= 2 of them) and    (``registration_overruled``)        of G
are more than ``overrule_mm`` from R
R, none of G agree, otherwise          R (``disagreement``)                distance R - median   yes
                                                                           of G
R only                                 R (``unconfirmed``)                 NaN                  yes
G only                                 median of G (``agents_only``)       mean distance to it  when two of G are
                                                                           (one: its spread)    more than agree_mm
                                                                                                apart, or only one
nothing                                the start (rigidly aligned) point   NaN                  yes
                                       (``no_method``)
=====================================  ==================================  ===================  ======

The median is coordinate-wise. PIN is not listed by default: it is experimental (it does worse than
the rigidly aligned position on the demo; see the README).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.config import schema_field
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
    methods: list = schema_field("consensus", "methods")
    agree_mm: float = schema_field("consensus", "agree_mm")
    overrule_mm: float = schema_field("consensus", "overrule_mm")
    flag_error_mm: float = schema_field("consensus", "flag_error_mm")  # the summary scores the flag against errors above this

    def __post_init__(self):
        if not (0 < self.agree_mm <= self.overrule_mm):
            raise ValueError(f"consensus: expected 0 < agree_mm ({self.agree_mm}) <= overrule_mm ({self.overrule_mm})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: dict) -> "ConsensusConfig":
        return cls(**{k: v for k, v in (settings or {}).items() if k != "activate"})


@dataclass
class Decision:
    point: np.ndarray
    uncertainty_mm: float
    flag: bool
    rule: str


def decide(registration, others: dict, start, cfg: ConsensusConfig) -> Decision:
    """The consensus of one landmark: ``registration`` (3,) or None, ``others`` {method: (3,)} (those that did
    not fall back), ``start`` (3,) the rigidly aligned position; world mm."""
    pts = {k: np.asarray(v, float) for k, v in others.items()}
    g = np.stack(list(pts.values())) if pts else np.empty((0, 3))
    median = np.median(g, axis=0) if len(g) else None
    widest = max((float(np.linalg.norm(a - b)) for i, a in enumerate(g) for b in g[i + 1:]), default=0.0)
    if registration is not None:
        r = np.asarray(registration, float)
        if not len(g):
            return Decision(r, np.nan, True, "unconfirmed")
        d = np.linalg.norm(g - r, axis=1)
        agree = d <= cfg.agree_mm
        if agree.any():
            return Decision(r, float(d[agree].mean()), bool(agree.sum() < len(g) / 2),
                            "agreement" if agree.all() else "outlier")
        far = float(np.linalg.norm(median - r))
        if len(g) >= 2 and widest <= cfg.agree_mm and far > cfg.overrule_mm:
            return Decision(median, far, True, "registration_overruled")
        return Decision(r, far, True, "disagreement")
    if len(g):
        if len(g) == 1:
            return Decision(median, np.nan, True, "agents_only")
        spread = float(np.linalg.norm(g - median, axis=1).mean())
        return Decision(median, spread, bool(widest > cfg.agree_mm), "agents_only")
    return Decision(np.asarray(start, float), np.nan, True, "no_method")


def build_consensus(landmark_files: dict, start_csv, cfg: ConsensusConfig, out_csv) -> pd.DataFrame:
    """Write ``landmarks/consensus.csv`` (``landmark,x,y,z,uncertainty_mm,flag,rule,methods``) from the
    methods' landmark files (``{method: path}``; those not in the config are ignored, missing ones are
    absent) and the rigidly aligned start positions ``start_csv`` (``identity.csv``)."""
    start = read_landmarks(start_csv)
    tables = {}
    for method, path in landmark_files.items():
        if method != cfg.registration and method not in cfg.methods:
            continue
        if not Path(path).exists():
            raise InputError(f"{path}: the landmark file of method {method} is missing")
        t = read_landmarks(path).set_index("landmark")
        t["fallback"] = pd.to_numeric(t["fallback"], errors="coerce").fillna(0) if "fallback" in t.columns else 0
        tables[method] = t
    rows = []
    for lid, xyz in zip(start["landmark"], points_of(start)):
        reg = None
        if cfg.registration in tables and lid in tables[cfg.registration].index:
            reg = tables[cfg.registration].loc[lid, ["x", "y", "z"]].to_numpy(float)
        others, used = {}, [cfg.registration] if reg is not None else []
        for method in cfg.methods:
            t = tables.get(method)
            if t is None or lid not in t.index:
                continue
            if not t.loc[lid, "fallback"]:  # a fallback is the start position, not a prediction
                others[method] = t.loc[lid, ["x", "y", "z"]].to_numpy(float)
                used.append(method)
        dec = decide(reg, others, xyz, cfg)
        rows.append({"landmark": lid, "x": dec.point[0], "y": dec.point[1], "z": dec.point[2],
                     "uncertainty_mm": dec.uncertainty_mm, "flag": int(dec.flag), "rule": dec.rule,
                     "methods": "+".join(used)})
    df = pd.DataFrame(rows, columns=COLUMNS)
    write_landmarks(df, out_csv)
    flagged = int(df["flag"].sum())
    log.info("consensus: %d landmarks, %d flagged (%s)", len(df), flagged,
             ", ".join(f"{k} {v}" for k, v in df["rule"].value_counts().items()))
    return df


def flag_statistics(err: pd.DataFrame, threshold_mm: float = 3.0) -> pd.DataFrame:
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
