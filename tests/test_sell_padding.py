"""benchmarks/sell_padding.py counts what SELL-32 stores and reads, row by row.

A matrix whose row lengths are set by hand: 40 rows, row 0 of 10 entries, rows 1-31 of 2,
rows 32-39 of 3 (96 non-zeros). SELL-32 pads slice 0 to 10 and slice 1 (8 rows, padded to
32) to 3: 320 + 96 = 416 stored. Sectors of 4 fp64 values: rows 0-3 read 4 × 10, rows 4-31
seven groups of 4 × 2, rows 32-39 two groups of 4 × 3: 40 + 56 + 24 = 120. Sectors of 8
int32 indices: 8 × 10 + 3 × 8 × 2 + 8 × 3 = 152.
"""

import importlib.util
from pathlib import Path

import numpy as np
import scipy.sparse as sp

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "sell_padding.py"
spec = importlib.util.spec_from_file_location("sell_padding", PATH)
padding = importlib.util.module_from_spec(spec)
spec.loader.exec_module(padding)


def test_stored_and_read_entries_of_a_matrix_with_known_row_lengths():
    lengths = np.array([10] + [2] * 31 + [3] * 8)
    rows = np.repeat(np.arange(40), lengths)
    cols = np.concatenate([np.arange(n) for n in lengths])
    matrix = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(40, 40))
    costs = padding.layout_costs(matrix)
    assert costs["entries_per_row"] == round(96 / 40, 2)
    assert costs["row_lengths"] == [2, 10]
    assert costs["stored"] == round(416 / 96, 3)
    assert costs["read_fp64_values"] == round(120 / 96, 3)
    assert costs["read_int32_or_fp32"] == round(152 / 96, 3)
    # sorted within 256 rows: 10, 3 × 8, 2 × 31 -> slice 0 width 10, slice 1 width 2
    assert costs["sell_32_256_stored"] == round((320 + 64) / 96, 3)
