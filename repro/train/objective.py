"""What one micro batch's loss is: next-token CE (or the distillation mix), plus z-loss and
multi-token prediction when the spec turns them on.

`TrainModule` holds every trained module (the model and, if any, its MTP modules) so that
DDP/FSDP wrap one module and its forward returns the loss: DDP needs the forward to go
through its wrapper to synchronise gradients. The teacher is not a submodule (never
trained, never synchronised, never saved with the student).

Per-document positions (repro.train.positions) are passed whenever doc masking is on:
transformers then masks attention across documents, and the teacher sees the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from repro.spec.schema import DistillationSpec, MTPSpec
from repro.train.positions import document_position_ids


@dataclass(frozen=True)
class ObjectiveSettings:
    eos_id: int
    doc_masking: bool
    z_loss: float = 0.0
    mtp: MTPSpec | None = None
    distillation: DistillationSpec | None = None


class TrainModule(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, settings: ObjectiveSettings,
                 mtp: torch.nn.Module | None = None, teacher: torch.nn.Module | None = None,
                 teacher_cache: dict[str, Any] | None = None, compiled: Any = None) -> None:
        super().__init__()
        self.model = model
        self.mtp = mtp
        self.settings = settings
        # not submodules: the teacher is frozen and belongs to no optimizer or checkpoint
        object.__setattr__(self, "teacher", teacher)
        object.__setattr__(self, "teacher_cache", teacher_cache or {})
        object.__setattr__(self, "compiled", compiled)  # torch.compile'd model, if any

    def positions(self, inputs: torch.Tensor) -> torch.Tensor | None:
        if not self.settings.doc_masking:
            return None
        return document_position_ids(inputs, self.settings.eos_id)

    def forward(self, windows: torch.Tensor, meta: list[tuple[str, int]], tokens_seen: int
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        st = self.settings
        inputs, targets = windows[:, :-1], windows[:, 1:]  # (batch, seq_len) each
        position_ids = self.positions(inputs)
        hidden = None
        if self.mtp is not None:
            from repro.model.mtp import trunk_forward

            hidden, logits = trunk_forward(self.model, inputs, position_ids)
        else:
            fwd = self.compiled if self.compiled is not None else self.model
            logits = fwd(input_ids=inputs, position_ids=position_ids, use_cache=False).logits
        logits = logits.float()  # losses in fp32 whatever the autocast dtype
        ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        parts: dict[str, torch.Tensor] = {"ce": ce.detach()}
        if st.distillation is not None:
            loss = self._distill(logits, targets, inputs, position_ids, meta, parts)
        else:
            loss = ce
        if st.z_loss > 0:
            from repro.train.zloss import z_loss

            z = z_loss(logits)
            parts["z_loss"] = z.detach()
            loss = loss + st.z_loss * z
        if self.mtp is not None:
            from repro.model.mtp import mtp_losses, total_mtp_loss

            losses = mtp_losses(self.mtp, self.model, hidden, windows, position_ids)
            weight = st.mtp.weight_at(tokens_seen)
            total = total_mtp_loss(losses, weight)
            for k, l_k in enumerate(losses, start=1):
                parts[f"mtp_{k}"] = l_k.detach()
            loss = loss + total
        return loss, parts

    def _distill(self, logits, targets, inputs, position_ids, meta, parts) -> torch.Tensor:
        from repro.train.distill import TeacherTargets, kd_loss, teacher_logits

        d = self.settings.distillation
        if d.logits == "full":
            teacher = TeacherTargets.dense(teacher_logits(self.teacher, inputs, position_ids))
        else:
            teacher = TeacherTargets.sparse(*self._cached_targets(meta, logits.device))
        loss, kd_parts = kd_loss(logits, targets, teacher, d.alpha, d.temperature)
        parts["kd_kl"] = kd_parts["kl"].detach()
        return loss

    def _cached_targets(self, meta, device):
        by_source: dict[str, list[int]] = {}
        for row, (name, _) in enumerate(meta):
            by_source.setdefault(name, []).append(row)
        indices = probs = None
        for name, rows in by_source.items():
            idx, p = self.teacher_cache[name].targets([meta[r][1] for r in rows])
            if indices is None:
                indices = torch.empty((len(meta), *idx.shape[1:]), dtype=idx.dtype)
                probs = torch.empty((len(meta), *p.shape[1:]), dtype=p.dtype)
            indices[rows] = idx
            probs[rows] = p
        return indices.to(device), probs.to(device)
