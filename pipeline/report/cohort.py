"""The cohort summary: one row per case (table and TSV) and scar burden vs inducibility."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

from cardiotwin.pipeline.report.results import CaseResults

#: columns of summary.tsv, in order (units in the names)
COLUMNS = (
    "case_id", "kind", "scar_percent", "border_zone_percent", "scar_volume_ml",
    "inducible", "n_unique_vts", "fraction_inducing_sites", "lesions", "lesion_volume_ml",
    "non_inducible_after_ablation",
)  # fmt: skip


def load_results(paths: list[str | os.PathLike]) -> list[CaseResults]:
    """Read every case's results.json (sorted by case id); errors name the file."""
    cases = []
    seen: dict[str, Path] = {}
    for path in paths:
        path = Path(path)
        try:
            case = CaseResults.model_validate(json.loads(path.read_text("utf-8")))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a usable results.json ({exc})") from None
        if case.case_id in seen:  # one patient counted twice skews every fraction
            raise ValueError(
                f"{path} and {seen[case.case_id]} are both case {case.case_id!r}: give each "
                "case's results.json once"
            )
        seen[case.case_id] = path
        cases.append(case)
    return sorted(cases, key=lambda c: c.case_id)


def rows(cases: list[CaseResults]) -> list[dict]:
    """One dict per case with :data:`COLUMNS` (``None`` where a stage did not run)."""
    table = []
    for case in cases:
        seg, ind, abl = case.segmentation, case.induction, case.ablation
        table.append({
            "case_id": case.case_id,
            "kind": case.kind,
            "scar_percent": None if seg is None else round(seg.scar_percent, 2),
            "border_zone_percent": None if seg is None else round(seg.border_zone_percent, 2),
            "scar_volume_ml": None if seg is None else round(seg.scar_volume_ml, 2),
            # nothing induced but not every site answered: unknown, never "not inducible"
            "inducible": None
            if ind is None
            else ind.inducible
            if ind.inducible or ind.complete
            else "incomplete",
            "n_unique_vts": None if ind is None else ind.n_unique_vts,
            "fraction_inducing_sites": None
            if ind is None or ind.fraction_inducing_sites is None
            else round(ind.fraction_inducing_sites, 3),
            "lesions": None if abl is None else len(abl.lesions),
            "lesion_volume_ml": None if abl is None else round(abl.total_volume_ml, 3),
            "non_inducible_after_ablation": _after_ablation(abl),
        })  # fmt: skip
    return table


def _after_ablation(abl) -> bool | str | None:
    """True / False, or why neither: "nothing to ablate" (never inducible: no lesion was
    placed, so nothing was shown by ablation) or "incomplete" (nothing induced after ablation,
    but sites gave no answer)."""
    if abl is None:
        return None
    if abl.input_inducible is False:
        return "nothing to ablate"
    if abl.non_inducible_after:
        return True
    return "incomplete" if abl.status == "induction incomplete" else False


#: per column, the value that is bad news (red) and the one that is good news (green)
ALARMS = {"inducible": (True, False), "non_inducible_after_ablation": (False, True)}


def tsv(table: list[dict]) -> str:
    lines = ["\t".join(COLUMNS)]
    for row in table:
        lines.append("\t".join("" if row[c] is None else str(row[c]) for c in COLUMNS))
    return "\n".join(lines) + "\n"


def burden_plot_png(table: list[dict]) -> bytes:
    """Scar + border-zone burden (% of wall) per case, coloured by inducibility."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.4, max(3.6, 0.3 * len(table) + 1.2)), dpi=110)
    colours = {True: "#b00020", False: "#1b7a1b", "incomplete": "#d08000", None: "#888888"}
    labels = {
        True: "inducible",
        False: "not inducible",
        "incomplete": "nothing induced, sites without an answer",
        None: "induction not run",
    }
    seen = set()
    for i, row in enumerate(table):
        if row["scar_percent"] is None:
            continue
        burden = row["scar_percent"] + row["border_zone_percent"]
        key = row["inducible"]
        ax.scatter(burden, i, color=colours[key], s=60, label=None if key in seen else labels[key])
        seen.add(key)
    ax.set_yticks(range(len(table)), [row["case_id"] for row in table])
    ax.set_xlabel("scar + border zone (% of wall)")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    if seen:  # beside the axes: inside, it hid the points of the bottom rows
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    ax.set_title("Scar burden and inducibility")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def html(table: list[dict], plot_png: bytes) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    uri = "data:image/png;base64," + base64.b64encode(plot_png).decode("ascii")
    return env.get_template("cohort.html.j2").render(
        rows=table, columns=COLUMNS, plot=uri, alarms=ALARMS
    )


def write_summary(paths: list[str | os.PathLike], out_dir: str | os.PathLike) -> dict[str, Path]:
    from cardiotwin.files import write_all_or_nothing

    table = rows(load_results(paths))
    page = html(table, burden_plot_png(table))
    out_dir = Path(out_dir)
    targets = {"html": out_dir / "summary.html", "table": out_dir / "summary.tsv"}
    write_all_or_nothing({
        targets["html"]: lambda p: Path(p).write_text(page, encoding="utf-8"),
        targets["table"]: lambda p: Path(p).write_text(tsv(table), encoding="utf-8"),
    })  # fmt: skip
    return targets
