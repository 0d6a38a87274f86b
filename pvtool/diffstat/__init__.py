"""`pvtool diffstat`: how invasive a port is, measured as the Xen paper measured its own.

reader.py counts a unified diff as `diffstat -m` does; baseline.py sizes the tree a
source diff (or a series of them) applies to and checks that it applies; series.py reads
a series folder's diffstat.toml; images.py makes the listing diff of two images; port.py
turns any input (listing diff, source diff, series, patch set, two images) into Table
2's figures by category; xen_table2.py holds the paper's numbers.
"""

from pvtool.diffstat.reader import (
    BASELINE_MARKER,
    DiffstatResult,
    FilePatch,
    FileStat,
    Hunk,
    Totals,
    measure,
    parse,
)

__all__ = ["BASELINE_MARKER", "DiffstatResult", "FilePatch", "FileStat", "Hunk", "Totals",
           "measure", "parse"]
