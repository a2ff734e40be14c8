# Differential radiomics around every landmark, per patient and for the cohort.


rule extract_radiomics:
    input:
        preproc=layout.preproc("{patient}"),
        lesions=layout.lesions_dir("{patient}"),
        landmarks=radiomics_landmarks,
        params=workflow_file(config["radiomics"]["params"]),
    output:
        table=layout.radiomics("{patient}"),
    params:
        settings=config["radiomics"],
    log:
        layout.log("extract_radiomics", "{patient}"),
    benchmark:
        layout.benchmark("extract_radiomics", "{patient}")
    threads: 1
    conda:
        "../../envs/radiomics.yaml"
    script:
        "../../scripts/extract_radiomics.py"


rule summarise_radiomics:
    input:
        tables=expand(layout.radiomics("{patient}"), patient=PATIENTS),
    output:
        table=layout.cohort("radiomics.tsv"),
        summary=report(layout.cohort("radiomics_summary.tsv"), caption="../report/radiomics.rst", category="Radiomics"),
        changes=layout.cohort("radiomics_changes.tsv"),
    log:
        layout.log("summarise_radiomics", "summarise_radiomics"),
    conda:
        "../../envs/radiomics.yaml"
    script:
        "../../scripts/summarise_radiomics.py"
