# The synthetic demo cohort (only its files that the manifest names are requested).
from landmarkflow.synthetic import DEMO_FILES


rule make_demo_patient:
    output:
        expand("resources/demo/{{patient}}/{file}", file=DEMO_FILES),
    params:
        seed=config["demo"].get("seed", config["seed"]),
        landmarks=config["demo"]["landmarks"],
    log:
        "results/logs/make_demo_patient/{patient}.log",
    benchmark:
        "results/benchmarks/make_demo_patient/{patient}.tsv"
    conda:
        "../../envs/core.yaml"
    script:
        "../../scripts/make_demo_patient.py"
