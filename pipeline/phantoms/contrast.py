"""LGE contrast of a phantom: tissue signals drawn per seed from published ranges.

Ventricles: the magnitude inversion-recovery signal of each tissue is computed from its
longitudinal relaxation rate 10-20 min after gadolinium, so the contrast between remote
myocardium, border zone, dense scar and blood follows from physiology rather than from where
the segmentation thresholds sit:

- post-contrast T1 of remote myocardium 450-600 ms (Lee 2013, JCMR 15:11: 540 ± 88 ms at
  15 min, 1.5 T); native T1 (1.5 T) myocardium 950-1050 ms, blood 1450-1650 ms, chronic scar
  1050-1250 ms;
- gadolinium partition coefficient (tissue / blood concentration) of remote myocardium
  0.40-0.50 and of chronic infarct 0.90-1.20 (Arheden 1999, Radiology 211:698: ≈ 0.45 normal,
  ≈ 0.9 reperfused infarct at equilibrium; above 1 at 10-20 min, when the blood has been
  cleared faster than the scar);
- relaxation rates add: R1 = R1_native + λ · ΔR1_blood (fast exchange), and the border zone is
  a sub-voxel mixture of viable and fibrotic tissue with fibrotic fraction f (its λ and native
  R1 mix linearly in f);
- inversion time set to null remote myocardium (T1 · ln 2), up to 8 % long: on magnitude
  images a TI just past the null is recommended, since a short one makes mild enhancement
  darker than remote (the magnitude of a magnetisation still negative); proton density
  relative to blood: myocardium 0.80, scar 0.85;
- signal = PD · |1 − 2 exp(−TI · R1)| (magnitude image, full recovery between inversions),
  everything divided by the blood signal so that blood = 1.

The resulting scar-to-blood ratio spans ≈ 0.9-1.5 (scar and blood often look alike in
bright-blood LGE: Kellman 2016, JCMR 18:77), remote myocardium 0-0.15 of blood.

Surroundings (relative to blood): chest soft tissue 0.20-0.45, lung 0.02-0.08, air 0.

Atria: the wall's image intensity ratio (IIR = wall / blood pool) is what the field
thresholds (Benito 2017, Europace 19:1272: fibrosis > 1.20, dense > 1.32; Khurram 2014, Heart
Rhythm 11:85: dense scar > 1.61), but a 2-3 mm wall is never seen whole: the tissue values
drawn here (healthy 0.25-0.50, fibrosis 2.2-2.8, dense 2.7-3.6, surroundings 0.30-0.55 of
blood) are chosen so that, after partial volume with blood and surroundings at 1.25-2.5 mm
voxels, healthy wall stays below IIR 1.2 and fibrotic wall peaks above it, as in patients
(image IIRs of 1.2-2 and more).

What these phantoms can and cannot validate in the atrium: the fibrosis total (IIR ≥ 1.20),
not the split at 1.32 into interstitial and dense fibrosis. The split cannot be had at the
same time: at 1.25 mm, SNR 15, 91 % of the truth's interstitial-fibrosis voxels (label 2)
image above 1.32 (median IIR 2.0; dense 2.7; data_samples/la-fibrosis), so ``iir`` gives
fibrosis Dice 0.01-0.05 and dense Dice 0.56-0.58 while the total has Dice 0.98-0.99 (seeds 1
and 3 at 8 % and 35 %), and ``iir-surface`` calls 9 % dense against 3-4 % true at 8 %. Lowering
the fibrotic tissue value until it images between 1.20 and 1.32 (1.3-1.5 of blood, dense
1.8-2.2) lifts fibrosis Dice only to 0.27-0.52 (the 0.12-wide band is two noise SDs at SNR 15
and narrower than the partial-volume spread of a 2-3 mm wall) and loses 4-10 points of the
total (the 3-point must-show of the surface method fails); 1.7-2.0 still calls nearly all
fibrosis dense. The simulation therefore treats the two classes alike in an atrium never
ablated (pipeline/config.py: both conducting, fibrotic remodelling), as the patient-derived
models that threshold LGE once do (Zahid 2016, Boyle 2019).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

#: proton density relative to blood
PD_MYOCARDIUM = 0.80
PD_SCAR = 0.85


@dataclass(frozen=True)
class VentricleContrast:
    """Relaxation parameters of one seed (T1 in ms, rates in 1/s)."""

    remote_t1_post_ms: float
    native_t1_myocardium_ms: float
    native_t1_blood_ms: float
    native_t1_scar_ms: float
    partition_remote: float
    partition_scar: float
    inversion_time_ms: float
    rv_blood_factor: float
    soft_tissue: float
    lung: float

    @property
    def blood_delta_r1_per_s(self) -> float:
        """ΔR1 of blood from gadolinium (1/s), implied by the remote T1 and its partition."""
        return (1000.0 / self.remote_t1_post_ms - 1000.0 / self.native_t1_myocardium_ms) / (
            self.partition_remote
        )

    def _signal(self, r1_per_s: np.ndarray, proton_density: np.ndarray | float) -> np.ndarray:
        ti_s = self.inversion_time_ms / 1000.0
        return np.asarray(proton_density) * np.abs(1.0 - 2.0 * np.exp(-ti_s * r1_per_s))

    @property
    def blood_signal_raw(self) -> float:
        r1 = 1000.0 / self.native_t1_blood_ms + self.blood_delta_r1_per_s
        return float(self._signal(np.asarray(r1), 1.0))

    def myocardium(
        self,
        fibrotic_fraction: np.ndarray,
        partition_jitter: np.ndarray | float = 0.0,
        native_jitter: np.ndarray | float = 0.0,
    ) -> np.ndarray:
        """Signal (blood = 1) of myocardium with the given fibrotic fraction (0 remote, 1 scar).

        ``partition_jitter`` (absolute, added to λ) and ``native_jitter`` (relative, on the
        native R1) are the tissue texture.
        """
        f = np.clip(np.asarray(fibrotic_fraction, dtype=np.float64), 0.0, 1.0)
        native_r1 = (1 - f) * (1000.0 / self.native_t1_myocardium_ms) + f * (
            1000.0 / self.native_t1_scar_ms
        )
        partition = (1 - f) * self.partition_remote + f * self.partition_scar + partition_jitter
        r1 = native_r1 * (1.0 + np.asarray(native_jitter)) + partition * self.blood_delta_r1_per_s
        pd = (1 - f) * PD_MYOCARDIUM + f * PD_SCAR
        return (self._signal(r1, pd) / self.blood_signal_raw).astype(np.float32)

    def record(self) -> dict:
        remote = float(self.myocardium(np.asarray(0.0)))
        scar = float(self.myocardium(np.asarray(1.0)))
        blood_t1 = 1000.0 / (1000.0 / self.native_t1_blood_ms + self.blood_delta_r1_per_s)
        scar_t1 = 1000.0 / (
            1000.0 / self.native_t1_scar_ms + self.partition_scar * self.blood_delta_r1_per_s
        )
        return {
            "model": "magnitude inversion recovery, PD * |1 - 2 exp(-TI R1)|, blood = 1; "
            "R1 = R1_native + partition * dR1_blood; border zone = mixture with fibrotic "
            "fraction f (see pipeline/phantoms/contrast.py for the published ranges)",
            **{k: round(v, 4) for k, v in asdict(self).items()},
            "post_contrast_t1_ms": {
                "remote": round(self.remote_t1_post_ms, 1),
                "blood": round(blood_t1, 1),
                "dense_scar": round(scar_t1, 1),
            },
            "signal_relative_to_blood": {
                "remote_myocardium": round(remote, 4),
                "dense_scar": round(scar, 4),
                "border_zone_at_f_0.35": round(float(self.myocardium(np.asarray(0.35))), 4),
                "lv_blood": 1.0,
                "rv_blood": round(self.rv_blood_factor, 4),
                "soft_tissue": round(self.soft_tissue, 4),
                "lung": round(self.lung, 4),
                "air": 0.0,
            },
        }


def draw_ventricle_contrast(rng: np.random.Generator) -> VentricleContrast:
    """One seed's ventricular LGE contrast (ranges and sources in the module docstring)."""
    remote_t1 = rng.uniform(450.0, 600.0)
    return VentricleContrast(
        remote_t1_post_ms=remote_t1,
        native_t1_myocardium_ms=rng.uniform(950.0, 1050.0),
        native_t1_blood_ms=rng.uniform(1450.0, 1650.0),
        native_t1_scar_ms=rng.uniform(1050.0, 1250.0),
        partition_remote=rng.uniform(0.40, 0.50),
        partition_scar=rng.uniform(0.90, 1.20),
        inversion_time_ms=remote_t1 * math.log(2.0) * rng.uniform(1.0, 1.08),
        rv_blood_factor=rng.uniform(0.90, 1.05),
        soft_tissue=rng.uniform(0.20, 0.45),
        lung=rng.uniform(0.02, 0.08),
    )


@dataclass(frozen=True)
class AtriumContrast:
    """Tissue values of an atrial phantom relative to the blood pool (see the docstring)."""

    healthy: float
    fibrosis: float
    dense: float
    surroundings: float

    def record(self) -> dict:
        return {
            "model": "tissue values relative to blood (IIR before partial volume); see "
            "pipeline/phantoms/contrast.py",
            "signal_relative_to_blood": {
                **{k: round(v, 4) for k, v in asdict(self).items()},
                "blood": 1.0,
            },
        }


def draw_atrium_contrast(rng: np.random.Generator) -> AtriumContrast:
    """One seed's atrial tissue values (ranges in the module docstring)."""
    fibrosis = rng.uniform(2.2, 2.8)
    return AtriumContrast(
        healthy=rng.uniform(0.25, 0.50),
        fibrosis=fibrosis,
        dense=fibrosis + rng.uniform(0.5, 0.8),
        surroundings=rng.uniform(0.30, 0.55),
    )
