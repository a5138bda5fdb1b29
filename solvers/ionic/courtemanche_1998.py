"""Courtemanche–Ramirez–Nattel 1998 human atrial myocyte model, in mV, ms, mM and pA/pF.

Courtemanche M, Ramirez RJ, Nattel S (1998) Ionic mechanisms underlying human atrial action
potential properties: insights from a mathematical model. Am J Physiol 275:H301–H321.

Twelve membrane currents (I_Na, I_K1, I_to, I_Kur, I_Kr, I_Ks, I_CaL, I_NaK, I_NaCa, I_pCa,
I_bNa, I_bCa), Na⁺/K⁺/Ca²⁺ concentrations and a two-compartment SR (uptake, release) with
calmodulin/troponin/calsequestrin buffers. Currents are normalised to C_m (pA/pF = µA/µF), as
in the paper's Table 1; the concentration equations multiply them back by C_m (pF).

Equations and constants follow the paper's appendix as encoded in the CellML model
(models.cellml.org exposure 0e03bbe0…) and Myokit's ``c/courtemanche-1998.mmt`` (myokit/models),
which ../shared/NVERSION.md §2's reference action potentials were computed with. Where the
two differ from the printed paper they follow the CellML file: extra digits (g_Kr, g_Ks,
g_CaL, g_bNa, I_NaK_max) and the sign of the I_Kur u_i β rate, β = exp((V − 158)/16) 1/ms
(the printed equation has the opposite sign, which the paper's own τ_ui plot contradicts).
As in the Myokit file (not the CellML one), the stimulus is carried by K⁺: it enters
dK_i/dt, which keeps K_i from drifting under long pacing.

Numerics: Rush–Larsen for the 15 gates (m, h, j, oa, oi, ua, ui, xr, xs, d, f, f_Ca, u, v, w),
forward Euler for V and the five concentrations. Every term that depends only on V (the twelve
V-gated gates' steady states and e^(−dt/τ), I_Kur's conductance, the V factors of I_K1, I_Kr,
I_NaK, I_NaCa) is a column of :data:`TABULATED`, computed by ``voltage_term`` and read by
``step`` through ``lookup``: exactly, or interpolated from a 0.05 mV table
(``base.build_table``). Rate expressions of the form x / (1 − exp(−x/s)) have removable
singularities (I_Na α_m at −47.13 mV, I_Kr at −14.1 and 3.3328 mV, I_Ks at 19.9 mV, τ_d at
−10 mV, τ_w at 7.9 mV): ``voltage_term`` writes them with ``expm1``, which has no
cancellation near x = 0, and replaces them by their limit (plus the linear Taylor
term where there is one) when |x| < 1e-9 mV, where that differs from the exact function by
far less than rounding; exactly at x = 0 the expm1 form would give 0/0. Divisions by
literal constants are written as products with ``(1.0 / c)``, which Python folds into one
constant: without fast-math the compilers keep a real division, ~10 % of the step's time.
"""

import math

from cardiotwin.solvers.ionic.base import Parameter, State, lookup, table_position

CITATION = "Courtemanche M, Ramirez RJ, Nattel S (1998) Am J Physiol 275:H301-H321"

# The published initial state (Courtemanche 1998; the same values as the CellML file's).
STATES = (
    State("V", -81.18, "mV", description="membrane potential"),
    State("Na_i", 11.17, "mM", description="intracellular Na+"),
    State("K_i", 139.0, "mM", description="intracellular K+"),
    State("Ca_i", 1.013e-4, "mM", description="intracellular (myoplasmic) free Ca2+"),
    State("Ca_up", 1.488, "mM", description="Ca2+ in the SR uptake compartment (NSR)"),
    State("Ca_rel", 1.488, "mM", description="Ca2+ in the SR release compartment (JSR)"),
    State("m", 2.908e-3, "1", gate=True, description="I_Na activation"),
    State("h", 0.9649, "1", gate=True, description="I_Na fast inactivation"),
    State("j", 0.9775, "1", gate=True, description="I_Na slow inactivation"),
    State("oa", 3.043e-2, "1", gate=True, description="I_to activation"),
    State("oi", 0.9992, "1", gate=True, description="I_to inactivation"),
    State("ua", 4.966e-3, "1", gate=True, description="I_Kur activation"),
    State("ui", 0.9986, "1", gate=True, description="I_Kur inactivation"),
    State("xr", 3.296e-5, "1", gate=True, description="I_Kr activation"),
    State("xs", 1.869e-2, "1", gate=True, description="I_Ks activation"),
    State("d", 1.367e-4, "1", gate=True, description="I_CaL activation"),
    State("f", 0.9996, "1", gate=True, description="I_CaL voltage-dependent inactivation"),
    State("f_Ca", 0.7755, "1", gate=True, description="I_CaL Ca2+-dependent inactivation"),
    State("u", 2.35e-112, "1", gate=True, description="J_rel activation"),
    State("v", 1.0, "1", gate=True, description="J_rel Ca2+-flux-dependent inactivation"),
    State("w", 0.9992, "1", gate=True, description="J_rel voltage-dependent inactivation"),
)
#: kept in float64 under precision="mixed" (cardiotwin.solvers.precision): over a paced beat
#: at dt 0.005 ms, 82 % (Na_i), 84 % (K_i) and 16 % (ui, a slow I_Kur gate resting near 1)
#: of their movement comes in updates below half a float32 ulp, which a float32 store would
#: lose; every other state loses ≤ 0.1 %
FP64_STATES = ("Na_i", "K_i", "ui")
#: held during single-cell pre-pacing (cardiotwin.pipeline.tissue.prepaced_states). Paced
#: alone at 500 ms from the initial state, Na_i moves 0.07 mM per 10 beats for hundreds of
#: beats (a time constant of many minutes) while everything else settles in 50-200 beats:
#: the published cell's APD90 falls 276 → 237 ms over 300 beats, and the AF + fibrotic cell
#: (I_Na × 0.6, I_K1 × 0.5) depolarises at rest until it stops firing (peak below 0 mV by
#: beat 150). With Na_i and K_i held, the three sets reach a steady beat in 60, 100 and 200
#: beats (benchmarks/RESULTS.md, "Courtemanche pre-pacing").
SLOW_STATES = ("Na_i", "K_i")

(
    V, NA_I, K_I, CA_I, CA_UP, CA_REL,
    M, H, J, OA, OI, UA, UI, XR, XS, D, F_GATE, F_CA, U, V_GATE, W,
) = range(21)  # fmt: skip

PARAMETERS = (
    # conductances and maximal currents (paper Table 1; CellML digits)
    Parameter("g_Na", 7.8, "nS/pF", "I_Na maximal conductance"),
    Parameter("g_K1", 0.09, "nS/pF", "I_K1 maximal conductance"),
    Parameter("g_to", 0.1652, "nS/pF", "I_to maximal conductance"),
    Parameter(
        "g_Kur_scale",
        1.0,
        "1",
        "scale on I_Kur's V-dependent conductance 0.005 + 0.05/(1 + exp(-(V - 15)/13)) nS/pF",
    ),
    Parameter("g_Kr", 0.029411765, "nS/pF", "I_Kr maximal conductance"),
    Parameter("g_Ks", 0.12941176, "nS/pF", "I_Ks maximal conductance"),
    Parameter("g_CaL", 0.12375, "nS/pF", "I_CaL maximal conductance"),
    Parameter("E_CaL", 65.0, "mV", "I_CaL apparent reversal potential"),
    Parameter("g_bNa", 6.744375e-4, "nS/pF", "background Na+ conductance"),
    Parameter("g_bCa", 1.131e-3, "nS/pF", "background Ca2+ conductance"),
    Parameter("I_NaK_max", 0.59933874, "pA/pF", "maximal Na+/K+ pump current"),
    Parameter("Km_Na_i", 10.0, "mM", "I_NaK half-saturation [Na+]i"),
    Parameter("Km_K_o", 1.5, "mM", "I_NaK half-saturation [K+]o"),
    Parameter("I_NaCa_max", 1600.0, "pA/pF", "maximal Na+/Ca2+ exchanger current"),
    Parameter("gamma_NaCa", 0.35, "1", "I_NaCa voltage-dependence (position of energy barrier)"),
    Parameter("Km_Na", 87.5, "mM", "I_NaCa half-saturation [Na+]o"),
    Parameter("Km_Ca", 1.38, "mM", "I_NaCa half-saturation [Ca2+]o"),
    Parameter("k_sat", 0.1, "1", "I_NaCa saturation factor at negative potentials"),
    Parameter("I_pCa_max", 0.275, "pA/pF", "maximal sarcolemmal Ca2+ pump current"),
    Parameter("Km_pCa", 5.0e-4, "mM", "I_pCa half-saturation [Ca2+]i"),
    Parameter("K_Q10", 3.0, "1", "temperature factor on I_to and I_Kur gate kinetics"),
    # SR release, uptake and transfer
    Parameter("K_rel", 30.0, "1/ms", "maximal J_rel rate constant"),
    Parameter("I_up_max", 0.005, "mM/ms", "maximal SR Ca2+ uptake"),
    Parameter("K_up", 9.2e-4, "mM", "J_up half-saturation [Ca2+]i"),
    Parameter("Ca_up_max", 15.0, "mM", "maximal [Ca2+] in the NSR (leak normalisation)"),
    Parameter("tau_tr", 180.0, "ms", "NSR -> JSR transfer time constant"),
    Parameter("tau_u", 8.0, "ms", "J_rel activation time constant"),
    Parameter("tau_f_Ca", 2.0, "ms", "I_CaL Ca2+-inactivation time constant"),
    # buffers
    Parameter("CMDN_max", 0.05, "mM", "total calmodulin in the myoplasm"),
    Parameter("TRPN_max", 0.07, "mM", "total troponin in the myoplasm"),
    Parameter("CSQN_max", 10.0, "mM", "total calsequestrin in the JSR"),
    Parameter("Km_CMDN", 2.38e-3, "mM", "calmodulin Ca2+ half-saturation"),
    Parameter("Km_TRPN", 5.0e-4, "mM", "troponin Ca2+ half-saturation"),
    Parameter("Km_CSQN", 0.8, "mM", "calsequestrin Ca2+ half-saturation"),
    # environment and geometry
    Parameter("Na_o", 140.0, "mM", "extracellular Na+"),
    Parameter("K_o", 5.4, "mM", "extracellular K+"),
    Parameter("Ca_o", 1.8, "mM", "extracellular Ca2+"),
    Parameter("T", 310.0, "K", "temperature"),
    Parameter("Cm", 100.0, "pF", "membrane capacitance"),
    Parameter("V_i", 13668.0, "um^3", "myoplasm volume (0.68 x 20100 um^3 cell)"),
    Parameter("V_up", 1109.52, "um^3", "NSR volume (0.0552 x cell)"),
    Parameter("V_rel", 96.48, "um^3", "JSR volume (0.0048 x cell)"),
)
(
    G_NA, G_K1, G_TO, G_KUR_SCALE, G_KR, G_KS, G_CAL, E_CAL, G_BNA, G_BCA,
    I_NAK_MAX, KM_NA_I, KM_K_O, I_NACA_MAX, GAMMA_NACA, KM_NA, KM_CA, K_SAT,
    I_PCA_MAX, KM_PCA, K_Q10,
    K_REL, I_UP_MAX, K_UP, CA_UP_MAX, TAU_TR, TAU_U, TAU_F_CA,
    CMDN_MAX, TRPN_MAX, CSQN_MAX, KM_CMDN, KM_TRPN, KM_CSQN,
    NA_O, K_O, CA_O, TEMP, CM, V_I, V_UP, V_REL,
) = range(42)  # fmt: skip

#: gas constant, J/(mol K), and Faraday constant, C/mmol (paper Table 1)
R_GAS = 8.3143
FARADAY = 96.4867
#: J_rel trigger: threshold c1 and slope c2 of the SR Ca2+ flux signal Fn (paper eqs. 64-68)
FN_THRESHOLD = 3.4175e-13
FN_SLOPE = 13.67e-16
#: v_inf's threshold is 0.2 c1: exp(-(Fn - 0.2 c1)/c2) = exp(-(Fn - c1)/c2) * this factor
V_INF_SHIFT = math.exp(-0.8 * FN_THRESHOLD / FN_SLOPE)
#: |V - V0| (mV) below which a removable singularity takes its limit value
SINGULAR_MV = 1e-9


#: Quantities that depend only on V (and parameters, dt): gate steady states, Rush–Larsen
#: factors e^(−dt/τ), I_Kur's conductance, and the V-dependent factors of I_K1, I_Kr, I_NaK
#: and I_NaCa. ``step`` gets them through ``lookup``: exact, or interpolated from a table (see
#: ``base.build_table``). f_Ca, u and v relax towards Ca_i- and flux-dependent steady states
#: and stay exact; their constant decay factors (f_ca_rl, u_rl) are columns so that the
#: ``exp`` is taken once per table, not once per step (a constant interpolates exactly).
TABULATED = (
    "m_inf", "m_rl", "h_inf", "h_rl", "j_inf", "j_rl",
    "oa_inf", "ua_inf", "oa_ua_rl", "oi_inf", "oi_rl", "ui_inf", "ui_rl", "g_kur_factor",
    "xr_inf", "xr_rl", "i_kr_factor", "xs_inf", "xs_rl",
    "d_inf", "d_rl", "f_inf", "f_rl", "w_inf", "w_rl",
    "i_k1_factor", "i_nak_factor", "i_naca_na_coef", "i_naca_ca_coef", "f_ca_rl", "u_rl",
)  # fmt: skip
(
    T_M_INF, T_M_RL, T_H_INF, T_H_RL, T_J_INF, T_J_RL,
    T_OA_INF, T_UA_INF, T_OA_UA_RL, T_OI_INF, T_OI_RL, T_UI_INF, T_UI_RL, T_G_KUR,
    T_XR_INF, T_XR_RL, T_I_KR, T_XS_INF, T_XS_RL,
    T_D_INF, T_D_RL, T_F_INF, T_F_RL, T_W_INF, T_W_RL,
    T_I_K1, T_I_NAK, T_I_NACA_NA, T_I_NACA_CA, T_F_CA_RL, T_U_RL,
) = range(31)  # fmt: skip


def voltage_term(c, v_m, p, s, dt_ms):
    """Column ``c`` of :data:`TABULATED` at membrane potential ``v_m`` (mV)."""
    # --- I_Na gates (eqs. 29-34) ---
    if c == T_M_INF or c == T_M_RL:
        x = v_m + 47.13
        if abs(x) < SINGULAR_MV:
            alpha = 3.2 + 0.16 * x  # 0.32 x / (1 - exp(-0.1 x)) near x = 0
        else:
            alpha = -0.32 * x / math.expm1(-0.1 * x)
        rate = alpha + 0.08 * math.exp(-v_m * (1.0 / 11.0))
        if c == T_M_INF:
            return alpha / rate
        return math.exp(-dt_ms * rate)
    # α_h = α_j = 0 at and above −40 mV: both gates relax to 0 there
    if c == T_H_INF or c == T_H_RL:
        if v_m < -40.0:
            alpha = 0.135 * math.exp((v_m + 80.0) * (1.0 / -6.8))
            rate = alpha + 3.56 * math.exp(0.079 * v_m) + 3.1e5 * math.exp(0.35 * v_m)
        else:
            alpha = 0.0
            rate = 1.0 / (0.13 * (1.0 + math.exp((v_m + 10.66) * (1.0 / -11.1))))
        if c == T_H_INF:
            return alpha / rate
        return math.exp(-dt_ms * rate)
    if c == T_J_INF or c == T_J_RL:
        if v_m < -40.0:
            alpha = (
                (-127140.0 * math.exp(0.2444 * v_m) - 3.474e-5 * math.exp(-0.04391 * v_m))
                * (v_m + 37.78)
                / (1.0 + math.exp(0.311 * (v_m + 79.23)))
            )
            rate = alpha + 0.1212 * math.exp(-0.01052 * v_m) / (
                1.0 + math.exp(-0.1378 * (v_m + 40.14))
            )
        else:
            alpha = 0.0
            rate = 0.3 * math.exp(-2.535e-7 * v_m) / (1.0 + math.exp(-0.1 * (v_m + 32.0)))
        if c == T_J_INF:
            return alpha / rate
        return math.exp(-dt_ms * rate)

    # --- I_to (eqs. 36-40) and I_Kur (eqs. 41-46): oa and ua share their rates ---
    if c == T_OA_INF:
        return 1.0 / (1.0 + math.exp((v_m + 20.47) * (1.0 / -17.54)))
    if c == T_UA_INF:
        return 1.0 / (1.0 + math.exp((v_m + 30.3) * (1.0 / -9.6)))
    if c == T_OA_UA_RL:
        rate = 0.65 / (
            math.exp((v_m + 10.0) * (1.0 / -8.5)) + math.exp((v_m - 30.0) * (1.0 / -59.0))
        ) + 0.65 / (2.5 + math.exp((v_m + 82.0) * (1.0 / 17.0)))
        return math.exp(-dt_ms * rate * p[K_Q10, s])
    if c == T_OI_INF:
        return 1.0 / (1.0 + math.exp((v_m + 43.1) * (1.0 / 5.3)))
    if c == T_OI_RL:
        rate = 1.0 / (18.53 + math.exp((v_m + 113.7) * (1.0 / 10.95))) + 1.0 / (
            35.56 + math.exp((v_m + 1.26) * (1.0 / -7.44))
        )
        return math.exp(-dt_ms * rate * p[K_Q10, s])
    if c == T_UI_INF:
        return 1.0 / (1.0 + math.exp((v_m - 99.45) * (1.0 / 27.48)))
    if c == T_UI_RL:
        rate = 1.0 / (21.0 + math.exp((v_m - 185.0) * (1.0 / -28.0))) + math.exp(
            (v_m - 158.0) * (1.0 / 16.0)
        )
        return math.exp(-dt_ms * rate * p[K_Q10, s])
    if c == T_G_KUR:  # nS/pF, before g_Kur_scale
        return 0.005 + 0.05 / (1.0 + math.exp((v_m - 15.0) * (1.0 / -13.0)))

    # --- I_Kr (eqs. 47-49) ---
    if c == T_XR_INF:
        return 1.0 / (1.0 + math.exp((v_m + 14.1) * (1.0 / -6.5)))
    if c == T_XR_RL:
        x = v_m + 14.1
        if abs(x) < SINGULAR_MV:
            alpha = 3.0e-4 * (5.0 + 0.5 * x)
        else:
            alpha = -3.0e-4 * x / math.expm1(-0.2 * x)
        x = v_m - 3.3328
        if abs(x) < SINGULAR_MV:
            beta = 7.3898e-5 * (5.1237 - 0.5 * x)
        else:
            beta = 7.3898e-5 * x / math.expm1(x * (1.0 / 5.1237))
        return math.exp(-dt_ms * (alpha + beta))
    if c == T_I_KR:  # inward rectification
        return 1.0 / (1.0 + math.exp((v_m + 15.0) * (1.0 / 22.4)))

    # --- I_Ks (eqs. 50-52): τ = 0.5 / (α + β) ---
    if c == T_XS_INF or c == T_XS_RL:
        x = v_m - 19.9
        if c == T_XS_INF:
            return 1.0 / math.sqrt(1.0 + math.exp(-x * (1.0 / 12.7)))
        if abs(x) < SINGULAR_MV:
            alpha = 4.0e-5 * (17.0 + 0.5 * x)
            beta = 3.5e-5 * (9.0 - 0.5 * x)
        else:
            alpha = -4.0e-5 * x / math.expm1(-x * (1.0 / 17.0))
            beta = 3.5e-5 * x / math.expm1(x * (1.0 / 9.0))
        return math.exp(-2.0 * dt_ms * (alpha + beta))

    # --- I_CaL voltage gates (eqs. 53-56) ---
    if c == T_D_INF or c == T_D_RL:
        x = v_m + 10.0
        if c == T_D_INF:
            return 1.0 / (1.0 + math.exp(-x * (1.0 / 8.0)))
        if abs(x) < SINGULAR_MV:
            rate = 2.0 * 6.24 * 0.035  # 1/τ_d; τ_d = tanh(x/12.48)/(0.035 x) is even in x
        else:
            em1 = math.expm1(-x * (1.0 / 6.24))
            rate = 0.035 * x * (2.0 + em1) / -em1
        return math.exp(-dt_ms * rate)
    if c == T_F_INF:
        return 1.0 / (1.0 + math.exp((v_m + 28.0) * (1.0 / 6.9)))
    if c == T_F_RL:
        x = v_m + 10.0
        rate = (0.0197 * math.exp(-0.0337 * 0.0337 * x * x) + 0.02) * (1.0 / 9.0)
        return math.exp(-dt_ms * rate)

    # --- J_rel voltage-dependent inactivation w (eq. 71) ---
    if c == T_W_INF:
        return 1.0 - 1.0 / (1.0 + math.exp(-(v_m - 40.0) * (1.0 / 17.0)))
    if c == T_W_RL:
        x = v_m - 7.9
        if abs(x) < SINGULAR_MV:
            rate = 1.3 / 1.2  # τ_w → 6 (1/5) / 1.3 ms
        else:
            em1 = math.expm1(-x * (1.0 / 5.0))
            rate = (1.3 + 0.3 * em1) * x / (-6.0 * em1)
        return math.exp(-dt_ms * rate)

    # --- V-dependent factors of currents (eqs. 35, 57-60) ---
    if c == T_I_K1:  # inward rectification
        return 1.0 / (1.0 + math.exp(0.07 * (v_m + 80.0)))
    vfrt = v_m / (R_GAS * p[TEMP, s] / FARADAY)
    exp_neg = math.exp(-vfrt)
    na_o = p[NA_O, s]
    k_o = p[K_O, s]
    ca_o = p[CA_O, s]
    if c == T_I_NAK:  # I_NaK without its Na_i saturation, pA/pF
        sigma = (math.exp(na_o * (1.0 / 67.3)) - 1.0) * (1.0 / 7.0)
        f_nak = 1.0 / (1.0 + 0.1245 * math.exp(-0.1 * vfrt) + 0.0365 * sigma * exp_neg)
        return p[I_NAK_MAX, s] * f_nak * k_o / (k_o + p[KM_K_O, s])
    # I_NaCa = i_naca_na_coef·Na_i³ − i_naca_ca_coef·Ca_i (pA/pF per mM³, per mM)
    if c == T_I_NACA_NA or c == T_I_NACA_CA:
        exp_g = math.exp(p[GAMMA_NACA, s] * vfrt)
        exp_g1 = exp_g * exp_neg  # exp((γ − 1) V F/RT)
        km_na = p[KM_NA, s]
        scale = p[I_NACA_MAX, s] / (
            (km_na * km_na * km_na + na_o * na_o * na_o)
            * (p[KM_CA, s] + ca_o)
            * (1.0 + p[K_SAT, s] * exp_g1)
        )
        if c == T_I_NACA_NA:
            return scale * exp_g * ca_o
        return scale * exp_g1 * na_o * na_o * na_o

    # --- constant decay factors of the Ca-dependent gates f_Ca and u ---
    if c == T_F_CA_RL:
        return math.exp(-dt_ms / p[TAU_F_CA, s])
    if c == T_U_RL:
        return math.exp(-dt_ms / p[TAU_U, s])
    return 0.0


def step(y, p, k, s, dt_ms, i_stim, table):
    """Advance node ``k`` by ``dt_ms`` (ms); ``i_stim`` in µA/µF, positive depolarising."""
    v_m = y[V, k]
    na_i = y[NA_I, k]
    k_i = y[K_I, k]
    ca_i = y[CA_I, k]
    ca_up = y[CA_UP, k]
    ca_rel = y[CA_REL, k]
    na_o = p[NA_O, s]
    k_o = p[K_O, s]
    ca_o = p[CA_O, s]
    cm = p[CM, s]
    v_i = p[V_I, s]
    v_up = p[V_UP, s]
    v_rel = p[V_REL, s]

    rtf = R_GAS * p[TEMP, s] / FARADAY  # mV
    e_na = rtf * math.log(na_o / na_i)
    e_k = rtf * math.log(k_o / k_i)
    e_ca = 0.5 * rtf * math.log(ca_o / ca_i)

    row, frac = table_position(v_m, table)

    # --- I_Na (eqs. 29-34) ---
    m = y[M, k]
    h = y[H, k]
    jj = y[J, k]
    gate_inf = lookup(T_M_INF, v_m, p, s, dt_ms, table, row, frac)
    y[M, k] = gate_inf + (m - gate_inf) * lookup(T_M_RL, v_m, p, s, dt_ms, table, row, frac)
    gate_inf = lookup(T_H_INF, v_m, p, s, dt_ms, table, row, frac)
    y[H, k] = gate_inf + (h - gate_inf) * lookup(T_H_RL, v_m, p, s, dt_ms, table, row, frac)
    gate_inf = lookup(T_J_INF, v_m, p, s, dt_ms, table, row, frac)
    y[J, k] = gate_inf + (jj - gate_inf) * lookup(T_J_RL, v_m, p, s, dt_ms, table, row, frac)
    i_na = p[G_NA, s] * m * m * m * h * jj * (v_m - e_na)

    # --- I_K1 (eq. 35) ---
    i_k1 = p[G_K1, s] * (v_m - e_k) * lookup(T_I_K1, v_m, p, s, dt_ms, table, row, frac)

    # --- I_to (eqs. 36-40) and I_Kur (eqs. 41-46) ---
    oa = y[OA, k]
    oi = y[OI, k]
    ua = y[UA, k]
    ui = y[UI, k]
    decay = lookup(T_OA_UA_RL, v_m, p, s, dt_ms, table, row, frac)
    gate_inf = lookup(T_OA_INF, v_m, p, s, dt_ms, table, row, frac)
    y[OA, k] = gate_inf + (oa - gate_inf) * decay
    gate_inf = lookup(T_UA_INF, v_m, p, s, dt_ms, table, row, frac)
    y[UA, k] = gate_inf + (ua - gate_inf) * decay
    gate_inf = lookup(T_OI_INF, v_m, p, s, dt_ms, table, row, frac)
    y[OI, k] = gate_inf + (oi - gate_inf) * lookup(T_OI_RL, v_m, p, s, dt_ms, table, row, frac)
    gate_inf = lookup(T_UI_INF, v_m, p, s, dt_ms, table, row, frac)
    y[UI, k] = gate_inf + (ui - gate_inf) * lookup(T_UI_RL, v_m, p, s, dt_ms, table, row, frac)
    i_to = p[G_TO, s] * oa * oa * oa * oi * (v_m - e_k)
    g_kur = p[G_KUR_SCALE, s] * lookup(T_G_KUR, v_m, p, s, dt_ms, table, row, frac)
    i_kur = g_kur * ua * ua * ua * ui * (v_m - e_k)

    # --- I_Kr (eqs. 47-49) ---
    xr = y[XR, k]
    gate_inf = lookup(T_XR_INF, v_m, p, s, dt_ms, table, row, frac)
    y[XR, k] = gate_inf + (xr - gate_inf) * lookup(T_XR_RL, v_m, p, s, dt_ms, table, row, frac)
    i_kr = p[G_KR, s] * xr * (v_m - e_k) * lookup(T_I_KR, v_m, p, s, dt_ms, table, row, frac)

    # --- I_Ks (eqs. 50-52) ---
    xs = y[XS, k]
    gate_inf = lookup(T_XS_INF, v_m, p, s, dt_ms, table, row, frac)
    y[XS, k] = gate_inf + (xs - gate_inf) * lookup(T_XS_RL, v_m, p, s, dt_ms, table, row, frac)
    i_ks = p[G_KS, s] * xs * xs * (v_m - e_k)

    # --- I_CaL (eqs. 53-56) ---
    d = y[D, k]
    f = y[F_GATE, k]
    f_ca = y[F_CA, k]
    gate_inf = lookup(T_D_INF, v_m, p, s, dt_ms, table, row, frac)
    y[D, k] = gate_inf + (d - gate_inf) * lookup(T_D_RL, v_m, p, s, dt_ms, table, row, frac)
    gate_inf = lookup(T_F_INF, v_m, p, s, dt_ms, table, row, frac)
    y[F_GATE, k] = gate_inf + (f - gate_inf) * lookup(T_F_RL, v_m, p, s, dt_ms, table, row, frac)
    gate_inf = 1.0 / (1.0 + ca_i * (1.0 / 3.5e-4))
    y[F_CA, k] = gate_inf + (f_ca - gate_inf) * lookup(
        T_F_CA_RL, v_m, p, s, dt_ms, table, row, frac
    )
    i_cal = p[G_CAL, s] * d * f * f_ca * (v_m - p[E_CAL, s])

    # --- pumps, exchanger, background (eqs. 57-63) ---
    ratio = p[KM_NA_I, s] / na_i
    i_nak = lookup(T_I_NAK, v_m, p, s, dt_ms, table, row, frac) / (1.0 + ratio * math.sqrt(ratio))
    i_naca = (
        lookup(T_I_NACA_NA, v_m, p, s, dt_ms, table, row, frac) * (na_i * na_i * na_i)
        - lookup(T_I_NACA_CA, v_m, p, s, dt_ms, table, row, frac) * ca_i
    )
    i_pca = p[I_PCA_MAX, s] * ca_i / (p[KM_PCA, s] + ca_i)
    i_bna = p[G_BNA, s] * (v_m - e_na)
    i_bca = p[G_BCA, s] * (v_m - e_ca)

    # --- SR fluxes (eqs. 64-72), mM/ms ---
    u = y[U, k]
    vg = y[V_GATE, k]
    w = y[W, k]
    j_rel = p[K_REL, s] * u * u * vg * w * (ca_rel - ca_i)
    j_tr = (ca_up - ca_rel) / p[TAU_TR, s]
    i_up_max = p[I_UP_MAX, s]
    j_up = i_up_max / (1.0 + p[K_UP, s] / ca_i)
    j_leak = i_up_max * ca_up / p[CA_UP_MAX, s]
    # Fn: the CellML file's scaling, 1e-12 V_rel J_rel − 5e-13/F (0.5 I_CaL − 0.2 I_NaCa) C_m
    fn = 1e-12 * v_rel * j_rel - 5e-13 / FARADAY * (0.5 * i_cal - 0.2 * i_naca) * cm
    e_fn = math.exp((FN_THRESHOLD - fn) * (1.0 / FN_SLOPE))
    u_inf = 1.0 / (1.0 + e_fn)
    y[U, k] = u_inf + (u - u_inf) * lookup(T_U_RL, v_m, p, s, dt_ms, table, row, frac)
    gate_inf = 1.0 - 1.0 / (1.0 + e_fn * V_INF_SHIFT)
    rate = 1.0 / (1.91 + 2.09 * u_inf)
    y[V_GATE, k] = gate_inf + (vg - gate_inf) * math.exp(-dt_ms * rate)
    gate_inf = lookup(T_W_INF, v_m, p, s, dt_ms, table, row, frac)
    y[W, k] = gate_inf + (w - gate_inf) * lookup(T_W_RL, v_m, p, s, dt_ms, table, row, frac)

    # --- membrane potential and concentrations (eqs. 18-27), forward Euler ---
    i_k_total = i_k1 + i_to + i_kur + i_kr + i_ks
    i_ion = i_na + i_k_total + i_cal + i_pca + i_nak + i_naca + i_bna + i_bca
    y[V, k] = v_m + dt_ms * (i_stim - i_ion)
    to_mm = cm / (v_i * FARADAY)  # pA/pF -> mM/ms of a monovalent ion in the myoplasm
    y[NA_I, k] = na_i + dt_ms * to_mm * (-3.0 * i_nak - 3.0 * i_naca - i_bna - i_na)
    y[K_I, k] = k_i + dt_ms * to_mm * (2.0 * i_nak - i_k_total + i_stim)
    b_trpn = p[KM_TRPN, s] + ca_i
    b_cmdn = p[KM_CMDN, s] + ca_i
    buffering = (
        1.0
        + p[TRPN_MAX, s] * p[KM_TRPN, s] / (b_trpn * b_trpn)
        + p[CMDN_MAX, s] * p[KM_CMDN, s] / (b_cmdn * b_cmdn)
    )
    flux = (
        0.5 * to_mm * (2.0 * i_naca - i_pca - i_cal - i_bca)
        + (v_up * (j_leak - j_up) + v_rel * j_rel) / v_i
    )
    y[CA_I, k] = ca_i + dt_ms * flux / buffering
    b_csqn = p[KM_CSQN, s] + ca_rel
    y[CA_REL, k] = ca_rel + dt_ms * (j_tr - j_rel) / (
        1.0 + p[CSQN_MAX, s] * p[KM_CSQN, s] / (b_csqn * b_csqn)
    )
    y[CA_UP, k] = ca_up + dt_ms * (j_up - j_leak - j_tr * v_rel / v_up)
