# The per-cohort HTML report (self-contained) and its figures.


rule build_report:
    input:
        manifest=config["cohort"],
        summary="results/cohort/summary.tsv",
        errors="results/cohort/errors.tsv",
        predictions="results/cohort/predictions.tsv",
        warnings="results/cohort/warnings.tsv",
        rigid_fit="results/cohort/rigid_fit.tsv",
        check="results/cohort/landmarks_to_check.tsv",
        preproc=expand("results/{patient}/preproc", patient=PATIENTS),
        agents=agent_outputs,
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
