"""``cardiotwin phantom KIND --out DIR --seed N``: write a synthetic patient with its truth."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from cardiotwin.pipeline.phantoms import KINDS, VARIANTS

    parser.add_argument("kind", choices=KINDS, help="which synthetic patient")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--seed", type=_seed, required=True, help="random seed, 0 or more (everything drawn)"
    )
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("I_MM", "J_MM", "SLICE_MM"),
        help="acquisition voxel size in mm, slice thickness last (default 1.5 1.5 8 for "
        "ventricles, 1.25 1.25 1.25 for the atrium)",
    )
    parser.add_argument(
        "--snr", type=float, default=15.0, help="blood signal / noise sigma (default 15)"
    )
    parser.add_argument(
        "--fine-mm",
        type=float,
        default=0.5,
        help="size of the anatomy sub-voxels in mm (default 0.5; 1.0 is faster)",
    )
    parser.add_argument(
        "--fibrosis-percent",
        type=float,
        help="la-fibrosis: percent of the atrial wall that is fibrotic (default 20)",
    )
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        help="lv-infarct: scar variant (default: by seed, seed %% 3 in the listed order)",
    )
    parser.add_argument(
        "--min-loop-ms",
        type=float,
        help="lv-infarct: grow the infarct until one loop of its circuit takes at least this "
        "long at the top of published conduction velocities (default 410 ms: the border "
        "zone's refractory period, so the isthmus can carry a re-entrant VT)",
    )
    parser.add_argument(
        "--wall-mask",
        choices=("drawn", "true"),
        help="the wall mask written: as a reader would draw it (contour errors; default for "
        "ventricles) or the exact truth (default for the atrium)",
    )
    parser.add_argument(
        "--psf-fwhm-pixels",
        type=float,
        default=1.0,
        help="in-plane blur, FWHM in pixels (default 1)",
    )
    parser.add_argument(
        "--bias",
        type=float,
        default=0.1,
        help="coil-bias amplitude as a fraction of the signal (default 0.1)",
    )


def run(args: argparse.Namespace) -> int:
    from cardiotwin.pipeline.cli import CommandError
    from cardiotwin.pipeline.phantoms import (
        ATRIUM_SPACING_MM,
        Acquisition,
        PhantomError,
        make_phantom,
        write_phantom,
    )

    spacing = args.spacing
    if spacing is None:
        spacing = ATRIUM_SPACING_MM if args.kind == "la-fibrosis" else (1.5, 1.5, 8.0)
    acquisition = Acquisition(
        spacing_mm=tuple(float(s) for s in spacing),
        snr=float(args.snr),
        fine_mm=float(args.fine_mm),
        psf_fwhm_pixels=float(args.psf_fwhm_pixels),
        bias_fraction=float(args.bias),
    )
    if args.out.exists() and not args.out.is_dir():
        raise CommandError(f"--out {args.out} exists and is not a folder; give a folder path")
    if args.variant is not None and args.kind != "lv-infarct":
        raise CommandError("--variant applies to lv-infarct only")
    if args.fibrosis_percent is not None and args.kind != "la-fibrosis":
        raise CommandError("--fibrosis-percent applies to la-fibrosis only (it would be ignored)")
    if args.min_loop_ms is not None and args.kind != "lv-infarct":
        raise CommandError("--min-loop-ms applies to lv-infarct only (it would be ignored)")
    fibrosis_percent = 20.0 if args.fibrosis_percent is None else args.fibrosis_percent
    try:
        phantom = make_phantom(
            args.kind,
            args.seed,
            acquisition=acquisition,
            fibrosis_percent=fibrosis_percent,
            variant=args.variant,
            wall_mask=args.wall_mask,
            min_loop_ms=args.min_loop_ms,
        )
    except PhantomError as exc:
        raise CommandError(str(exc)) from None
    try:
        written = write_phantom(phantom, args.out)
    except (ValueError, OSError) as exc:
        raise CommandError(f"nothing written to {args.out}: {exc}") from None
    log.info(
        "wrote %s phantom (seed %d, shape %s, spacing %s mm) to %s: %s",
        args.kind,
        args.seed,
        phantom.lge.shape,
        tuple(round(float(s), 3) for s in phantom.lge.spacing_mm),
        args.out,
        ", ".join(p.name for p in written),
    )
    return 0


def _seed(text: str) -> int:
    """A seed NumPy accepts: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative: seeds are 0 or more")
    return value
