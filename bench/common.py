"""What every benchmark's command line shares: its description, --data (the shared data folder, found from
the repository, not the working directory) and, where it writes a report, --out."""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def parser(doc: str | None, out: Path | None = None) -> argparse.ArgumentParser:
    """An argument parser described by the first line of `doc`, with --data and, given a default, --out."""
    made = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    made.add_argument("--data", type=Path, default=SHARED_DATA,
                      help="folder with financial_phrasebank/ and twitter_financial_news_sentiment/ "
                           "(default: ../shared/data beside the repository)")
    if out is not None:
        made.add_argument("--out", type=Path, default=out, help=f"where the report goes (default: {out})")
    return made
