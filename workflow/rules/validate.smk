# Open every file of the manifest and check it before any heavy job starts: one job per patient, which
# depends on that patient's files and rows only (adding a patient reruns nothing of the others).


rule validate_patient:
    input:
        files=patient_files,
    output:
        table=layout.patient_manifest("{patient}"),
        warnings=layout.patient_warnings("{patient}"),
    params:
        rows=patient_rows,
        source=config["cohort"],
        annotator=ANNOTATOR,
        unmatched_truth=UNMATCHED_TRUTH,
    log:
        layout.log("validate_patient", "{patient}"),
    conda:
        "../../envs/core.yaml"
    script:
        "../../scripts/validate_patient.py"


rule validate_cohort:
    input:
        tables=expand(layout.patient_manifest("{patient}"), patient=PATIENTS),
        warnings=expand(layout.patient_warnings("{patient}"), patient=PATIENTS),
    output:
        table=layout.cohort("manifest.tsv"),
        warnings=layout.cohort("warnings.tsv"),
    log:
        layout.log("validate_cohort", "validate_cohort"),
    conda:
        "../../envs/core.yaml"
    script:
        "../../scripts/validate_cohort.py"
