# The synthetic demo cohort (only its files that the manifest names are requested).


rule make_demo_patient:
    output:
        expand(f"{DEMO_DIR}/{{{{patient}}}}/{{file}}", file=DEMO_FILES),
    params:
        seed=config["demo"]["seed"],
        landmarks=config["demo"]["landmarks"],
        near_cavity=config["demo"]["near_cavity"],
        acquisition=config["demo"]["acquisition"],
    log:
        layout.log("make_demo_patient", "{patient}"),
    benchmark:
        layout.benchmark("make_demo_patient", "{patient}")
    conda:
        "../../envs/core.yaml"
    script:
        "../../scripts/make_demo_patient.py"
