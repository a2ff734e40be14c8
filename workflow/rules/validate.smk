# Open every file of the manifest and check it before any heavy job starts: one job per patient, which
# depends on that patient's files and rows only (adding a patient reruns nothing of the others).


checkpoint validate_patient:
    input:
        files=patient_files,
    output:
        table="results/{patient}/manifest.tsv",
        warnings="results/{patient}/warnings.tsv",
    params:
        rows=patient_rows,
        source=config["cohort"],
        annotator=ANNOTATOR,
        unmatched_truth=UNMATCHED_TRUTH,
    log:
        "results/logs/validate_patient/{patient}.log",
    conda:
        "../../envs/core.yaml"
    script:
        "../../scripts/validate_patient.py"


rule validate_cohort:
    input:
        tables=expand("results/{patient}/manifest.tsv", patient=PATIENTS),
        warnings=expand("results/{patient}/warnings.tsv", patient=PATIENTS),
    output:
        table="results/cohort/manifest.tsv",
        warnings="results/cohort/warnings.tsv",
    log:
        "results/logs/validate_cohort/validate_cohort.log",
    conda:
        "../../envs/core.yaml"
    script:
        "../../scripts/validate_cohort.py"
