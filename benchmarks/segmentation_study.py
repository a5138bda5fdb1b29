"""Segmentation accuracy on fresh phantoms: Dice per scar variant, channels, atrial fibrosis %.

Not a test (it takes minutes to hours); its tables go to ``data_samples/README.md``.

Ventricles: ``lv-infarct`` seeds × variants × SNR at 1.5 × 1.5 × 8 mm with the drawn
(imperfect) wall mask, every method in :data:`VENTRICLE_METHODS`: Dice of dense scar and
border zone against ``truth_labels`` (mean and minimum per variant), the share of the
isthmus centreline labelled border zone, and whether the dense scar stays in the designed
number of pieces. ``lv-healthy`` with the same seeds: the largest enhanced volume.
Where the dense scar is lost (second table, per method and variant): the best Dice any
labelling inside the given wall mask could reach (the mask's ceiling), and the true dense
voxels missed because the mask leaves them out, because the blood-edge step removed them
from the wall, or because they were labelled border zone, and the voxels labelled dense
that are blood or outside the wall in truth (all as % of the true dense volume).
``--wall-mask true`` runs the same with the exact wall mask (what the mask costs);
``--wall-mask true-endo`` with the drawn mask whose endocardial contour is replaced by the
true one (its epicardial errors kept): what the drawn endocardium over bright scar costs.
Atria: ``la-fibrosis`` seeds × burdens at 1.25 mm isotropic and 1.5 × 1.5 × 2.5 mm, the
surface method (and the volumetric IIR), error of fibrosis % against the surface truth.

    .venv/bin/python benchmarks/segmentation_study.py ventricle --seeds 100-119 --snr 8 14 20
    .venv/bin/python benchmarks/segmentation_study.py atrium --seeds 100-109

Phantoms are cached under ``out/phantom_cache`` (anatomy sub-voxels of ``--fine-mm``, 1 mm by
default), so re-running with other methods is quick.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from cardiotwin.pipeline.images import ImageVolume
from cardiotwin.pipeline.phantoms import VARIANTS, Acquisition, make_phantom
from cardiotwin.pipeline.segmentation import DEFAULTS, channel_report, dice, segment

CACHE = Path("out/phantom_cache")

#: name -> settings of every ventricular method compared (the first is the default)
VENTRICLE_METHODS = {
    "fwhm": DEFAULTS["fwhm"],
    "fwhm, no channel step": replace(DEFAULTS["fwhm"], keep_channels=False),
    "fwhm, no blood-edge step": replace(DEFAULTS["fwhm"], trim_blood_edge=False),
    "fwhm, trim only where seen": replace(
        DEFAULTS["fwhm"], fit_endocardium=False, trim_carry_over=False
    ),
    # the default until 2026-12-05: the blood-edge step without the fitted endocardium,
    # the FWHM maximum that of the wall alone
    "fwhm, blood-edge step of 2026-12-04": replace(
        DEFAULTS["fwhm"], fit_endocardium=False, maximum_at_least_blood=False
    ),
    "fwhm, fitted endocardium, wall maximum": replace(
        DEFAULTS["fwhm"], maximum_at_least_blood=False
    ),
    "nsd 2/4 SD, remote": DEFAULTS["nsd"],
    "nsd 2/3 SD (Yan), remote": replace(DEFAULTS["nsd"], dense_sd=3.0),
    "nsd 2/4 SD, mode": replace(DEFAULTS["nsd"], nsd_reference="mode"),
    "nsd 2/6 SD, remote": replace(DEFAULTS["nsd"], dense_sd=6.0),
}


def seeds_from(text: str) -> list[int]:
    if "-" in text:
        low, high = (int(v) for v in text.split("-"))
        return list(range(low, high + 1))
    return [int(v) for v in text.split(",")]


def _phantom_code() -> str:
    """A hash of the phantom package's source: a cached phantom of older code is not reused."""
    import hashlib

    import cardiotwin.pipeline.phantoms as package

    digest = hashlib.sha256()
    for path in sorted(Path(package.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def cached_phantom(kind: str, seed: int, acquisition: Acquisition, **options):
    """The phantom's images and truth, from the cache when present (keyed by the phantom
    code's hash too)."""
    key = "_".join(
        [kind, str(seed), _phantom_code(), "x".join(f"{s:g}" for s in acquisition.spacing_mm)]
        + [f"snr{acquisition.snr:g}", f"f{acquisition.fine_mm:g}"]
        + [f"{k}-{v}" for k, v in sorted(options.items())]
    )
    path = CACHE / f"{key}.npz"
    if path.is_file():
        data = np.load(path, allow_pickle=False)
        truth = json.loads(str(data["truth"]))
        affine = data["affine"]
        return {
            "lge": ImageVolume(data["lge"], affine, "lge"),
            "wall": ImageVolume(data["wall"], affine, "wall"),
            "blood": ImageVolume(data["blood"], affine, "blood"),
            "truth_labels": data["labels"],
            "truth": truth,
        }
    phantom = make_phantom(kind, seed, acquisition=acquisition, **options)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        lge=phantom.lge.array,
        wall=phantom.wall.array,
        blood=phantom.blood.array,
        labels=phantom.truth_labels.array,
        affine=phantom.lge.affine,
        truth=json.dumps(phantom.truth),
    )
    return {
        "lge": phantom.lge,
        "wall": phantom.wall,
        "blood": phantom.blood,
        "truth_labels": phantom.truth_labels.array,
        "truth": phantom.truth,
    }


def ventricle_study(args) -> dict:
    rows = []
    for seed in seeds_from(args.seeds):
        for variant in VARIANTS:
            for snr in args.snr:
                acquisition = Acquisition(spacing_mm=(1.5, 1.5, 8.0), snr=snr, fine_mm=args.fine_mm)
                case = cached_phantom(
                    "lv-infarct", seed, acquisition, variant=variant, **mask_option(args)
                )
                truth = case["truth_labels"]
                if args.wall_mask == "true-endo":
                    case["wall"] = true_endocardium(case["wall"], truth)
                wall = case["wall"].array > 0
                dense = truth == 3
                n_dense = max(int(dense.sum()), 1)
                for name, settings in VENTRICLE_METHODS.items():
                    if args.methods and name not in args.methods:
                        continue
                    labels = segment(case["lge"], case["wall"], settings).labels.array
                    channel = channel_report(labels, case["lge"].affine, case["truth"])
                    rows.append(
                        {
                            "seed": seed,
                            "variant": variant,
                            "snr": snr,
                            "method": name,
                            "dice_dense": dice(labels == 3, truth == 3),
                            "dice_bz": dice(labels == 2, truth == 2),
                            "centreline_bz": channel["centreline_border_zone_fraction"],
                            "pieces_ok": channel["dense_pieces"]
                            == channel["designed_dense_pieces"],
                            "dense_ceiling": dice(dense & wall, dense),
                            "dense_outside_mask_pct": 100.0 * np.sum(dense & ~wall) / n_dense,
                            "dense_trimmed_pct": 100.0
                            * np.sum(dense & wall & (labels == 0))
                            / n_dense,
                            "dense_as_bz_pct": 100.0 * np.sum(dense & (labels == 2)) / n_dense,
                            "dense_false_blood_pct": 100.0
                            * np.sum((labels == 3) & (truth == 0))
                            / n_dense,
                        }
                    )
            print(f"seed {seed} {variant} done", flush=True)
        if args.healthy:
            for snr in args.snr:
                acquisition = Acquisition(spacing_mm=(1.5, 1.5, 8.0), snr=snr, fine_mm=args.fine_mm)
                case = cached_phantom("lv-healthy", seed, acquisition, **mask_option(args))
                for name, settings in VENTRICLE_METHODS.items():
                    if args.methods and name not in args.methods:
                        continue
                    report = segment(case["lge"], case["wall"], settings).report
                    rows.append(
                        {
                            "seed": seed,
                            "variant": "healthy control",
                            "snr": snr,
                            "method": name,
                            "enhanced_ml": report["scar_volume_ml"]
                            + report["border_zone_volume_ml"],
                        }
                    )
    return {"rows": rows}


def summarise_ventricle(rows: list[dict]) -> str:
    lines = [
        "| method | variant | dense Dice mean / min | border zone Dice mean / min | "
        "centreline border zone min (seeds ≥ 80 %) | dense pieces as designed |",
        "|---|---|---|---|---|---|",
    ]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for method in methods:
        for variant in VARIANTS:
            sel = [r for r in rows if r["method"] == method and r["variant"] == variant]
            if not sel:
                continue
            d = np.array([r["dice_dense"] for r in sel])
            b = np.array([r["dice_bz"] for r in sel])
            c = np.array([r["centreline_bz"] for r in sel])
            p = np.array([r["pieces_ok"] for r in sel])
            lines.append(
                f"| {method} | {variant} | {d.mean():.3f} / {d.min():.3f} | "
                f"{b.mean():.3f} / {b.min():.3f} | {c.min():.2f} ({np.mean(c >= 0.8):.0%}) | "
                f"{p.mean():.0%} |"
            )
        healthy = [r for r in rows if r["method"] == method and r["variant"] == "healthy control"]
        if healthy:
            volumes = np.array([r["enhanced_ml"] for r in healthy])
            lines.append(
                f"| {method} | healthy control | largest enhanced volume {volumes.max():.2f} ml"
                f" (mean {volumes.mean():.2f}) | | | |"
            )
    return "\n".join(lines)


def atrium_study(args) -> dict:
    rows = []
    for spacing in ((1.25, 1.25, 1.25), (1.5, 1.5, 2.5)):
        for seed in seeds_from(args.seeds):
            for burden in args.burden:
                for snr in args.snr:
                    acquisition = Acquisition(spacing_mm=spacing, snr=snr, fine_mm=args.fine_mm)
                    case = cached_phantom(
                        "la-fibrosis", seed, acquisition, fibrosis_percent=float(burden)
                    )
                    truth = case["truth"]["fibrosis"]
                    for method in ("iir-surface", "iir"):
                        report = segment(
                            case["lge"], case["wall"], DEFAULTS[method], blood=case["blood"]
                        ).report
                        reference = (
                            truth["true_percent_surface"]
                            if method == "iir-surface"
                            else truth["true_percent_label_map"]
                        )
                        rows.append(
                            {
                                "spacing": "x".join(f"{s:g}" for s in spacing),
                                "seed": seed,
                                "burden": burden,
                                "snr": snr,
                                "method": method,
                                "error_points": report["fibrosis_percent"] - reference,
                            }
                        )
            print(f"{spacing} seed {seed} done", flush=True)
    return {"rows": rows}


def summarise_dense_losses(rows: list[dict]) -> str:
    lines = [
        "| method | variant | mask's dense Dice ceiling mean / min | true dense missed, %: "
        "outside the mask / trimmed at the blood edge / labelled border zone | labelled "
        "dense but blood or outside in truth, % |",
        "|---|---|---|---|---|",
    ]
    for method in dict.fromkeys(r["method"] for r in rows):
        for variant in VARIANTS:
            sel = [r for r in rows if r["method"] == method and r["variant"] == variant]
            if not sel or "dense_ceiling" not in sel[0]:
                continue

            def mean(key, sel=sel):
                return float(np.mean([r[key] for r in sel]))

            ceiling = np.array([r["dense_ceiling"] for r in sel])
            lines.append(
                f"| {method} | {variant} | {ceiling.mean():.3f} / {ceiling.min():.3f} | "
                f"{mean('dense_outside_mask_pct'):.1f} / {mean('dense_trimmed_pct'):.1f} / "
                f"{mean('dense_as_bz_pct'):.1f} | {mean('dense_false_blood_pct'):.1f} |"
            )
    return "\n".join(lines)


def mask_option(args) -> dict:
    """The phantom's wall-mask option: the default (drawn) adds nothing to the cache key."""
    return {} if args.wall_mask in ("drawn", "true-endo") else {"wall_mask": args.wall_mask}


def true_endocardium(drawn: ImageVolume, truth: np.ndarray) -> ImageVolume:
    """The drawn wall mask with the true endocardial contour: its epicardial region (per
    slice) minus the true cavity. Not something a user has: it measures what the drawn
    endocardium costs."""
    from scipy import ndimage

    from cardiotwin.pipeline.phantoms.masks import cavity_enclosed

    wall = drawn.array > 0
    epicardial = np.stack(
        [ndimage.binary_fill_holes(wall[:, :, k]) for k in range(wall.shape[2])], axis=2
    )
    cavity = cavity_enclosed(truth > 0)
    return ImageVolume((epicardial & ~cavity).astype(np.uint8), drawn.affine.copy(), "wall")


def summarise_atrium(rows: list[dict]) -> str:
    lines = [
        "| method | grid (mm) | fibrosis % error, points: mean / min / max | within 3 points |",
        "|---|---|---|---|",
    ]
    for method in ("iir-surface", "iir"):
        for spacing in dict.fromkeys(r["spacing"] for r in rows):
            sel = np.array(
                [
                    r["error_points"]
                    for r in rows
                    if r["method"] == method and r["spacing"] == spacing
                ]
            )
            if sel.size:
                lines.append(
                    f"| {method} | {spacing} | {sel.mean():+.2f} / {sel.min():+.2f} / "
                    f"{sel.max():+.2f} | {np.mean(np.abs(sel) <= 3):.0%} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=("ventricle", "atrium"))
    parser.add_argument("--seeds", default="100-119")
    parser.add_argument("--snr", type=float, nargs="+", default=[8.0, 14.0, 20.0])
    parser.add_argument("--burden", type=float, nargs="+", default=[5.0, 15.0, 25.0, 40.0])
    parser.add_argument("--fine-mm", type=float, default=1.0)
    parser.add_argument("--methods", nargs="*", help="only these ventricular methods")
    parser.add_argument("--no-healthy", dest="healthy", action="store_false")
    parser.add_argument(
        "--wall-mask",
        choices=("drawn", "true", "true-endo"),
        default="drawn",
        help="ventricles: the drawn (imperfect) wall mask, the exact one, or the drawn one "
        "with the true endocardial contour",
    )
    parser.add_argument("--json", type=Path, help="write every row here")
    args = parser.parse_args()
    start = time.time()
    if args.study == "ventricle":
        result = ventricle_study(args)
        print(summarise_ventricle(result["rows"]))
        print()
        print(summarise_dense_losses(result["rows"]))
    else:
        result = atrium_study(args)
        print(summarise_atrium(result["rows"]))
    print(f"({time.time() - start:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
