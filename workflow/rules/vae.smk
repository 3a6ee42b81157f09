rule train_vae:
    """beta-VAE on the environment's image dataset: the eye of both image agents."""
    input:
        spec="envs/{env}.yaml",
        dataset=str(paths.dataset("{env}", ROOT)),
    output:
        vae=str(paths.vae("{env}", ROOT)),
        metrics=str(paths.vae_metrics("{env}", ROOT)),
        history=str(paths.vae_history("{env}", ROOT)),
        recon=str(paths.vae_recon("{env}", ROOT)),
    log:
        logged("{env}/train_vae")[0],
    benchmark:
        logged("{env}/train_vae")[1]
    params:
        settings=lambda w: settings("device", "vae", env=w.env),
    threads: 2
    resources:
        mem_mb=8192,
        runtime=240,
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal train-vae --env {wildcards.env} --dataset {input.dataset} --out {output.vae}"
        " --quiet > {log} 2>&1"
