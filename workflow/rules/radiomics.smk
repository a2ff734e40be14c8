# Differential radiomics around every landmark, per patient and for the cohort.


rule extract_radiomics:
    input:
        preproc="results/{patient}/preproc",
        landmarks=radiomics_landmarks,
        params=workflow_file(config["radiomics"]["params"]),
    output:
        table="results/{patient}/radiomics.tsv",
    params:
        settings=config["radiomics"],
    log:
        "results/logs/extract_radiomics/{patient}.log",
    benchmark:
        "results/benchmarks/extract_radiomics/{patient}.tsv"
    threads: 1
    conda:
        "../../envs/radiomics.yaml"
    script:
        "../../scripts/extract_radiomics.py"


rule summarise_radiomics:
    input:
        tables=expand("results/{patient}/radiomics.tsv", patient=PATIENTS),
    output:
        table="results/cohort/radiomics.tsv",
        summary=report("results/cohort/radiomics_summary.tsv", caption="../report/radiomics.rst", category="Radiomics"),
    log:
        "results/logs/summarise_radiomics/summarise_radiomics.log",
    conda:
        "../../envs/radiomics.yaml"
    script:
        "../../scripts/summarise_radiomics.py"
