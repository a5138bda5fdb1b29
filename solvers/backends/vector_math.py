"""``log`` and ``exp`` written as arithmetic, so that a Numba loop that calls them vectorises.

Numba hands ``math.log``/``math.exp`` to LLVM as calls into the C library. Without a vector
math library (Numba's PyPI llvmlite has no SVML), the loop vectoriser can only issue such a
call once per lane: a cell-kernel loop with four ``log`` calls per node (TP06's reversal
potentials) then runs at scalar speed whatever else in it vectorises. The functions here use
only integer and floating-point arithmetic (the exponent is read and set through the bits of
the float), which AVX-512 and AVX2 execute eight or four lanes at a time.

Both follow the classic reduction of Sun's fdlibm (``e_log.c``, ``e_exp.c``; the same
algorithms as in most C libraries), with its published minimax coefficients:

- ``log(x) = k·ln 2 + log(m)``, m in [√2/2, √2), and log(m) from a degree-14 odd series in
  s = (m − 1)/(m + 1);
- ``exp(x) = 2^k · e^r``, |r| ≤ ln 2 / 2, e^r from a rational form with a degree-10 even
  polynomial.

Measured against the C library (``tests/solvers/test_vector_math.py``, 6·10⁵ arguments
spanning the double range, subnormals included): at most 1 ulp apart under IEEE arithmetic,
2 ulp under the cell kernel's fast-math flags (which may reorder the reduction's sums).
Special values behave as ``math``'s do, except that nothing raises: log of 0 is −inf, of a
negative number or NaN is NaN, of +inf is +inf; exp overflows to +inf, underflows through
the subnormals to 0, and keeps NaN.

:data:`MATH` is the ``math`` module with these two in place of the C library's: the CPU
backend compiles its tissue cell kernels against it (``cpu.CELL_VECTOR_MATH``).
"""

from __future__ import annotations

import math
import types

import numba
from llvmlite import ir
from numba.core import types as nb_types
from numba.extending import intrinsic


@intrinsic
def _bits(typingctx, x):
    """The IEEE-754 bits of a float64, as an int64."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return nb_types.int64(nb_types.float64), codegen


@intrinsic
def _float(typingctx, bits):
    """The float64 whose IEEE-754 bits are ``bits``."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return nb_types.float64(nb_types.int64), codegen


_LN2_HI = 6.93147180369123816490e-01  # ln 2 to 32 bits: k·_LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10  # ln 2 − _LN2_HI
_INV_LN2 = 1.44269504088896338700e00

# fdlibm e_log.c: log(1 + f) = f − f²/2 + s·(f²/2 + R(s²)), R ≈ LG1·z + LG2·z² + … + LG7·z⁷
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD  # bits of √2/2
_ONE_BITS = 0x3FF0000000000000  # bits of 1.0
_MANTISSA = 0x000FFFFFFFFFFFFF
_SMALLEST_NORMAL = 2.2250738585072014e-308
_TWO_54 = 18014398509481984.0  # 2**54: lifts a subnormal into the normal range

# fdlibm e_exp.c: e^r = 1 + 2r/(2 − c), c = r − r²·(P1 + P2·r² + … + P5·r⁸)
_P1 = 1.66666666666666019037e-01
_P2 = -2.77777777770155933842e-03
_P3 = 6.61375632143793436117e-05
_P4 = -1.65339022054652515390e-06
_P5 = 4.13813679705723846039e-08
_EXP_OVERFLOW = 7.09782712893383973096e02  # above: +inf
_EXP_UNDERFLOW = -7.45133219101941108420e02  # below: 0
_TWO_M200 = 2.0**-200


@numba.njit(inline="always", error_model="numpy")
def log(x):
    """Natural logarithm of a float64 (see the module docstring for accuracy and the
    special values)."""
    tiny = x < _SMALLEST_NORMAL
    xn = x * _TWO_54 if tiny else x
    # shift the bits so that the mantissa lands in [√2/2, √2) and the exponent follows
    bits = _bits(xn) + (_ONE_BITS - _SQRT_HALF_BITS)
    k = (bits >> 52) - 1023
    m = _float((bits & _MANTISSA) + _SQRT_HALF_BITS)
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    half_f_sq = 0.5 * f * f
    dk = float(k) - (54.0 if tiny else 0.0)
    result = dk * _LN2_HI - ((half_f_sq - (s * (half_f_sq + (t1 + t2)) + dk * _LN2_LO)) - f)
    if x == math.inf:
        result = math.inf
    if not x > 0.0:  # 0, negative or NaN
        result = -math.inf if x == 0.0 else math.nan
    return result


@numba.njit(inline="always", error_model="numpy")
def exp(x):
    """e to the power of a float64 (see the module docstring for accuracy and the special
    values)."""
    xc = min(max(x, _EXP_UNDERFLOW - 1.0), _EXP_OVERFLOW + 1.0)  # NaN passes through
    k = math.floor(xc * _INV_LN2 + 0.5)
    hi = xc - k * _LN2_HI
    lo = k * _LN2_LO
    r = hi - lo
    rr = r * r
    c = r - rr * (_P1 + rr * (_P2 + rr * (_P3 + rr * (_P4 + rr * _P5))))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    # times 2^k: k added to the exponent bits of y (an integer add, which fast-math cannot
    # reorder into an overflowing product); a subnormal result takes 200 more first
    ki = numba.int64(k) if k == k else 0
    low = ki < -1000
    scaled = _float(_bits(y) + ((ki + (200 if low else 0)) << 52))
    result = scaled * _TWO_M200 if low else scaled
    if x > _EXP_OVERFLOW:
        result = math.inf
    if x < _EXP_UNDERFLOW:
        result = 0.0
    if x != x:
        result = x
    return result


def _vector_math_module() -> types.ModuleType:
    module = types.ModuleType("cardiotwin_vector_math", __doc__)
    module.__dict__.update({k: v for k, v in vars(math).items() if not k.startswith("__")})
    module.log, module.exp = log, exp
    return module


#: ``math`` with :func:`log` and :func:`exp` in place of the C library's
MATH = _vector_math_module()
