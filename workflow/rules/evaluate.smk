# Cohort evaluation: errors against the pre-op ground truth where it exists, per-method summary,
# the methods' disagreement and the landmarks to check first (also without ground truth).


rule evaluate_cohort:
    input:
        manifest=layout.cohort("manifest.tsv"),
        landmarks=method_landmarks,
        preproc=expand(layout.preproc("{patient}"), patient=PATIENTS),
        lesions=expand(layout.lesions_dir("{patient}"), patient=PATIENTS),
        registrations=jacobian_files,
    output:
        errors=report(layout.cohort("errors.tsv"), caption="../report/errors.rst", category="Evaluation"),
        summary=report(layout.cohort("summary.tsv"), caption="../report/summary.rst", category="Evaluation"),
        predictions=layout.cohort("predictions.tsv"),
        rigid_fit=report(layout.cohort("rigid_fit.tsv"), caption="../report/rigid_fit.rst", category="Evaluation"),
        rigid_residuals=layout.cohort("rigid_residuals.tsv"),
        check=report(layout.cohort("landmarks_to_check.tsv"), caption="../report/check.rst", category="Evaluation"),
        bands=report(layout.cohort("summary_by_cavity.tsv"), caption="../report/bands.rst", category="Evaluation"),
    params:
        flag_mm=config["rigid_fit"]["flag_mm"],
        flag_error_mm=config["consensus"]["flag_error_mm"],
        annotator=ANNOTATOR,
    log:
        layout.log("evaluate_cohort", "evaluate_cohort"),
    conda:
        "../../envs/core.yaml"
    script:
        "../../scripts/evaluate_cohort.py"
