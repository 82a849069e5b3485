"""Transform hooks used by the tests (a team would ship these in its own package)."""

from __future__ import annotations

import pandas as pd


def big_spenders(df: pd.DataFrame) -> pd.DataFrame:
    """Keep rows with amount >= 10 and derive an upper-cased customer column."""
    out = df[df["amount"].astype(float) >= 10].copy()
    out["customer_uc"] = out["customer"].str.upper()
    return out


def not_a_frame(df: pd.DataFrame) -> list[int]:
    return [1]
