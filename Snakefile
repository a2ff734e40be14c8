# Landmark redetection and differential radiomics for pre-/post-operative brain MRI.
# Run: snakemake --cores N  (see README.md); configuration: config/config.yaml, config/README.md.
from snakemake.utils import min_version

min_version("9.27")  # the version the tests run (constraints.txt: 9.27.1)


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/agent.smk"
include: "workflow/rules/pin.smk"
include: "workflow/rules/baseline.smk"
include: "workflow/rules/consensus.smk"
include: "workflow/rules/radiomics.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        layout.cohort("report.html"),
        layout.cohort("summary.tsv"),
        expand(layout.slicer("{patient}"), patient=PATIENTS),
    default_target: True
