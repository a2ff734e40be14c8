"""Regenerate the documentation's pictures from the current workflow, so that they stay current.

    .venv/bin/python docs/make_images.py rulegraph          # docs/img/rulegraph.png (needs Graphviz's dot)
    .venv/bin/python docs/make_images.py report [REPORT]    # docs/img/report.png from a report (needs chromium)

``rulegraph``: Snakemake's rule graph of the smoke config (config/smoke.yaml: every stage, PIN too), rendered by
``dot``. ``report``: the top of a report at 1280 px as Chromium draws it; REPORT defaults to
``results/cohort/report.html`` (``make smoke`` writes one in a few minutes).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"


def rulegraph(out: Path = IMG / "rulegraph.png") -> Path:
    dot = shutil.which("dot")
    if dot is None:
        sys.exit("Graphviz's dot is not installed (Debian: apt-get install graphviz)")
    graph = subprocess.run([sys.executable, "-m", "snakemake", "--rulegraph", "--configfile", "config/smoke.yaml"],
                           cwd=ROOT, capture_output=True, text=True)  # (the smoke config: every stage, PIN too)
    if graph.returncode != 0 or "digraph" not in graph.stdout:
        sys.exit(f"snakemake --rulegraph failed:\n{graph.stderr[-2000:]}")
    text = graph.stdout[graph.stdout.index("digraph"):]
    subprocess.run([dot, "-Tpng", "-Gdpi=110", "-o", str(out)], input=text, text=True, check=True)
    return out


def report(page: Path, out: Path = IMG / "report.png", height: int = 2400) -> Path:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not installed (make browser installs Debian's)")
    if not page.is_file():
        sys.exit(f"{page}: no report (make smoke writes results/cohort/report.html)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", "--virtual-time-budget=10000", f"--window-size=1280,{height}",
                        "--hide-scrollbars", f"--screenshot={out}", page.resolve().as_uri()],
                       capture_output=True, text=True, check=True, timeout=120)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("rulegraph", help="docs/img/rulegraph.png")
    p = sub.add_parser("report", help="docs/img/report.png")
    p.add_argument("page", nargs="?", type=Path, default=ROOT / "results" / "cohort" / "report.html")
    args = parser.parse_args(argv)
    print(rulegraph() if args.what == "rulegraph" else report(args.page))


if __name__ == "__main__":
    main()
