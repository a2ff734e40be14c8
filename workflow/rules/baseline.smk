# The classical baseline: ANTs rigid, affine and SyN (masked and unmasked) with landmark propagation.


rule register_ants:
    input:
        preproc=layout.preproc("{patient}"),
    output:
        folder=directory(layout.ants_dir("{patient}")),
        rigid=layout.landmarks("{patient}", "ants_rigid"),
        affine=layout.landmarks("{patient}", "ants_affine"),
        syn=layout.landmarks("{patient}", "ants_syn"),
        syn_nomask=layout.landmarks("{patient}", "ants_syn_nomask"),
    params:
        settings=config["ants"],
        seed=config["seed"],
    log:
        layout.log("register_ants", "{patient}"),
    benchmark:
        layout.benchmark("register_ants", "{patient}")
    threads: 2
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../../scripts/register_ants.py"
