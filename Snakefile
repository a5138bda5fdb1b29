# cardiotwin workflow: one rule per pipeline stage, each calling `cardiotwin <stage>`.
# Rules hold no logic (see ../shared/DESIGN.md §1). The stages land one issue at a time;
# for now the workflow verifies the solver and segments the bundled sample patients.

configfile: "configs/workflow.yaml"


rule all:
    input:
        "results/verification/nversion_dx0.5.json",


rule nversion:
    output:
        "results/verification/nversion_dx{dx}.json",
    shell:
        "cardiotwin verify nversion --dx {wildcards.dx} --dt 0.05 --json {output}"
