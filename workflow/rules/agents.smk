# Three training rules, because their inputs and outputs differ: agents on latents read the VAE and
# its dataset (online fine-tuning) and also write the VAE they were trained with; the state-based
# td3 baseline reads neither, nor does an agent on pixels (crl.representation=pixels). A killed run
# resumes from its checkpoint.pt (not an output).
#
# A run that reads its env's demonstrations (results/<env>/demos.h5, `train --demos`) is another rule's:
# gcbc's (train_gcbc, for the envs with a teacher), and in the envs whose demo_learning.enabled is true
# the three rules' *_demos twins. The plain rules keep the other envs (wildcard_constraints env=PLAIN_ENV)
# and their commands, inputs and params, so that adding demonstrations to one env reruns nothing else.


rule train_td3:
    """The oracle baseline, one seed: true state and goal vector."""
    input:
        spec="envs/{env}.yaml",
    output:
        policy=str(paths.run_dir("{env}", "td3", "{seed}", ROOT) / paths.POLICY),
        curve=str(paths.run_dir("{env}", "td3", "{seed}", ROOT) / paths.CURVE),
    log:
        logged("{env}/td3/train_seed{seed}")[0],
    benchmark:
        logged("{env}/td3/train_seed{seed}")[1]
    wildcard_constraints:
        env=PLAIN_ENV,
    params:
        settings=lambda w: train_settings(w, "td3"),
        run=lambda w, output: os.path.dirname(output.policy),
    threads: 1
    resources:
        mem_mb=4096,
        runtime=240,
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal train --env {wildcards.env} --method td3 --seed {wildcards.seed}"
        " --out {params.run} --quiet > {log} 2>&1"


rule train_image:
    """An image agent on latents (tdm, rig, crl), one seed: VAE latents of the camera image and the goal image."""
    input:
        spec="envs/{env}.yaml",
        vae=str(paths.vae("{env}", ROOT)),
        dataset=str(paths.dataset("{env}", ROOT)),
    output:
        policy=f"{RUN}/{paths.POLICY}",
        curve=f"{RUN}/{paths.CURVE}",
        vae=f"{RUN}/{paths.RUN_VAE}",
    log:
        logged("{env}/{method}/train_seed{seed}")[0],
    benchmark:
        logged("{env}/{method}/train_seed{seed}")[1]
    wildcard_constraints:
        env=PLAIN_ENV,
        method=LATENT_METHODS,
    params:
        settings=train_settings,
        run=lambda w, output: os.path.dirname(output.policy),
    threads: 1
    resources:
        mem_mb=8192,
        runtime=480,
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal train --env {wildcards.env} --method {wildcards.method} --seed {wildcards.seed}"
        " --vae {input.vae} --dataset {input.dataset} --out {params.run} --quiet > {log} 2>&1"


rule train_pixels:
    """An image agent on pixels alone (crl.representation=pixels), one seed: no VAE."""
    input:
        spec="envs/{env}.yaml",
    output:
        policy=f"{RUN}/{paths.POLICY}",
        curve=f"{RUN}/{paths.CURVE}",
    log:
        logged("{env}/{method}/train_seed{seed}")[0],
    benchmark:
        logged("{env}/{method}/train_seed{seed}")[1]
    wildcard_constraints:
        env=PLAIN_ENV,
        method=PIXEL_METHODS,
    params:
        settings=train_settings,
        run=lambda w, output: os.path.dirname(output.policy),
    threads: 1
    resources:
        mem_mb=8192,
        runtime=1440,
        gpu=GPU,  # its convolutional encoder gains the most from one
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal train --env {wildcards.env} --method {wildcards.method} --seed {wildcards.seed}"
        " --out {params.run} --quiet > {log} 2>&1"


rule train_td3_demos:
    """train_td3 in an env whose demo_learning.enabled is true: its demonstrations too."""
    input:
        spec="envs/{env}.yaml",
        demos=str(paths.demos("{env}", ROOT)),
    output:
        policy=str(paths.run_dir("{env}", "td3", "{seed}", ROOT) / paths.POLICY),
        curve=str(paths.run_dir("{env}", "td3", "{seed}", ROOT) / paths.CURVE),
    log:
        logged("{env}/td3/train_seed{seed}")[0],
    benchmark:
        logged("{env}/td3/train_seed{seed}")[1]
    wildcard_constraints:
        env=DEMO_LEARNING_ENV,
    params:
        settings=lambda w: train_settings(w, "td3"),
        run=lambda w, output: os.path.dirname(output.policy),
    threads: 1
    resources:
        mem_mb=4096,
        runtime=240,
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal train --env {wildcards.env} --method td3 --seed {wildcards.seed}"
        " --demos {input.demos} --out {params.run} --quiet > {log} 2>&1"


rule train_image_demos:
    """train_image in an env whose demo_learning.enabled is true: its demonstrations too."""
    input:
        spec="envs/{env}.yaml",
        vae=str(paths.vae("{env}", ROOT)),
        dataset=str(paths.dataset("{env}", ROOT)),
        demos=str(paths.demos("{env}", ROOT)),
    output:
        policy=f"{RUN}/{paths.POLICY}",
        curve=f"{RUN}/{paths.CURVE}",
        vae=f"{RUN}/{paths.RUN_VAE}",
    log:
        logged("{env}/{method}/train_seed{seed}")[0],
    benchmark:
        logged("{env}/{method}/train_seed{seed}")[1]
    wildcard_constraints:
        env=DEMO_LEARNING_ENV,
        method=LATENT_METHODS,
    params:
        settings=train_settings,
        run=lambda w, output: os.path.dirname(output.policy),
    threads: 1
    resources:
        mem_mb=8192,
        runtime=480,
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal train --env {wildcards.env} --method {wildcards.method} --seed {wildcards.seed}"
        " --vae {input.vae} --dataset {input.dataset} --demos {input.demos} --out {params.run} --quiet > {log} 2>&1"


rule train_pixels_demos:
    """train_pixels in an env whose demo_learning.enabled is true: its demonstrations too."""
    input:
        spec="envs/{env}.yaml",
        demos=str(paths.demos("{env}", ROOT)),
    output:
        policy=f"{RUN}/{paths.POLICY}",
        curve=f"{RUN}/{paths.CURVE}",
    log:
        logged("{env}/{method}/train_seed{seed}")[0],
    benchmark:
        logged("{env}/{method}/train_seed{seed}")[1]
    wildcard_constraints:
        env=DEMO_LEARNING_ENV,
        method=PIXEL_METHODS,
    params:
        settings=train_settings,
        run=lambda w, output: os.path.dirname(output.policy),
    threads: 1
    resources:
        mem_mb=8192,
        runtime=1440,
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal train --env {wildcards.env} --method {wildcards.method} --seed {wildcards.seed}"
        " --demos {input.demos} --out {params.run} --quiet > {log} 2>&1"


GCBC_RUN = paths.run_dir("{env}", GCBC, "{seed}", ROOT)
GCBC_LATENT = VIEWS[GCBC] == "latent"  # gcbc.representation: on latents it reads the VAE and its dataset


rule train_gcbc:
    """Goal-conditioned behaviour cloning, one seed, offline from the env's demonstrations alone: the
    envs with a teacher. On latents, like train_image, it reads the VAE and its dataset and writes the
    VAE it acted through; on pixels neither."""
    input:
        spec="envs/{env}.yaml",
        **({"vae": str(paths.vae("{env}", ROOT)), "dataset": str(paths.dataset("{env}", ROOT))} if GCBC_LATENT else {}),
        demos=str(paths.demos("{env}", ROOT)),
    output:
        policy=str(GCBC_RUN / paths.POLICY),
        curve=str(GCBC_RUN / paths.CURVE),
        **({"vae": str(GCBC_RUN / paths.RUN_VAE)} if GCBC_LATENT else {}),
    log:
        logged(f"{{env}}/{GCBC}/train_seed{{seed}}")[0],
    benchmark:
        logged(f"{{env}}/{GCBC}/train_seed{{seed}}")[1]
    wildcard_constraints:
        env=TEACHER_ENV,
    params:
        settings=lambda w: train_settings(w, GCBC),
        run=lambda w, output: os.path.dirname(output.policy),
    threads: 1
    resources:
        mem_mb=8192,
        runtime=240,
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        (
            f"python -m visgoal train --env {{wildcards.env}} --method {GCBC} --seed {{wildcards.seed}}"
            + (" --vae {input.vae} --dataset {input.dataset}" if GCBC_LATENT else "")
            + " --demos {input.demos} --out {params.run} --quiet > {log} 2>&1"
        )


rule evaluate:
    """Every seed of a method on the fixed (initial state, goal) set."""
    input:
        evaluate_inputs,
        spec="envs/{env}.yaml",
    output:
        csv=str(paths.evaluation("{env}", "{method}", "csv", ROOT)),
        summary=str(paths.evaluation("{env}", "{method}", "json", ROOT)),
        picture=str(paths.evaluation("{env}", "{method}", "png", ROOT)),
    log:
        logged("{env}/{method}/evaluate")[0],
    benchmark:
        logged("{env}/{method}/evaluate")[1]
    params:
        settings=lambda w: settings("device", "seeds", "render", "evaluate", env=w.env),
        runs=lambda w, input: os.path.dirname(os.path.dirname(input[0])),  # <runs>/seed<k>/policy.pt
    threads: PARAMS["speed"]["processes"]  # the processes sharing its episodes
    resources:
        mem_mb=4096,
        runtime=60,
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal evaluate --env {wildcards.env} --method {wildcards.method}"
        " --runs {params.runs} --out {output.csv} --quiet > {log} 2>&1"
