"""``--executor slurm --dry-run``: the sbatch scripts of a whole manifest, written without running.

Nothing runs, so later stages' task counts cannot be learnt either. ``SlurmDryRun`` walks the manifest
like the runner: every pass of a stage whose input is complete (and whose models exist) gets an exact,
submittable script (datatrove's own launch script plus the pickled executor and ``ranks_to_run.json``,
written by datatrove's ``launch_job`` with ``sbatch`` replaced by a recorder); stages further down are
listed with *estimated* task counts (the ``tasks`` param when set, else the task count of the stage
before: document stages write one shard per task). Downloads are executor tasks like any pass: the dry
run expands a download's entries into its item list (planning) and writes the script of its tasks, and
the extract after it is estimated from that list. A model whose inputs are complete gets the script of
its one-task ``build`` job (``resources.stages.<model>``). ``submit.sh`` submits the exact scripts in
order with each source's ``--dependency=afterok`` chain.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.executors.resources import stage_resources
from pipeline.executors.slurm import SlurmExecutor
from pipeline.registry import MODEL_STAGES, stage_class
from pipeline.runner import Runner
from pipeline.stages import build_model, is_complete
from storage.atomic import atomic_write_json


class SlurmDryRun(Runner):
    """Walks the sources' stages as the runner would, writing scripts instead of running passes."""

    def __init__(self, manifest, executor: SlurmExecutor, sources=None, stages=None):
        super().__init__(manifest, executor, sources=sources, stages=stages)
        self.plan: list[dict[str, Any]] = []

    def _targets(self, source: str) -> list[str]:
        names = self.manifest.sources[source].stage_names()
        if self.stages is None:
            return names
        chosen = [i for i, n in enumerate(names) if n in self.stages]
        return names[: max(chosen) + 1] if chosen else []

    def run(self) -> None:
        for source in self.sources:
            spec = self.manifest.sources[source]
            blocked: str | None = None
            tasks: int | None = None
            for stage in self._targets(source):
                out = self.output_dir(source, stage)
                res = stage_resources(self.manifest.resources, stage)
                entry: dict[str, Any] = {"stage": stage, "source": source, "resources": res}
                if is_complete(out):
                    tasks = json.loads((out / "_SUCCESS").read_text()).get("tasks", tasks)
                    self.plan.append({**entry, "status": "complete", "tasks": tasks})
                    continue
                cls = stage_class(stage)
                params = spec.stage(stage).params
                missing = [m for m in cls.requires_models if not is_complete(self.layout.model_dir(m))]
                prev = spec.previous(stage)
                if blocked is None and missing:
                    blocked = f"model(s) {', '.join(missing)} not built yet (the driver builds them between passes)"
                if blocked is None:
                    stage_obj = cls(params)
                    io = self._io(stage, source, params, self.output_dir(source, prev) if prev else None, out)
                    tasks = stage_obj.tasks(io)
                    before = len(self.executor.scripts)
                    try:
                        stage_obj.run(io)
                        note = None
                    except Exception as e:  # a later pass needs what the earlier ones compute
                        note = f"later passes need the earlier passes' results ({type(e).__name__}: {e})"
                        blocked = f"{stage}/{source} has passes that can only be written after the earlier ones ran"
                    written = [s["script"] for s in self.executor.scripts[before:]]
                    self.plan.append({**entry, "status": "scripts", "tasks": tasks, "scripts": written, **({"note": note} if note else {})})
                    if blocked is None:
                        blocked = f"{stage}/{source} has not run yet"
                    continue
                input_dir = self.output_dir(source, prev) if prev else None
                tasks = cls.estimate_tasks(params, input_dir, spec.inputs, self.manifest.path.parent, tasks)
                self.plan.append({**entry, "status": "estimated", "tasks": tasks, "note": blocked})
        models = sorted({m for s in self.sources for n in self._targets(s) for m in stage_class(n).requires_models})
        if self.stages:
            models = sorted(set(models) | (self.stages & MODEL_STAGES))
        for m in models:
            self.plan.append(self._model_entry(m))
        submit = self.executor.write_submit_script()
        atomic_write_json(self.executor.slurm_dir / "plan.json", {"submit": str(submit), "entries": self.plan})
        self._print(submit)

    def _model_entry(self, name: str) -> dict[str, Any]:
        """A model's build job: its script when every input is complete, else estimated (one task)."""
        entry: dict[str, Any] = {"stage": name, "source": "*", "resources": stage_resources(self.manifest.resources, name), "tasks": 1}
        out = self.layout.model_dir(name)
        if is_complete(out):
            return {**entry, "status": "complete"}
        stage = stage_class(name)(self.manifest.model_params(name))
        wanted = [(s, after) for s, after in stage.requires(self.manifest) if s in self.manifest.sources]
        pending = [f"{after}/{s}" for s, after in wanted if not is_complete(self.output_dir(s, after))]
        if pending:
            return {**entry, "status": "estimated", "note": f"a one-task build job once {', '.join(pending[:3])} are complete"}
        inputs: dict[str, list[Path]] = {}
        for s, after in wanted:
            inputs.setdefault(s, []).append(self.output_dir(s, after))
        before = len(self.executor.scripts)
        try:
            build_model(stage, self._io(name, "*", stage.params, None, out), inputs)
        except RuntimeError:  # nothing ran, so the build left no summary: expected
            pass
        return {**entry, "status": "scripts", "scripts": [x["script"] for x in self.executor.scripts[before:]]}

    def _print(self, submit: Path) -> None:
        print(f"{'stage':<14}{'source':<15}{'status':<11}{'tasks':>6}  {'partition':<10}{'time':<10}{'cpus':>5}{'mem/cpu':>8}  scripts")
        for e in self.plan:
            r = e["resources"]
            scripts = ", ".join(Path(s).name for s in e.get("scripts", [])) or e.get("note", "")
            print(f"{e['stage']:<14}{e['source']:<15}{e['status']:<11}{e.get('tasks') or '':>6}  {r['partition']:<10}{r['time']:<10}"
                  f"{r['cpus_per_task']:>5}{str(r['mem_per_cpu_gb']) + 'G':>8}  {scripts}")
        print(f"submit the exact scripts with: bash {submit}")
