# cardiotwin workflow: one rule per pipeline stage, each calling `cardiotwin <stage>`.
# A table of contents, no science (../shared/DESIGN.md §1): the configuration and the cohort
# sheet are validated by cardiotwin.pipeline.workflow before any job runs, and every rule
# passes the resolved configuration file to its command: mesh and induce get a file of only
# the sections they read, so changing an ablation setting reruns ablate and report alone.
#
#   snakemake --profile configs/profiles/local                  # the demo cohort, this machine
#   snakemake --profile configs/profiles/slurm --configfile configs/clinical.yaml
#
# The stages: segment -> mesh -> induce -> ablate -> report (-> cohort_summary).
# Simulation jobs (induce, ablate) take workflow.simulation_threads CPU threads (default: all
# of --cores) and hold one `gpu` resource unless simulation.backend is cpu or reference.

from snakemake.utils import validate

from cardiotwin.pipeline import workflow as cw


# The demo is the configuration only when none is given: Snakemake lays --configfile over
# a configfile directive key by key, so with the directive always on, a clinical.yaml that
# leaves a section out would run the demo's (its fast cell model, its one pacing site)
# instead of the defaults.
if not config:

    configfile: "configs/demo.yaml"


validate(config, "configs/schema/config.schema.json")
SETUP = cw.setup(config)
CASES = SETUP.cases
OUT = SETUP.path  # OUT("{case}/...") -> "<results>/{case}/..."
ENV = "configs/envs/cardiotwin.yaml"


wildcard_constraints:
    case="|".join(CASES),


# --cores of a local run; a cluster executor has none (Snakemake raises on the attribute)
try:
    TOTAL_CORES = workflow.cores
except Exception:
    TOTAL_CORES = None


rule all:
    input:
        expand(OUT("{case}/report/report.html"), case=CASES),
        OUT("cohort/summary.html"),


onstart:
    cw.check_execution(SETUP, workflow.executor_plugin.name)


onsuccess:
    print(cw.summary_message(SETUP))


rule segment:
    input:
        unpack(lambda w: CASES[w.case].inputs()),
    output:
        labels=OUT("{case}/segmentation/labels.nii.gz"),
        stats=OUT("{case}/segmentation/labels.json"),
        montage=OUT("{case}/segmentation/labels_montage.png"),
        render=OUT("{case}/segmentation/labels_3d.png"),
    params:
        method=lambda w: SETUP.segmentation_method(w.case),
        kind=lambda w: CASES[w.case].kind,
        blood=lambda w, input: cw.option("--blood", input.get("blood")),
        series=lambda w: cw.option("--series", CASES[w.case].series),
        qc=lambda w, output: cw.parent(output.montage),
    conda:
        ENV
    log:
        OUT("{case}/logs/segment.log"),
    shell:
        "cardiotwin --redact-inputs segment --lge {input.lge} --wall {input.wall} {params.blood}"
        " {params.series}"
        " --chamber {params.kind} --method {params.method} --out {output.labels}"
        " --qc {params.qc} > {log} 2>&1"


rule mesh:
    input:
        unpack(lambda w: CASES[w.case].inputs()),
        labels=rules.segment.output.labels,
        config=SETUP.config_for("mesh"),
    output:
        mesh=OUT("{case}/mesh/mesh.vtu"),
        quality=OUT("{case}/mesh/mesh.quality.json"),
        fibres=OUT("{case}/mesh/fibres.png"),
        sites=OUT("{case}/mesh/sites.png"),
    params:
        kind=lambda w: CASES[w.case].kind,
        atrium=lambda w, input: cw.atrial_mesh_options(CASES[w.case], input),
        pictures=lambda w, output: cw.parent(output.fibres),
    conda:
        ENV
    log:
        OUT("{case}/logs/mesh.log"),
    shell:
        "cardiotwin --redact-inputs mesh --labels {input.labels} --kind {params.kind}"
        " --config {input.config} {params.atrium} --out {output.mesh} --pictures {params.pictures} > {log} 2>&1"


rule induce:
    input:
        mesh=rules.mesh.output.mesh,
        config=SETUP.config_for("induce"),
    output:
        induction=OUT("{case}/induction/induction.json"),
    params:
        out=lambda w, output: cw.parent(output.induction),
    threads: SETUP.simulation_threads(TOTAL_CORES)
    resources:
        gpu=SETUP.simulation_gpus,
    conda:
        ENV
    log:
        OUT("{case}/logs/induce.log"),
    shell:
        "NUMBA_NUM_THREADS={threads} cardiotwin induce --mesh {input.mesh} --config {input.config}"
        " --out {params.out} --no-progress > {log} 2>&1"


rule ablate:
    input:
        mesh=rules.mesh.output.mesh,
        induction=rules.induce.output.induction,
        config=SETUP.config_file,
    output:
        ablation=OUT("{case}/ablation/ablation.json"),
        ablated=OUT("{case}/ablation/ablated.vtu"),
    params:
        out=lambda w, output: cw.parent(output.ablation),
    threads: SETUP.simulation_threads(TOTAL_CORES)
    resources:
        gpu=SETUP.simulation_gpus,
    conda:
        ENV
    log:
        OUT("{case}/logs/ablate.log"),
    shell:
        "NUMBA_NUM_THREADS={threads} cardiotwin ablate --mesh {input.mesh}"
        " --induction {input.induction} --config {input.config} --out {params.out}"
        " --no-progress > {log} 2>&1"


rule report:
    input:
        config=SETUP.config_file,
        segmentation=rules.segment.output.stats,
        montage=rules.segment.output.montage,
        render=rules.segment.output.render,
        mesh=rules.mesh.output.mesh,
        quality=rules.mesh.output.quality,
        fibres=rules.mesh.output.fibres,
        sites=rules.mesh.output.sites,
        induction=rules.induce.output.induction,
        ablation=rules.ablate.output.ablation,
    output:
        html=OUT("{case}/report/report.html"),
        pdf=OUT("{case}/report/report.pdf"),
        results=OUT("{case}/report/results.json"),
    params:
        kind=lambda w: CASES[w.case].kind,
        out=lambda w, output: cw.parent(output.html),
    conda:
        ENV
    log:
        OUT("{case}/logs/report.log"),
    shell:
        "cardiotwin report --case-id {wildcards.case} --kind {params.kind} --config {input.config}"
        " --segmentation {input.segmentation} --montage {input.montage}"
        " --scar-3d {input.render} --mesh {input.mesh} --mesh-quality {input.quality} --mesh-picture {input.fibres}"
        " --sites-picture {input.sites} --induction {input.induction} --ablation {input.ablation}"
        " --out {params.out} > {log} 2>&1"


rule cohort_summary:
    input:
        expand(OUT("{case}/report/results.json"), case=CASES),
    output:
        html=OUT("cohort/summary.html"),
        table=OUT("cohort/summary.tsv"),
    params:
        out=lambda w, output: cw.parent(output.html),
    conda:
        ENV
    log:
        OUT("logs/cohort_summary.log"),
    shell:
        "cardiotwin cohort-summary --results {input} --out {params.out} > {log} 2>&1"
