"""`repro plan`: what an experiment will cost, before anything runs.

Design note. A plan is computed from the validated spec, the stage graph the compiler
would build (pure) and measurements already committed to the repository: the per-step
curation costs bench/curation_steps.py measured (with the machine it ran on), and the
metrics of stages that already ran. It never touches the network or runs a stage. Every
number is an interval with its basis (repro.plan.quantity), so a count the spec does not
give stays "unknown" (or a bound) instead of being invented, and totals say so.

Modules, one job each: curation (CPU-hours per dataset and step), training (FLOPs per
stage, GPU-hours), evaluation (forward FLOPs per evaluated checkpoint), disk (bytes per
output kind), build (assembles them), render (the table).

Import them by name (repro.plan.build.plan_spec, repro.plan.render.render): this file
re-exports nothing, because importing any submodule runs it first, and re-exporting build,
which imports its siblings, would make every submodule import itself through it (a cycle;
tests/test_layering.py).
"""
