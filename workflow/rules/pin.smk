# PIN (Li et al. 2018), the supervised rival of the agents: train per landmark on the post-op scan,
# localise in the pre-op scan from the agents' start points.


rule train_pin:
    input:
        preproc="results/{patient}/preproc",
    output:
        model="results/{patient}/pin/{landmark}.pt",
        log_tsv="results/{patient}/pin/{landmark}_training.tsv",
    params:
        settings=PIN_TRAINING,
        seed=config["seed"],
    log:
        "results/logs/train_pin/{patient}/{landmark}.log",
    benchmark:
        "results/benchmarks/train_pin/{patient}/{landmark}.tsv"
    threads: 2
    resources:
        gpu=1,
    conda:
        "../../envs/agent.yaml"
    script:
        "../../scripts/train_pin.py"


rule redetect_pin:
    input:
        preproc="results/{patient}/preproc",
        models=pin_models,
    output:
        landmarks="results/{patient}/landmarks/pin.csv",
        ends="results/{patient}/pin/endpoints.tsv",
        trajectories="results/{patient}/pin/trajectories.tsv",
    params:
        seed=config["seed"],
        device=config["pin"].get("device", "auto"),
        detection=PIN_DETECTION,
    log:
        "results/logs/redetect_pin/{patient}.log",
    benchmark:
        "results/benchmarks/redetect_pin/{patient}.tsv"
    threads: 2
    conda:
        "../../envs/agent.yaml"
    script:
        "../../scripts/redetect_pin.py"
