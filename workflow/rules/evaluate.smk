# Cohort evaluation: errors against the pre-op ground truth where it exists, per-method summary,
# the methods' disagreement and the landmarks to check first (also without ground truth).


rule evaluate_cohort:
    input:
        manifest="results/cohort/manifest.tsv",
        landmarks=method_landmarks,
        preproc=expand("results/{patient}/preproc", patient=PATIENTS),
        ants=jacobian_files,
    output:
        errors=report("results/cohort/errors.tsv", caption="../report/errors.rst", category="Evaluation"),
        summary=report("results/cohort/summary.tsv", caption="../report/summary.rst", category="Evaluation"),
        predictions="results/cohort/predictions.tsv",
        rigid_fit=report("results/cohort/rigid_fit.tsv", caption="../report/rigid_fit.rst", category="Evaluation"),
        rigid_residuals="results/cohort/rigid_residuals.tsv",
        check=report("results/cohort/landmarks_to_check.tsv", caption="../report/check.rst", category="Evaluation"),
    params:
        flag_mm=config.get("rigid_fit", {}).get("flag_mm", 4.0),
        flag_error_mm=config.get("consensus", {}).get("flag_error_mm", 3.0),
        annotator=ANNOTATOR,
    log:
        "results/logs/evaluate_cohort/evaluate_cohort.log",
    conda:
        "../../envs/core.yaml"
    script:
        "../../scripts/evaluate_cohort.py"
