"""`repro sweep`: hyperparameter sweeps run as ordinary DVC experiments.

Design note. A sweep is a spec's `sweep` block (repro.spec.search). We do not run trials
ourselves: every trial is `dvc exp run --queue --name <sweep>-<i> -S <key>=<value> ...
<objective stage>`, executed by DVC's queue (`dvc queue start --jobs <workers>`), so a
trial is an experiment like any other (`dvc exp show`, `dvc exp apply`) and the shared
upstream stages (data, tokenizer) come from DVC's cache instead of being rebuilt.

  plan.py        spec + compiled workspace -> SweepPlan (keys resolved, values validated,
                 objective stage found); everything that can be wrong is caught here, before
                 anything is queued
  keys.py        params.yaml key patterns -> concrete keys
  values.py      trial values checked with the stages' own pydantic configs
  objective.py   the experiment's final evaluation stage and the metric read from it
  workspace.py   compile the specs, check dvc.yaml/params.yaml are current
  strategies.py  grid / random points, optuna ask/tell on a journal (resumable)
  dvc.py         the only module that runs `dvc`; parses `dvc exp show --json` and
                 `dvc queue status`
  driver.py      queue, wait, collect, resume
  results.py     DVC experiments -> trial results (the report's only input)
  analysis.py    best, margin, sensitivity (main effects, fANOVA)
  plots.py       one deterministic PNG per parameter
  report.py      reports/sweeps/<name>/{report.md,results.json,*.png}
  paths.py       .repro/sweeps/<name>/ and reports/sweeps/<name>/
  errors.py      bad input (exit 2, nothing queued) vs a failed DVC command (exit 1)
  cli.py         the click command
"""
