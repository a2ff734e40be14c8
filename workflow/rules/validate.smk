# Open every file of the manifest and check it before any heavy job starts.


checkpoint validate_cohort:
    input:
        manifest=config["cohort"],
        files=MANIFEST.files(),
    output:
        table="results/cohort/manifest.tsv",
        warnings="results/cohort/warnings.tsv",
    params:
        annotator=ANNOTATOR,
        unmatched_truth=UNMATCHED_TRUTH,
    log:
        "results/logs/validate_cohort/validate_cohort.log",
    conda:
        "../../envs/core.yaml"
    script:
        "../../scripts/validate_cohort.py"
