rule dataset:
    """VAE image dataset: half goal images, half random-exploration observations (dataset.demo_share of
    them from the env's demonstrations, where it is above 0)."""
    input:
        spec="envs/{env}.yaml",
        demos=dataset_inputs,
    output:
        h5=str(paths.dataset("{env}", ROOT)),
        samples=str(paths.dataset_samples("{env}", ROOT)),
    log:
        logged("{env}/dataset")[0],
    benchmark:
        logged("{env}/dataset")[1]
    params:
        settings=lambda w: settings("device", "render", "dataset", env=w.env),
    threads: PARAMS["speed"]["processes"]  # the processes making its frames
    resources:
        mem_mb=2048,
        runtime=60,
        gpu=GPU,  # its pictures from the renderer the agents will see through
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal dataset --env {wildcards.env} --out {output.h5} --quiet > {log} 2>&1"
