# The environments with a scripted teacher (visgoal.teachers, TEACHER_ENVS): its demonstrations, which
# their datasets take a share of (dataset.demo_share) and agents learn from, and its evaluation on the
# protocol, the results table's teacher row.


rule demos:
    """The teacher's demonstrations: pictures, goal images and actions (the simulator's state apart)."""
    input:
        spec="envs/{env}.yaml",
    output:
        h5=str(paths.demos("{env}", ROOT)),
        picture=str(paths.demos_picture("{env}", ROOT)),
    log:
        logged("{env}/demos")[0],
    benchmark:
        logged("{env}/demos")[1]
    wildcard_constraints:
        env=TEACHER_ENV,
    params:
        settings=lambda w: settings("device", "render", "demos", env=w.env),
    threads: 1
    resources:
        mem_mb=4096,
        runtime=60,
        gpu=GPU,  # its pictures from the renderer the agents will see through
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal demos --env {wildcards.env} --out {output.h5} --quiet > {log} 2>&1"


rule teacher:
    """The teacher on the protocol's fixed episodes: no training, one seed."""
    input:
        spec="envs/{env}.yaml",
    output:
        csv=str(paths.evaluation("{env}", paths.TEACHER, "csv", ROOT)),
        summary=str(paths.evaluation("{env}", paths.TEACHER, "json", ROOT)),
        picture=str(paths.evaluation("{env}", paths.TEACHER, "png", ROOT)),
    log:
        logged(f"{{env}}/{paths.TEACHER}/evaluate")[0],
    benchmark:
        logged(f"{{env}}/{paths.TEACHER}/evaluate")[1]
    wildcard_constraints:
        env=TEACHER_ENV,
    params:
        settings=lambda w: settings("device", "render", "evaluate", env=w.env),
    threads: PARAMS["speed"]["processes"]  # the processes sharing its episodes
    resources:
        mem_mb=4096,
        runtime=60,
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal evaluate --env {wildcards.env} --method teacher --out {output.csv} --quiet > {log} 2>&1"
