"""Stage `teacherlogits`: the teacher's sparse targets (top-k or sampled) for every window
of one dataset, computed once and read by the distilling training stages from disk.

Caching is worth it when several students (or reruns) share a teacher: the teacher's
forward pass is then paid once (Gemma 3 samples 256 logits per token; random-sampling KD
stores few logits at < 10% overhead over CE; FACTS 7.3, 7.7). Targets are keyed by window
index, so any sampler order reads them; each window's sampling generator is seeded from
(seed, window), so the files do not depend on the batch size.
"""

from __future__ import annotations


from repro.stages.base import StageIO, atomic_dir, log
from repro.stages.configs import TeacherLogitsConfig
from repro.stages.kind import ENV, StageKind, data
from repro.train.determinism import setup_torch
from repro.train.data import TokenShards
from repro.train.distill import load_teacher, write_teacher_cache


def run(cfg: TeacherLogitsConfig, io: StageIO) -> None:
    setup_torch()
    shards = TokenShards(io.input("tokens"), cfg.seq_len)
    ref = str(io.inputs["teacher"]) if "teacher" in io.inputs else cfg.teacher
    teacher = load_teacher(ref, shards.vocab_size, trust_remote_code=cfg.trust_remote_code)
    log(io.name, f"{cfg.mode} k={cfg.k} targets for {shards.num_windows} windows of {cfg.dataset}")
    with atomic_dir(io.output("targets")) as tmp:
        write_teacher_cache(teacher, shards, tmp, cfg.mode, cfg.k, cfg.temperature, cfg.seed,
                            batch_size=8, doc_masking=cfg.doc_masking, progress=True)


KIND = StageKind(
    config=TeacherLogitsConfig,
    outputs={"targets": data("data/teacher"), "env": ENV},
    run=run,
)
