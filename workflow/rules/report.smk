# The per-cohort HTML report (self-contained) and its figures, from exactly the files declared here.


rule build_report:
    input:
        manifest="results/cohort/manifest.tsv",
        summary="results/cohort/summary.tsv",
        errors="results/cohort/errors.tsv",
        predictions="results/cohort/predictions.tsv",
        warnings="results/cohort/warnings.tsv",
        rigid_fit="results/cohort/rigid_fit.tsv",
        rigid_residuals="results/cohort/rigid_residuals.tsv",
        check="results/cohort/landmarks_to_check.tsv",
        preproc=expand("results/{patient}/preproc", patient=PATIENTS),
        landmarks=method_landmarks,
        search=search_outputs,
        benchmarks=benchmark_files,
        radiomics=radiomics_outputs,
    output:
        html=report("results/cohort/report.html", caption="../report/report.rst", category="Report"),
        figures=report(
            directory("results/cohort/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
    params:
        config=config,
        annotator=ANNOTATOR,
    log:
        "results/logs/build_report/build_report.log",
    conda:
        "../../envs/core.yaml"
    script:
        "../../scripts/build_report.py"


rule export_markups:
    input:
        preproc="results/{patient}/preproc",
        landmarks=patient_method_landmarks,
    output:
        folder=directory("results/{patient}/slicer"),
    log:
        "results/logs/export_markups/{patient}.log",
    conda:
        "../../envs/core.yaml"
    script:
        "../../scripts/export_markups.py"
