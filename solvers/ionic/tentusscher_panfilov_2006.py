"""ten Tusscher–Panfilov 2006 human ventricular myocyte model (endo, epi and M cells).

ten Tusscher KHWJ, Panfilov AV (2006) Alternans and spiral breakup in a human ventricular
tissue model. Am J Physiol Heart Circ Physiol 291:H1088–H1100 (doi 10.1152/ajpheart.00109.2006),
building on ten Tusscher KHWJ, Noble D, Noble PJ, Panfilov AV (2004) Am J Physiol Heart Circ
Physiol 286:H1573–H1589.

Equations and constants as in the CellML exposure of the paper (models.physiomeproject.org
e/80d, ``ten_tusscher_model_2006_{epi,endo,m}.cellml``) and Myokit's
``c/tentusscher-2006.mmt`` derived from it; checked against both. Units: mV, ms, mM, currents
in pA/pF (= µA/µF = mV/ms).

Membrane: dV/dt = −(I_Na + I_K1 + I_to + I_Kr + I_Ks + I_CaL + I_NaCa + I_NaK + I_pCa + I_pK
+ I_bCa + I_bNa) + i_stim. Calcium: cytosol, dyadic subspace and SR with rapid buffering (the
free-calcium derivative is the total one times 1/(1 + B·K/(Ca + K)²)) and a four-state RyR
reduced to R′ and O. The stimulus is carried by K⁺ (it enters dK_i/dt, as in the CellML model),
so charge is conserved over a pacing train.

Cell variants (``celltype``: 0 endo, 1 epi, 2 M) differ in g_to, g_Ks and in the s-gate of
I_to; ``celltype`` selects the s-gate and the registry (``tp06-endo``, ``tp06-epi``,
``tp06-m`` in ``solvers/ionic/__init__.py``) sets g_to/g_Ks with it:

=========  ======  ======  ================================================================
variant    g_to    g_Ks    s gate
=========  ======  ======  ================================================================
endo (0)   0.073   0.392   s_inf = 1/(1+e^((V+28)/5)), τ_s = 1000 e^(−(V+67)²/1000) + 8
epi (1)    0.294   0.392   s_inf = 1/(1+e^((V+20)/5)),
                           τ_s = 85 e^(−(V+45)²/320) + 5/(1+e^((V−20)/5)) + 3
M (2)      0.294   0.098   as epi
=========  ======  ======  ================================================================

The initial state is the published epicardial state used by the N-version benchmark
(Niederer et al. 2011; ../shared/NVERSION.md §1), for every variant.

Numerics: Rush–Larsen for the twelve gates (m, h, j, Xr1, Xr2, Xs, r, s, d, f, f2, fCass),
forward Euler for V, the concentrations and R′. Sigmoids that share a slope factor are
evaluated from one exponential times a constant (e.g. e^((V+35)/5) = e^((V+20)/5)·e³): the same
function, fewer ``exp`` calls.
"""

import math

from cardiotwin.solvers.ionic.base import Parameter, State, lookup, table_position

CITATION = (
    "ten Tusscher KHWJ, Panfilov AV (2006) Alternans and spiral breakup in a human ventricular "
    "tissue model. Am J Physiol Heart Circ Physiol 291:H1088-H1100"
)

#: values of the ``celltype`` parameter
ENDO, EPI, M_CELL = 0, 1, 2

STATES = (
    State("V", -85.23, "mV", description="membrane potential"),
    State("Xr1", 0.00621, "1", gate=True, description="I_Kr activation gate"),
    State("Xr2", 0.4712, "1", gate=True, description="I_Kr inactivation gate"),
    State("Xs", 0.0095, "1", gate=True, description="I_Ks activation gate"),
    State("m", 0.00172, "1", gate=True, description="I_Na activation gate"),
    State("h", 0.7444, "1", gate=True, description="I_Na fast inactivation gate"),
    State("j", 0.7045, "1", gate=True, description="I_Na slow inactivation gate"),
    State("d", 3.373e-5, "1", gate=True, description="I_CaL activation gate"),
    State("f", 0.7888, "1", gate=True, description="I_CaL voltage inactivation gate"),
    State("f2", 0.9755, "1", gate=True, description="I_CaL incomplete inactivation gate"),
    State("fCass", 0.9953, "1", gate=True, description="I_CaL subspace-Ca inactivation gate"),
    State("s", 0.999998, "1", gate=True, description="I_to inactivation gate"),
    State("r", 2.42e-8, "1", gate=True, description="I_to activation gate"),
    State("Ca_i", 1.26e-4, "mM", description="free cytosolic Ca2+"),
    State("R_prime", 0.9073, "1", description="RyR fraction not inactivated (R')"),
    State("Ca_SR", 3.64, "mM", description="free sarcoplasmic reticulum Ca2+"),
    State("Ca_ss", 3.6e-4, "mM", description="free dyadic subspace Ca2+"),
    State("Na_i", 8.604, "mM", description="intracellular Na+"),
    State("K_i", 136.89, "mM", description="intracellular K+"),
)
#: kept in float64 under precision="mixed" (cardiotwin.solvers.precision): over a paced beat
#: at dt 0.005 ms, 56 % (Na_i) and 83 % (K_i) of their movement comes in updates below half a
#: float32 ulp, which a float32 store would lose; every other state loses < 0.1 %
FP64_STATES = ("Na_i", "K_i")

(
    V, XR1, XR2, XS, M, H, J, D, F, F2, FCASS, S_GATE, R_GATE,
    CA_I, R_PRIME, CA_SR, CA_SS, NA_I, K_I,
) = range(19)  # fmt: skip

PARAMETERS = (
    # Maximal conductances and pump/exchanger rates. g_Na comes first: tests that scale
    # "the first parameter" of every model then remodel a current, not a constant.
    Parameter("g_Na", 14.838, "nS/pF", "fast Na+ current I_Na, maximal conductance"),
    Parameter("g_CaL", 0.0398, "L/(F·s)", "L-type Ca2+ current I_CaL, permeability"),
    Parameter("g_Kr", 0.153, "nS/pF", "rapid delayed rectifier I_Kr, at K_o = 5.4 mM"),
    Parameter("g_Ks", 0.392, "nS/pF", "slow delayed rectifier I_Ks (endo/epi; M 0.098)"),
    Parameter("g_K1", 5.405, "nS/pF", "inward rectifier I_K1, at K_o = 5.4 mM"),
    Parameter("g_to", 0.294, "nS/pF", "transient outward I_to (epi/M; endo 0.073)"),
    Parameter("k_NaCa", 1000.0, "pA/pF", "Na+/Ca2+ exchanger I_NaCa, maximal rate"),
    Parameter("P_NaK", 2.724, "pA/pF", "Na+/K+ pump I_NaK, maximal rate"),
    Parameter("g_pCa", 0.1238, "pA/pF", "sarcolemmal Ca2+ pump I_pCa, maximal rate"),
    Parameter("g_pK", 0.0146, "nS/pF", "plateau K+ current I_pK, conductance"),
    Parameter("g_bna", 2.9e-4, "nS/pF", "background Na+ current I_bNa, conductance"),
    Parameter("g_bca", 5.92e-4, "nS/pF", "background Ca2+ current I_bCa, conductance"),
    # Variant switch
    Parameter("celltype", float(EPI), "1", "0 endo, 1 epi, 2 M: selects the I_to s-gate"),
    # Extracellular concentrations
    Parameter("Na_o", 140.0, "mM", "extracellular Na+"),
    Parameter("K_o", 5.4, "mM", "extracellular K+"),
    Parameter("Ca_o", 2.0, "mM", "extracellular Ca2+"),
    # Physical constants
    Parameter("R", 8.314, "J/(mol·K)", "gas constant"),
    Parameter("T", 310.0, "K", "temperature"),
    Parameter("F", 96.485, "C/mmol", "Faraday constant"),
    # Cell geometry
    Parameter("Cm", 185.0, "pF", "whole-cell capacitance (converts currents to fluxes)"),
    Parameter("V_c", 16404.0, "µm³", "cytoplasmic volume"),
    Parameter("V_sr", 1094.0, "µm³", "sarcoplasmic reticulum volume"),
    Parameter("V_ss", 54.68, "µm³", "dyadic subspace volume"),
    # Reversal potential, pumps and exchanger
    Parameter("P_kna", 0.03, "1", "Na+/K+ permeability ratio of I_Ks (E_Ks)"),
    Parameter("K_mK", 1.0, "mM", "I_NaK half-saturation for K_o"),
    Parameter("K_mNa", 40.0, "mM", "I_NaK half-saturation for Na_i"),
    Parameter("K_sat", 0.1, "1", "I_NaCa saturation factor at negative potentials"),
    Parameter("alpha_NaCa", 2.5, "1", "I_NaCa factor enhancing the outward mode"),
    Parameter("gamma_NaCa", 0.35, "1", "I_NaCa voltage-dependence position parameter"),
    Parameter("Km_Ca", 1.38, "mM", "I_NaCa half-saturation for Ca_o"),
    Parameter("Km_Nai", 87.5, "mM", "I_NaCa half-saturation for Na_i"),
    Parameter("K_pCa", 5e-4, "mM", "I_pCa half-saturation for Ca_i"),
    # Calcium handling
    Parameter("k1_prime", 0.15, "1/(mM²·ms)", "RyR activation rate constant k1'"),
    Parameter("k2_prime", 0.045, "1/(mM·ms)", "RyR inactivation rate constant k2'"),
    Parameter("k3", 0.06, "1/ms", "RyR closing rate"),
    Parameter("k4", 0.005, "1/ms", "RyR recovery rate from inactivation (R' → 1)"),
    Parameter("EC", 1.5, "mM", "Ca_SR half-saturation of k_casr"),
    Parameter("max_sr", 2.5, "1", "maximum of k_casr"),
    Parameter("min_sr", 1.0, "1", "minimum of k_casr"),
    Parameter("V_rel", 0.102, "1/ms", "maximal SR release rate (J_rel)"),
    Parameter("V_xfer", 0.0038, "1/ms", "subspace-to-cytosol diffusion rate (J_xfer)"),
    Parameter("V_leak", 3.6e-4, "1/ms", "SR leak rate (J_leak)"),
    Parameter("Vmax_up", 0.006375, "mM/ms", "maximal SERCA uptake rate (J_up)"),
    Parameter("K_up", 2.5e-4, "mM", "SERCA half-saturation"),
    Parameter("Buf_c", 0.2, "mM", "total cytosolic Ca2+ buffer"),
    Parameter("K_buf_c", 0.001, "mM", "cytosolic buffer half-saturation"),
    Parameter("Buf_sr", 10.0, "mM", "total SR Ca2+ buffer"),
    Parameter("K_buf_sr", 0.3, "mM", "SR buffer half-saturation"),
    Parameter("Buf_ss", 0.4, "mM", "total subspace Ca2+ buffer"),
    Parameter("K_buf_ss", 2.5e-4, "mM", "subspace buffer half-saturation"),
)
(
    G_NA, G_CAL, G_KR, G_KS, G_K1, G_TO, K_NACA, P_NAK, G_PCA, G_PK, G_BNA, G_BCA,
    CELLTYPE, NA_O, K_O, CA_O, R_GAS, T_KELVIN, FARADAY, CM, V_C, V_SR, V_SS,
    P_KNA, K_MK, K_MNA, K_SAT, ALPHA_NACA, GAMMA_NACA, KM_CA, KM_NAI, K_PCA,
    K1_PRIME, K2_PRIME, K3, K4, EC, MAX_SR, MIN_SR, V_REL, V_XFER, V_LEAK, VMAX_UP, K_UP,
    BUF_C, K_BUF_C, BUF_SR, K_BUF_SR, BUF_SS, K_BUF_SS,
) = range(50)  # fmt: skip

# Constant factors that turn one exponential into another with the same slope, e.g.
# e^((V+35)/5) = e^((V+20)/5)·e^3. Numba freezes module-level floats as compile-time constants.
_E_3 = math.exp(3.0)
_E_M3 = math.exp(-3.0)
_E_M8 = math.exp(-8.0)
_E_1P6 = math.exp(1.6)
_E_15_7 = math.exp(15.0 / 7.0)
_E_M6_7 = math.exp(-6.0 / 7.0)
_E_4P3 = math.exp(4.3)
_E_5P5 = math.exp(5.5)
_E_M1P5 = math.exp(-1.5)
_E_M0P2 = math.exp(-0.2)
_E_M6 = math.exp(-6.0)
_E_2P5 = math.exp(2.5)
_E_M1 = math.exp(-1.0)
_INV_5P4 = 1.0 / 5.4


#: Quantities that depend only on V (and parameters, dt): gate steady states, Rush–Larsen
#: factors e^(−dt/τ), and the voltage factors of I_pK, I_NaK, I_NaCa and I_CaL. ``step`` gets
#: them through ``lookup``: exact, or interpolated from a table (see ``base.build_table``).
#: Two columns are read at another argument on the same grid, as openCARP and TorchCor do:
#: I_K1's rectification α_K1/(α_K1 + β_K1) at V − E_K (three exponentials fewer per node and
#: step), and the fCass gate's steady state and Rush–Larsen factor at
#: :data:`CA_SS_GRID_PER_MM` · Ca_ss (an exponential and two divisions fewer; the grid then
#: spans Ca_ss ≤ 4 mM in steps of 1 µM, where the gate varies on a scale of 50 µM).
TABULATED = (
    "m_inf", "m_rl", "hj_inf", "h_rl", "j_rl", "xr1_inf", "xr1_rl", "xr2_inf", "xr2_rl",
    "xs_inf", "xs_rl", "r_inf", "r_rl", "s_inf", "s_rl", "d_inf", "d_rl", "f_inf", "f_rl",
    "f2_inf", "f2_rl", "ipk_factor", "inak_factor", "naca_e_gamma", "naca_e_gamma_m1",
    "cal_ca_ss_factor", "cal_ca_o_term", "xk1_inf_of_v_minus_ek", "fcass_inf_of_ca_ss",
    "fcass_rl_of_ca_ss",
)  # fmt: skip
(
    T_M_INF, T_M_RL, T_HJ_INF, T_H_RL, T_J_RL, T_XR1_INF, T_XR1_RL, T_XR2_INF, T_XR2_RL,
    T_XS_INF, T_XS_RL, T_R_INF, T_R_RL, T_S_INF, T_S_RL, T_D_INF, T_D_RL, T_F_INF, T_F_RL,
    T_F2_INF, T_F2_RL, T_IPK, T_INAK, T_NACA_EG, T_NACA_EGM1, T_CAL_A, T_CAL_B, T_XK1_INF,
    T_FCASS_INF, T_FCASS_RL,
) = range(30)  # fmt: skip
#: table grid units per mM of Ca_ss for the fCass columns (the grid runs to 200 units)
CA_SS_GRID_PER_MM = 50.0


def voltage_term(c, v, p, s, dt_ms):
    """Column ``c`` of :data:`TABULATED` at membrane potential ``v`` (mV); for
    ``T_XK1_INF``, ``v`` is V − E_K, for the fCass columns :data:`CA_SS_GRID_PER_MM` · Ca_ss."""
    if c == T_FCASS_INF or c == T_FCASS_RL:
        ca_ss_rel = v * (20.0 / CA_SS_GRID_PER_MM)  # Ca_ss / 0.05 mM
        fcass_den = 1.0 / (1.0 + ca_ss_rel * ca_ss_rel)
        if c == T_FCASS_INF:
            return 0.6 * fcass_den + 0.4
        return math.exp(-dt_ms / (80.0 * fcass_den + 2.0))
    if c == T_XK1_INF:
        e_k1 = math.exp(0.1 * v)
        e_k1_5 = e_k1 * e_k1
        e_k1_5 = e_k1_5 * e_k1_5 * e_k1  # e^(0.5(V-E_K))
        alpha_k1 = 0.1 / (1.0 + math.exp(0.06 * (v - 200.0)))
        beta_k1 = (
            (3.0 * math.exp(0.0002 * (v + 100.0)) + e_k1 * _E_M1)  # e^(0.1(V-E_K-10))
            * e_k1_5
            / (e_k1_5 + 1.0)  # 1/(1 + e^(-0.5(V-E_K)))
        )
        return alpha_k1 / (alpha_k1 + beta_k1)
    if c == T_M_INF:
        sig = 1.0 + math.exp((-56.86 - v) * (1.0 / 9.03))
        return 1.0 / (sig * sig)
    if c == T_M_RL:
        e5 = math.exp((v + 20.0) * 0.2)
        alpha_m = e5 / (e5 + _E_M8)  # 1/(1 + e^((-60-V)/5))
        beta_m = 0.1 / (1.0 + e5 * _E_3) + 0.1 / (1.0 + math.exp((v - 50.0) * 0.005))
        return math.exp(-dt_ms / (alpha_m * beta_m))
    if c == T_HJ_INF:
        sig = 1.0 + math.exp((v + 71.55) * (1.0 / 7.43))
        return 1.0 / (sig * sig)
    if c == T_H_RL:
        if v < -40.0:
            rate_h = 0.057 * math.exp(-(v + 80.0) * (1.0 / 6.8)) + (
                2.7 * math.exp(0.079 * v) + 3.1e5 * math.exp(0.3485 * v)
            )
        else:
            rate_h = 0.77 / (0.13 * (1.0 + math.exp((v + 10.66) * (-1.0 / 11.1))))
        return math.exp(-dt_ms * rate_h)
    if c == T_J_RL:
        if v < -40.0:
            alpha_j = (
                (-25428.0 * math.exp(0.2444 * v) - 6.948e-6 * math.exp(-0.04391 * v))
                * (v + 37.78)
                / (1.0 + math.exp(0.311 * (v + 79.23)))
            )
            beta_j = 0.02424 * math.exp(-0.01052 * v) / (1.0 + math.exp(-0.1378 * (v + 40.14)))
        else:
            e10 = math.exp((v + 30.0) * 0.1)
            alpha_j = 0.0
            beta_j = 0.6 * math.exp(0.057 * v) * e10 / (e10 + _E_M0P2)  # /(1 + e^(-0.1(V+32)))
        return math.exp(-dt_ms * (alpha_j + beta_j))
    if c == T_XR1_INF:
        e7 = math.exp((v + 20.0) * (1.0 / 7.0))
        return e7 / (e7 + _E_M6_7)  # 1/(1 + e^((-26-V)/7))
    if c == T_XR1_RL:
        e10 = math.exp((v + 30.0) * 0.1)
        alpha_xr1 = 450.0 * e10 / (e10 + _E_M1P5)  # 450/(1 + e^((-45-V)/10))
        beta_xr1 = 6.0 / (1.0 + math.exp((v + 30.0) * (1.0 / 11.5)))
        return math.exp(-dt_ms / (alpha_xr1 * beta_xr1))
    if c == T_XR2_INF:
        return 1.0 / (1.0 + math.exp((v + 88.0) * (1.0 / 24.0)))
    if c == T_XR2_RL:
        e20 = math.exp((v + 60.0) * 0.05)
        alpha_xr2 = 3.0 * e20 / (e20 + 1.0)  # 3/(1 + e^((-60-V)/20))
        beta_xr2 = 1.12 / (1.0 + e20 * _E_M6)  # 1.12/(1 + e^((V-60)/20))
        return math.exp(-dt_ms / (alpha_xr2 * beta_xr2))
    if c == T_XS_INF:
        return 1.0 / (1.0 + math.exp((-5.0 - v) * (1.0 / 14.0)))
    if c == T_XS_RL:
        e6 = math.exp((5.0 - v) * (1.0 / 6.0))
        alpha_xs = 1400.0 / math.sqrt(1.0 + e6)
        beta_xs = 1.0 / (1.0 + math.exp((v - 35.0) * (1.0 / 15.0)))
        return math.exp(-dt_ms / (alpha_xs * beta_xs + 80.0))
    if c == T_R_INF:
        e6 = math.exp((5.0 - v) * (1.0 / 6.0))
        return 1.0 / (1.0 + e6 * _E_2P5)  # 1/(1 + e^((20-V)/6))
    if c == T_R_RL:
        tau_r = 9.5 * math.exp(-(v + 40.0) * (v + 40.0) * (1.0 / 1800.0)) + 0.8
        return math.exp(-dt_ms / tau_r)
    # the s gate is the one place the endocardial variant differs
    if c == T_S_INF:
        e5 = math.exp((v + 20.0) * 0.2)
        if p[CELLTYPE, s] < 0.5:
            return 1.0 / (1.0 + e5 * _E_1P6)  # 1/(1 + e^((V+28)/5))
        return 1.0 / (1.0 + e5)
    if c == T_S_RL:
        if p[CELLTYPE, s] < 0.5:
            tau_s = 1000.0 * math.exp(-(v + 67.0) * (v + 67.0) * 0.001) + 8.0
        else:
            e5 = math.exp((v + 20.0) * 0.2)
            tau_s = (
                85.0 * math.exp(-(v + 45.0) * (v + 45.0) * (1.0 / 320.0))
                + 5.0 / (1.0 + e5 * _E_M8)  # 5/(1 + e^((V-20)/5))
                + 3.0
            )
        return math.exp(-dt_ms / tau_s)
    if c == T_D_INF:
        return 1.0 / (1.0 + math.exp((-8.0 - v) * (1.0 / 7.5)))
    if c == T_D_RL:
        e5 = math.exp((v + 20.0) * 0.2)
        e20 = math.exp((v + 60.0) * 0.05)
        alpha_d = 1.4 / (1.0 + math.exp((-35.0 - v) * (1.0 / 13.0))) + 0.25
        beta_d = 1.4 / (1.0 + e5 * _E_M3)  # 1.4/(1 + e^((V+5)/5))
        gamma_d = e20 / (e20 + _E_5P5)  # 1/(1 + e^((50-V)/20))
        return math.exp(-dt_ms / (alpha_d * beta_d + gamma_d))
    if c == T_F_INF:
        return 1.0 / (1.0 + math.exp((v + 20.0) * (1.0 / 7.0)))
    if c == T_F_RL:
        e10 = math.exp((v + 30.0) * 0.1)
        tau_f = (
            1102.5 * math.exp(-(v + 27.0) * (v + 27.0) * (1.0 / 225.0))
            + 200.0 * e10 / (e10 + _E_4P3)  # 200/(1 + e^((13-V)/10))
            + 180.0 / (1.0 + e10)
            + 20.0
        )
        return math.exp(-dt_ms / tau_f)
    if c == T_F2_INF:
        e7 = math.exp((v + 20.0) * (1.0 / 7.0))
        return 0.67 / (1.0 + e7 * _E_15_7) + 0.33  # e^((V+35)/7)
    if c == T_F2_RL:
        e10 = math.exp((v + 30.0) * 0.1)
        tau_f2 = (
            562.0 * math.exp(-(v + 27.0) * (v + 27.0) * (1.0 / 240.0))
            + 31.0 * e10 / (e10 + _E_5P5)  # 31/(1 + e^((25-V)/10))
            + 80.0 / (1.0 + e10)
        )
        return math.exp(-dt_ms / tau_f2)
    if c == T_IPK:
        return 1.0 / (1.0 + math.exp((25.0 - v) * (1.0 / 5.98)))
    frt = p[FARADAY, s] / (p[R_GAS, s] * p[T_KELVIN, s])  # 1/mV
    if c == T_INAK:
        e_vfrt_01 = math.exp(-0.1 * v * frt)
        e_vfrt = math.exp(-v * frt)
        return 1.0 / (1.0 + 0.1245 * e_vfrt_01 + 0.0353 * e_vfrt)
    if c == T_NACA_EG:
        return math.exp(p[GAMMA_NACA, s] * v * frt)
    if c == T_NACA_EGM1:
        return math.exp((p[GAMMA_NACA, s] - 1.0) * v * frt)
    # I_CaL's GHK drive = A(V)·Ca_ss − B(V); removable 0/0 at V = 15 mV: use the limits
    v15 = v - 15.0
    faraday = p[FARADAY, s]
    if c == T_CAL_A:
        if abs(v15) > 1e-7:
            e_cal = math.exp(2.0 * v15 * frt)
            return v15 * faraday * frt * e_cal / (e_cal - 1.0)
        return 0.5 * faraday
    if c == T_CAL_B:
        if abs(v15) > 1e-7:
            e_cal = math.exp(2.0 * v15 * frt)
            return 4.0 * v15 * faraday * frt * p[CA_O, s] / (e_cal - 1.0)
        return 2.0 * faraday * p[CA_O, s]
    return 0.0


def step(y, p, k, s, dt_ms, i_stim, table):
    v = y[V, k]
    ca_i = y[CA_I, k]
    ca_ss = y[CA_SS, k]
    ca_sr = y[CA_SR, k]
    na_i = y[NA_I, k]
    k_i = y[K_I, k]

    na_o = p[NA_O, s]
    k_o = p[K_O, s]
    ca_o = p[CA_O, s]
    faraday = p[FARADAY, s]
    frt = faraday / (p[R_GAS, s] * p[T_KELVIN, s])  # 1/mV
    rtf = 1.0 / frt  # mV
    cm = p[CM, s]
    v_c = p[V_C, s]
    v_sr = p[V_SR, s]
    v_ss = p[V_SS, s]

    # Reversal potentials (mV)
    e_na = rtf * math.log(na_o / na_i)
    e_k = rtf * math.log(k_o / k_i)
    p_kna = p[P_KNA, s]
    e_ks = rtf * math.log((k_o + p_kna * na_o) / (k_i + p_kna * na_i))
    e_ca = 0.5 * rtf * math.log(ca_o / ca_i)

    row, frac = table_position(v, table)

    # Currents (pA/pF)
    m = y[M, k]
    i_na = p[G_NA, s] * m * m * m * y[H, k] * y[J, k] * (v - e_na)

    sqrt_ko = math.sqrt(k_o * _INV_5P4)
    dv_k = v - e_k
    row_k, frac_k = table_position(dv_k, table)  # I_K1's rectification is read at V − E_K
    x_k1 = lookup(T_XK1_INF, dv_k, p, s, dt_ms, table, row_k, frac_k)
    i_k1 = p[G_K1, s] * sqrt_ko * x_k1 * dv_k

    i_kr = p[G_KR, s] * sqrt_ko * y[XR1, k] * y[XR2, k] * dv_k
    xs = y[XS, k]
    i_ks = p[G_KS, s] * xs * xs * (v - e_ks)
    i_to = p[G_TO, s] * y[R_GATE, k] * y[S_GATE, k] * dv_k

    i_cal_drive = lookup(T_CAL_A, v, p, s, dt_ms, table, row, frac) * ca_ss - lookup(
        T_CAL_B, v, p, s, dt_ms, table, row, frac
    )
    i_cal = p[G_CAL, s] * y[D, k] * y[F, k] * y[F2, k] * y[FCASS, k] * i_cal_drive

    i_nak = (
        p[P_NAK, s]
        * k_o
        / (k_o + p[K_MK, s])
        * na_i
        / (na_i + p[K_MNA, s])
        * lookup(T_INAK, v, p, s, dt_ms, table, row, frac)
    )

    e_gamma = lookup(T_NACA_EG, v, p, s, dt_ms, table, row, frac)
    e_gamma_m1 = lookup(T_NACA_EGM1, v, p, s, dt_ms, table, row, frac)
    km_nai = p[KM_NAI, s]
    na_i_cubed = na_i * na_i * na_i
    na_o_cubed = na_o * na_o * na_o
    i_naca = (
        p[K_NACA, s]
        * (e_gamma * na_i_cubed * ca_o - e_gamma_m1 * na_o_cubed * ca_i * p[ALPHA_NACA, s])
        / (
            (km_nai * km_nai * km_nai + na_o_cubed)
            * (p[KM_CA, s] + ca_o)
            * (1.0 + p[K_SAT, s] * e_gamma_m1)
        )
    )

    i_pca = p[G_PCA, s] * ca_i / (ca_i + p[K_PCA, s])
    i_pk = p[G_PK, s] * dv_k * lookup(T_IPK, v, p, s, dt_ms, table, row, frac)
    i_bna = p[G_BNA, s] * (v - e_na)
    i_bca = p[G_BCA, s] * (v - e_ca)

    # Calcium handling (mM/ms)
    ca_i_sq = ca_i * ca_i
    k_up = p[K_UP, s]
    j_up = p[VMAX_UP, s] * ca_i_sq / (ca_i_sq + k_up * k_up)  # Vmax/(1 + K_up²/Ca_i²)
    j_leak = p[V_LEAK, s] * (ca_sr - ca_i)
    j_xfer = p[V_XFER, s] * (ca_ss - ca_i)
    ec_rel = p[EC, s] / ca_sr
    max_sr = p[MAX_SR, s]
    kcasr = max_sr - (max_sr - p[MIN_SR, s]) / (1.0 + ec_rel * ec_rel)
    k1 = p[K1_PRIME, s] / kcasr
    k2 = p[K2_PRIME, s] * kcasr
    r_prime = y[R_PRIME, k]
    k1_ca_ss_sq = k1 * ca_ss * ca_ss
    open_ryr = k1_ca_ss_sq * r_prime / (p[K3, s] + k1_ca_ss_sq)
    j_rel = p[V_REL, s] * open_ryr * (ca_sr - ca_ss)
    d_r_prime = -k2 * ca_ss * r_prime + p[K4, s] * (1.0 - r_prime)

    inv_v_c = 1.0 / v_c
    inv_v_ss = 1.0 / v_ss
    current_to_flux = cm * inv_v_c / faraday  # mM/ms per pA/pF, cytosol
    d_ca_i_total = (
        -(i_bca + i_pca - 2.0 * i_naca) * 0.5 * current_to_flux
        + (j_leak - j_up) * v_sr * inv_v_c
        + j_xfer
    )
    d_ca_ss_total = (
        -i_cal * 0.5 * cm * inv_v_ss / faraday + j_rel * v_sr * inv_v_ss - j_xfer * v_c * inv_v_ss
    )
    d_ca_sr_total = j_up - j_rel - j_leak
    buf = ca_i + p[K_BUF_C, s]
    d_ca_i = d_ca_i_total / (1.0 + p[BUF_C, s] * p[K_BUF_C, s] / (buf * buf))
    buf = ca_ss + p[K_BUF_SS, s]
    d_ca_ss = d_ca_ss_total / (1.0 + p[BUF_SS, s] * p[K_BUF_SS, s] / (buf * buf))
    buf = ca_sr + p[K_BUF_SR, s]
    d_ca_sr = d_ca_sr_total / (1.0 + p[BUF_SR, s] * p[K_BUF_SR, s] / (buf * buf))

    d_na_i = -(i_na + i_bna + 3.0 * i_nak + 3.0 * i_naca) * current_to_flux
    # the stimulus (positive = depolarising, i.e. an inward current) is carried by K+
    d_k_i = -(i_k1 + i_to + i_kr + i_ks + i_pk - i_stim - 2.0 * i_nak) * current_to_flux

    i_ion = i_na + i_k1 + i_to + i_kr + i_ks + i_cal + i_naca + i_nak + i_pca + i_pk + i_bna + i_bca

    # Forward Euler: V, concentrations, R'
    y[V, k] = v + dt_ms * (i_stim - i_ion)
    y[CA_I, k] = ca_i + dt_ms * d_ca_i
    y[CA_SS, k] = ca_ss + dt_ms * d_ca_ss
    y[CA_SR, k] = ca_sr + dt_ms * d_ca_sr
    y[R_PRIME, k] = r_prime + dt_ms * d_r_prime
    y[NA_I, k] = na_i + dt_ms * d_na_i
    y[K_I, k] = k_i + dt_ms * d_k_i

    # Rush–Larsen: x <- x_inf + (x - x_inf) e^(-dt/tau)
    ca_ss_grid = ca_ss * CA_SS_GRID_PER_MM
    row_c, frac_c = table_position(ca_ss_grid, table)
    fcass_inf = lookup(T_FCASS_INF, ca_ss_grid, p, s, dt_ms, table, row_c, frac_c)
    fcass_rl = lookup(T_FCASS_RL, ca_ss_grid, p, s, dt_ms, table, row_c, frac_c)
    y[FCASS, k] = fcass_inf + (y[FCASS, k] - fcass_inf) * fcass_rl
    hj_inf = lookup(T_HJ_INF, v, p, s, dt_ms, table, row, frac)
    m_inf = lookup(T_M_INF, v, p, s, dt_ms, table, row, frac)
    y[M, k] = m_inf + (m - m_inf) * lookup(T_M_RL, v, p, s, dt_ms, table, row, frac)
    y[H, k] = hj_inf + (y[H, k] - hj_inf) * lookup(T_H_RL, v, p, s, dt_ms, table, row, frac)
    y[J, k] = hj_inf + (y[J, k] - hj_inf) * lookup(T_J_RL, v, p, s, dt_ms, table, row, frac)
    x_inf = lookup(T_XR1_INF, v, p, s, dt_ms, table, row, frac)
    y[XR1, k] = x_inf + (y[XR1, k] - x_inf) * lookup(T_XR1_RL, v, p, s, dt_ms, table, row, frac)
    x_inf = lookup(T_XR2_INF, v, p, s, dt_ms, table, row, frac)
    y[XR2, k] = x_inf + (y[XR2, k] - x_inf) * lookup(T_XR2_RL, v, p, s, dt_ms, table, row, frac)
    x_inf = lookup(T_XS_INF, v, p, s, dt_ms, table, row, frac)
    y[XS, k] = x_inf + (xs - x_inf) * lookup(T_XS_RL, v, p, s, dt_ms, table, row, frac)
    x_inf = lookup(T_R_INF, v, p, s, dt_ms, table, row, frac)
    y[R_GATE, k] = x_inf + (y[R_GATE, k] - x_inf) * lookup(T_R_RL, v, p, s, dt_ms, table, row, frac)
    x_inf = lookup(T_S_INF, v, p, s, dt_ms, table, row, frac)
    y[S_GATE, k] = x_inf + (y[S_GATE, k] - x_inf) * lookup(T_S_RL, v, p, s, dt_ms, table, row, frac)
    x_inf = lookup(T_D_INF, v, p, s, dt_ms, table, row, frac)
    y[D, k] = x_inf + (y[D, k] - x_inf) * lookup(T_D_RL, v, p, s, dt_ms, table, row, frac)
    x_inf = lookup(T_F_INF, v, p, s, dt_ms, table, row, frac)
    y[F, k] = x_inf + (y[F, k] - x_inf) * lookup(T_F_RL, v, p, s, dt_ms, table, row, frac)
    x_inf = lookup(T_F2_INF, v, p, s, dt_ms, table, row, frac)
    y[F2, k] = x_inf + (y[F2, k] - x_inf) * lookup(T_F2_RL, v, p, s, dt_ms, table, row, frac)
