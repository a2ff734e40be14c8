# The classical baseline: ANTs rigid, affine and SyN (masked and unmasked) with landmark propagation.


rule register_ants:
    input:
        preproc="results/{patient}/preproc",
    output:
        folder=directory("results/{patient}/ants"),
        rigid="results/{patient}/landmarks/ants_rigid.csv",
        affine="results/{patient}/landmarks/ants_affine.csv",
        syn="results/{patient}/landmarks/ants_syn.csv",
        syn_nomask="results/{patient}/landmarks/ants_syn_nomask.csv",
    params:
        settings=config["ants"],
        seed=config["seed"],
    log:
        "results/logs/register_ants/{patient}.log",
    benchmark:
        "results/benchmarks/register_ants/{patient}.tsv"
    threads: 2
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../../scripts/register_ants.py"
