"""The segmentation job's facts as columns: what `segmentation.finish` reads, whichever
engine computed them (`segmentation.facts` in pandas gives a frame; `sql.as_facts` gives
these, from DuckDB's Arrow answer)."""

from __future__ import annotations

from typing import Any

import pandas as pd


class Facts:
    """The facts as named columns over one index of customer ids, each read as a Series: what
    `finish` needs of a frame, without assembling one (pandas would copy every column into
    its blocks: half a second for a million customers, for nothing)."""

    def __init__(self, index: pd.Index, columns: dict[str, Any]) -> None:
        self.index = index
        self.columns = columns

    def __getitem__(self, name: str) -> pd.Series:
        return pd.Series(self.columns[name], index=self.index, name=name, copy=False)

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def __len__(self) -> int:
        return len(self.index)
