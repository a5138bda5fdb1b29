"""Sliced ELLPACK on the device gives CSR's products and CG iterates bit for bit
(cudasim_layouts.py; under the simulator here, on the device in benchmarks/gpu_check.sh)."""

import numpy as np
import pytest
from subprocess_env import DEVICE_MARKS, helper_output

pytestmark = DEVICE_MARKS


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return dict(np.load(helper_output(tmp_path_factory, "cudasim_layouts.py", "layouts.npz", 900)))


def test_sell_stores_each_slice_padded_to_its_longest_row(result):
    lengths = result["lengths"]
    assert lengths.min() < lengths.max()  # rows of different lengths in the slices
    padded = np.zeros(-(-len(lengths) // 32) * 32, dtype=int)
    padded[: len(lengths)] = lengths
    expected = 32 * padded.reshape(-1, 32).max(axis=1).sum()
    assert result["stored_sell"].tolist() == [expected, 32]
    assert result["stored_csr"].tolist() == [lengths.sum(), 1]


@pytest.mark.parametrize("n_cols", [1, 3])
def test_sell_and_csr_products_are_bit_identical_and_right(result, n_cols):
    sell, csr = result[f"spmm_sell_{n_cols}"], result[f"spmm_csr_{n_cols}"]
    np.testing.assert_array_equal(sell, csr)
    # the same sum, in the same column order, as scipy's: at most rounding
    np.testing.assert_allclose(sell, result[f"scipy_{n_cols}"], rtol=0, atol=1e-12)


def test_sell_and_csr_conjugate_gradients_are_bit_identical_and_converge(result):
    np.testing.assert_array_equal(result["cg_sell_3"], result["cg_csr_3"])
    assert result["cg_iterations_sell_3"][0] == result["cg_iterations_csr_3"][0] > 3
    rhs = result["cg_rhs_3"]
    residual = np.abs(result["cg_system_times_x_sell_3"] - rhs).max() / np.abs(rhs).max()
    assert residual < 1e-6
