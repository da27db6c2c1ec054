"""A plan as a readable table (the JSON form is `ExperimentPlan.as_dict()`); numbers are
printed with `num`, so the table shows exactly the JSON's values at 3 significant digits."""

from __future__ import annotations

from repro.plan.build import ExperimentPlan
from repro.plan.quantity import INF, Q


def num(x: float | None) -> str:
    """4 significant digits in scientific notation for large and tiny numbers, whole numbers
    below a million with thousands separators, 3 significant digits otherwise."""
    if x is None:
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 1e6 or abs(x) < 1e-3:
        return f"{x:.3e}".replace("e+", "e")
    if abs(x) >= 100 or float(x).is_integer():
        return f"{x:,.0f}"
    return f"{x:.3g}"


def size(x: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.0f} B"


def q(value: Q, fmt=num) -> str:
    """`1.2`, `≈1.2`, `≤ 3`, `≥ 4`, `1–3` or `unknown`."""
    if value.known:
        return ("≈" if value.approx else "") + fmt(value.low)
    if value.high == INF:
        return f"≥ {fmt(value.low)}" if value.low > 0 else "unknown"
    if value.low == 0:
        return f"≤ {fmt(value.high)}"
    return f"{fmt(value.low)}–{fmt(value.high)}"


def _row(*cells, widths=(34, 14, 14, 14, 14, 14)) -> str:
    out = ""
    for cell, w in zip(cells, widths):
        out += f"{cell:<{w}}" if not out else f"{cell:>{w}}"
    return out.rstrip()


CW = (30, 14, 22, 14)
"""Column widths of the curation table (CPU-hour ranges are wide)."""


def render(plan: ExperimentPlan) -> str:
    t, e, d = plan.training, plan.evaluation, plan.disk
    lines = [f"plan: {plan.experiment}  ({plan.spec_file})",
             f"model: N (6ND) = {num(t.params_6nd)} matmul params; total {num(t.params_total)}, "
             f"non-embedding {num(t.params_non_embedding)}; vocab {plan.vocab_size or 'unknown'} "
             f"({plan.vocab_basis})", "",
             _row("CURATION", "docs in", "CPU-hours", "CPU-h/1M docs", widths=CW)]
    for c in plan.curation:
        lines.append(f"  {c.name}: {c.source}")
        for s in c.steps:
            lines.append(_row(f"    {s.label}", q(s.docs), q(s.cpu_hours),
                              num(s.per_million_docs_hours), widths=CW))
        per_million = [s.per_million_docs_hours for s in c.steps]
        lines.append(_row(f"    {c.name} subtotal", q(c.docs_in), q(c.cpu_hours),
                          num(sum(per_million)) if None not in per_million else "n/a", widths=CW))
    lines += [_row("  total", "", q(plan.curation_cpu_hours), widths=CW), "",
              _row(f"TRAINING (per run; {t.runs} run{'s' * (t.runs > 1)})", "seq_len", "tokens",
                   "6ND FLOPs", "attention", "extra", "total", widths=(34, 8, 11, 11, 11, 11, 11))]
    w = (34, 8, 11, 11, 11, 11, 11)
    for s in t.phases:
        lines.append(_row(f"  {s.name}", s.seq_len, num(s.tokens), num(s.dense), num(s.attention),
                          num(s.extra), num(s.total), widths=w))
    lines += [
        _row("  total per run", "", num(t.tokens_per_run), num(sum(s.dense for s in t.phases)),
             num(sum(s.attention for s in t.phases)), num(sum(s.extra for s in t.phases)),
             num(t.flops_per_run), widths=w),
        f"  all runs: {num(t.flops)} FLOPs = {num(t.gpu_hours)} GPU-hours at {t.mfu:.0%} MFU of "
        f"{num(t.peak_flops / 1e12)} TFLOP/s",
    ]
    if t.cpu_core_hours is not None:
        lines.append(f"  or {num(t.cpu_core_hours)} CPU core-hours at {t.mfu:.0%} of the measured "
                     f"{num(t.cpu_peak_flops / 1e9)} GFLOP/s per core (fp32 matmul)")
    lines += ["", _row(f"EVALUATION ({e.checkpoints} checkpoint{'s' * (e.checkpoints != 1)})",
                       "docs", "requests", "tokens")]
    for task in e.tasks:
        lines.append(_row(f"  {task.task}", q(task.docs), q(task.requests), q(task.tokens)))
    per = e.flops_per_checkpoint
    lines += [f"  per checkpoint: {q(per)} FLOPs (2N: {q(e.dense_per_checkpoint)}, attention: "
              f"{q(e.attention_per_checkpoint)})",
              f"  all checkpoints: {q(e.flops)} FLOPs = "
              f"{q(e.flops.scale(1 / (t.peak_flops * t.mfu * 3600)))} GPU-hours", "",
              _row("DISK", "bytes", widths=(34, 18))]
    for name, part in d.parts.items():
        lines.append(f"{_row(f'  {name}', q(part, size), widths=(34, 18))}  {part.basis}")
    lines.append(_row("  total", q(d.total, size), widths=(34, 18)))
    for name, tokens in d.token_counts.items():
        lines.append(f"  tokens in {name}: {q(tokens)} ({tokens.basis})")
    lines += ["", "NOTES"] + [f"  - {n}" for n in plan.notes]
    m = plan.measurements
    if m.get("file"):
        machine = m.get("machine") or {}
        lines.append(f"  - curation costs: {m['file']} ({m.get('generated_by')}; "
                     f"{m.get('measured_at')}; {machine.get('cpu_model')} x{machine.get('cpu_count')})")
    return "\n".join(lines)
