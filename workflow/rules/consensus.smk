# The recommended landmark: the registration and the agents combined by their agreement.


rule consensus:
    input:
        unpack(consensus_inputs),
        start="results/{patient}/landmarks/identity.csv",
    output:
        landmarks="results/{patient}/landmarks/consensus.csv",
    params:
        settings=config.get("consensus", {}),
    log:
        "results/logs/consensus/{patient}.log",
    conda:
        "../../envs/core.yaml"
    script:
        "../../scripts/build_consensus.py"
