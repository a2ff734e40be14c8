# The per-cohort HTML report (self-contained) and its figures, from exactly the files declared here.


rule build_report:
    input:
        manifest=layout.cohort("manifest.tsv"),
        summary=layout.cohort("summary.tsv"),
        errors=layout.cohort("errors.tsv"),
        predictions=layout.cohort("predictions.tsv"),
        warnings=layout.cohort("warnings.tsv"),
        rigid_fit=layout.cohort("rigid_fit.tsv"),
        rigid_residuals=layout.cohort("rigid_residuals.tsv"),
        check=layout.cohort("landmarks_to_check.tsv"),
        bands=layout.cohort("summary_by_cavity.tsv"),
        preproc=expand(layout.preproc("{patient}"), patient=PATIENTS),
        lesions=expand(layout.lesions_dir("{patient}"), patient=PATIENTS),
        landmarks=method_landmarks,
        search=search_outputs,
        benchmarks=benchmark_files,
        radiomics=radiomics_outputs,
        registrations=jacobian_files,
    output:
        html=report(layout.cohort("report.html"), caption="../report/report.rst", category="Report"),
        figures=report(
            directory(layout.cohort("figures")),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
        patients=directory(layout.cohort("patients")),
    params:
        config=REPORT_CONFIG,
        annotator=ANNOTATOR,
    log:
        layout.log("build_report", "build_report"),
    conda:
        "../../envs/core.yaml"
    script:
        "../../scripts/build_report.py"


rule export_markups:
    input:
        preproc=layout.preproc("{patient}"),
        landmarks=patient_method_landmarks,
    output:
        folder=directory(layout.slicer("{patient}")),
    log:
        layout.log("export_markups", "{patient}"),
    conda:
        "../../envs/core.yaml"
    script:
        "../../scripts/export_markups.py"
