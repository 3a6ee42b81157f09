wildcard_constraints:
    method="td3|tdm|rig",
    seed=r"\d+",


rule train_agent:
    """One agent, one seed: resumes from its last checkpoint if a previous run was killed."""
    input:
        agent_inputs,
    output:
        policy="results/{env}/{method}/seed{seed}/policy.pt",
        curve="results/{env}/{method}/seed{seed}/curve.csv",
    log:
        "results/logs/{env}/{method}/train_seed{seed}.log",
    benchmark:
        "results/benchmarks/{env}/{method}/train_seed{seed}.tsv"
    threads: 1
    resources:
        mem_mb=4096,
        runtime=240,
        gpu=0,
    params:
        python=PYTHON,
    shell:
        "{params.python} -m visgoal train --env {wildcards.env} --method {wildcards.method} --seed {wildcards.seed}"
        " --out results/{wildcards.env}/{wildcards.method}/seed{wildcards.seed} --quiet > {log} 2>&1"


rule evaluate:
    """Every seed of a method on the fixed (initial state, goal) set."""
    input:
        policies=lambda w: expand(
            "results/{env}/{method}/seed{seed}/policy.pt", env=w.env, method=w.method, seed=SEEDS
        ),
    output:
        csv="results/{env}/{method}_eval.csv",
        picture="results/{env}/{method}_eval.png",
    log:
        "results/logs/{env}/{method}/evaluate.log",
    benchmark:
        "results/benchmarks/{env}/{method}/evaluate.tsv"
    threads: 1
    resources:
        mem_mb=2048,
        runtime=60,
    params:
        python=PYTHON,
    shell:
        "{params.python} -m visgoal evaluate --env {wildcards.env} --method {wildcards.method}"
        " --out {output.csv} --quiet > {log} 2>&1"
