# Patient-specific landmark agents: train on the post-op scan, redetect in the pre-op scan.


rule train_agent:
    input:
        preproc="results/{patient}/preproc",
    output:
        model="results/{patient}/agents/{landmark}_{variant}.pt",
        log_tsv="results/{patient}/agents/{landmark}_{variant}_training.tsv",
    params:
        settings=AGENT_TRAINING,
        seed=config["seed"],
    log:
        "results/logs/train_agent/{patient}/{landmark}_{variant}.log",
    benchmark:
        "results/benchmarks/train_agent/{patient}/{landmark}_{variant}.tsv"
    threads: 2
    resources:
        gpu=1,
    conda:
        "../../envs/agent.yaml"
    script:
        "../../scripts/train_agent.py"


rule redetect:
    input:
        preproc="results/{patient}/preproc",
        models=agent_models,
    output:
        landmarks="results/{patient}/landmarks/agent_{variant}.csv",
        ends="results/{patient}/agents/{variant}_endpoints.tsv",
        trajectories="results/{patient}/agents/{variant}_trajectories.tsv",
    params:
        seed=config["seed"],
        device=config["agent"].get("device", "auto"),
        detection=AGENT_DETECTION,
    log:
        "results/logs/redetect/{patient}/{variant}.log",
    threads: 2
    conda:
        "../../envs/agent.yaml"
    script:
        "../../scripts/redetect.py"
