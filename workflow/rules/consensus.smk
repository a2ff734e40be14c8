# The recommended landmark: the registration and the agents combined by their agreement.


rule consensus:
    input:
        unpack(consensus_inputs),
        start=layout.landmarks("{patient}", "identity"),
    output:
        landmarks=layout.landmarks("{patient}", "consensus"),
    params:
        settings=config["consensus"],
    log:
        layout.log("consensus", "{patient}"),
    conda:
        "../../envs/core.yaml"
    script:
        "../../scripts/build_consensus.py"
