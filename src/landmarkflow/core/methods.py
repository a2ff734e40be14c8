"""The method catalogue: every method's name, its place in tables, its colour and what it needs.

One owner for what the workflow's rules (which landmark files a patient gets), the config schema (its
enums are checked against this module by a test), the evaluation, the report and the 3D Slicer review
files know of the methods: this module is the contract (docs/architecture.md, "One owner per contract").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """One method. ``stage``: the config section whose ``activate`` switches it on (None: always there);
    ``needs``: what else it needs (``resection``: the post-op resection mask; a method name: that method's
    landmarks); ``search``: (folder under ``results/<patient>``, file prefix) of its end points and
    trajectories, for methods that search from start points."""

    name: str
    colour: str
    description: str
    stage: str | None = None
    needs: tuple = ()
    search: tuple | None = None
    variant: str | None = None  # the agent variant it redetects with (agents only)


#: every method in the order of tables and figures (the recommended landmark first)
CATALOGUE = (
    Method("consensus", "#ffd700", "the recommended landmark: the registrations and the agents combined", "consensus"),
    Method("identity", "#7f7f7f", "the post-op landmark after rigid alignment (the initial error)"),
    Method("ants_rigid", "#bcbd22", "ANTs rigid registration", "ants"),
    Method("ants_affine", "#17becf", "ANTs affine registration", "ants"),
    Method("ants_syn_nomask", "#9467bd", "ANTs SyN without cost-function masks", "ants"),
    Method("ants_syn", "#1f77b4", "ANTs SyN, cost-function masked where the lesions are", "ants"),
    Method("svf", "#8c2d04", "the second registration: bidirectional velocity fields, missing correspondence left out",
           "svf"),
    Method("agent_baseline", "#ff7f0e", "deep Q-network agents (BM)", search=("agents", "baseline_"), variant="baseline"),
    Method("agent_guided", "#d62728", "agents kept out of the cavity (AM)", needs=("resection",),
           search=("agents", "guided_"), variant="guided"),
    Method("agent_seeded", "#ff9896", "the agents started at ANTs SyN's landmark", "ants", needs=("ants_syn",),
           search=("agents", "seeded_")),
    Method("pin", "#2ca02c", "patch-based iterative network (experimental)", "pin", search=("pin", "")),
)
BY_NAME = {m.name: m for m in CATALOGUE}
NAMES = tuple(BY_NAME)
#: the order in which a patient's landmark files are listed (the workflow's inputs)
RUN_ORDER = ("identity", "ants_rigid", "ants_affine", "ants_syn", "ants_syn_nomask", "svf", "pin", "agent_baseline",
             "agent_guided", "agent_seeded", "consensus")
#: registrations the consensus can be anchored on
REGISTRATIONS = ("ants_syn", "svf", "ants_syn_nomask", "ants_affine", "ants_rigid")
#: methods that can confirm or overrule the registration in the consensus
VOTERS = ("agent_guided", "agent_baseline", "agent_seeded", "pin")
#: methods that search from start points
SEARCH = {m.name: m.search for m in CATALOGUE if m.search is not None}
#: the trained agent variants, and which of them needs the resection mask
AGENT_VARIANTS = tuple(m.variant for m in CATALOGUE if m.variant)
#: the colour of the ground truth in figures and review files
TRUTH_COLOUR = "#00ff00"
RATER_COLOUR = "#8c564b"
OTHER_COLOUR = "#e377c2"


def agent_variants(has_resection: bool) -> tuple[str, ...]:
    """The agent variants a patient gets: the guided one needs the resection mask."""
    return tuple(m.variant for m in CATALOGUE if m.variant and (has_resection or "resection" not in m.needs))


def patient_methods(active, has_resection: bool) -> list[str]:
    """The methods the workflow runs for a patient (in :data:`RUN_ORDER`): ``active`` is the set of switched-on
    stages (``ants``, ``svf``, ``pin``, ``consensus``), ``has_resection`` whether the patient has a resection mask."""
    active = set(active)
    out = []
    for name in RUN_ORDER:
        m = BY_NAME[name]
        if m.stage is not None and m.stage not in active:
            continue
        if "resection" in m.needs and not has_resection:
            continue
        if any(n in BY_NAME and n not in out for n in m.needs):  # e.g. agent_seeded: ANTs SyN's landmarks
            continue
        out.append(name)
    return out


def colour(name: str) -> str:
    """A method's colour as a hex string (raters and unknown names get their own)."""
    if name in BY_NAME:
        return BY_NAME[name].colour
    if name == "truth":
        return TRUTH_COLOUR
    return RATER_COLOUR if name.startswith("rater_") else OTHER_COLOUR


def sort_key(name: str):
    """Catalogue order first, then others alphabetically."""
    return (NAMES.index(name) if name in BY_NAME else len(NAMES), name)


def sort_methods(df):
    """Rows of a table with a ``method`` column in the catalogue's order (stable within a method)."""
    return df.iloc[sorted(range(len(df)), key=lambda i: sort_key(df["method"].iloc[i]))].reset_index(drop=True)


def is_compared(name: str) -> bool:
    """Is ``name`` one of the predictions compared with each other? (``identity`` is the starting point,
    ``rater_*`` are annotations, ``truth`` is the ground truth in the rigid fits.)"""
    return name not in ("identity", "truth") and not name.startswith("rater_")
