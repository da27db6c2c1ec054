"""What one micro batch's loss is: next-token CE (or the distillation mix), plus z-loss and
multi-token prediction when the spec turns them on.

`TrainModule` holds every trained module (the model and, if any, its MTP modules) so that
DDP/FSDP wrap one module and its forward returns the loss: DDP needs the forward to go
through its wrapper to synchronise gradients. The teacher is not a submodule (never
trained, never synchronised, never saved with the student).

Document masking (when on) goes through the attention path `ObjectiveSettings.attention`
(repro.model.attention): sdpa gets per-document position ids and builds its dense mask; flex
gets a BlockMask built from the EOS positions once per micro batch; flash gets the micro batch
flattened to one packed row with cu_seqlens. The teacher sees the same documents.

The forward runs the trunk (`model.model`, or its torch.compile'd copy `compiled_trunk`),
then the head through `ObjectiveSettings.cross_entropy` (repro.train.linear_ce): `plain`
applies lm_head (the full logits, bit for bit model(...).logits; distillation needs them);
`chunked`/`liger` fuse head, CE and z-loss so the (tokens x vocab) logits never exist. The
MTP heads use the same method through the shared lm_head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from repro.model.attention import attention_inputs
from repro.model.mtp import mtp_losses, total_mtp_loss, trunk_states
from repro.spec.schema import DistillationSpec, MTPSpec
from repro.train.distill import TeacherTargets, kd_loss, teacher_logits
from repro.train.linear_ce import METHODS, linear_cross_entropy
from repro.train.positions import document_position_ids
from repro.train.zloss import z_loss


@dataclass(frozen=True)
class ObjectiveSettings:
    eos_id: int
    doc_masking: bool
    z_loss: float = 0.0
    mtp: MTPSpec | None = None
    distillation: DistillationSpec | None = None
    # LM-head loss: "plain" | "chunked" | "liger", the concrete choice of
    # repro.train.backends.resolve (never "auto" here); see repro.train.linear_ce
    cross_entropy: str = "plain"
    # attention path: "sdpa" | "flex" | "flash", the concrete choice of
    # repro.train.backends.resolve; the model (and MTP modules) must have been switched to it
    # with repro.model.attention.set_attention
    attention: str = "sdpa"


class TrainModule(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, settings: ObjectiveSettings,
                 mtp: torch.nn.Module | None = None, teacher: torch.nn.Module | None = None,
                 teacher_cache: dict[str, Any] | None = None, compiled_trunk: Any = None) -> None:
        super().__init__()
        if settings.cross_entropy not in METHODS:
            raise ValueError(f"cross_entropy {settings.cross_entropy!r} is not one of {METHODS} "
                             "(resolve `auto` with repro.train.backends.resolve first)")
        if settings.distillation is not None and settings.cross_entropy != "plain":
            raise ValueError("distillation needs the full logits: cross_entropy must be plain")
        self.model = model
        self.mtp = mtp
        self.settings = settings
        # not submodules: the teacher is frozen and belongs to no optimizer or checkpoint
        object.__setattr__(self, "teacher", teacher)
        object.__setattr__(self, "teacher_cache", teacher_cache or {})
        # torch.compile'd `model.model` (the trunk, no LM head), if any: the head and the loss
        # stay eager, so a fused loss's Python chunk loop is never traced
        object.__setattr__(self, "compiled_trunk", compiled_trunk)

    def positions(self, inputs: torch.Tensor) -> torch.Tensor | None:
        if not self.settings.doc_masking:
            return None
        return document_position_ids(inputs, self.settings.eos_id)

    def attention(self, inputs: torch.Tensor):
        """The trunk's attention kwargs for this micro batch (repro.model.attention.AttentionInputs)."""
        st = self.settings
        return attention_inputs(inputs, st.eos_id, st.attention, st.doc_masking)

    def forward(self, windows: torch.Tensor, meta: list[tuple[str, int]], tokens_seen: int
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        st = self.settings
        inputs, targets = windows[:, :-1], windows[:, 1:]  # (batch, seq_len) each
        att = self.attention(inputs)
        position_ids = att.position_ids  # (batch, seq_len) per-document positions, or None
        # trunk, then head: `hidden` is the final (post-norm) hidden state; with MTP also the
        # pre-norm state the MTP modules branch from (repro.model.mtp). The flash path runs
        # the trunk on (1, batch*seq_len); unflatten gives (batch, seq_len, H) back.
        pre_norm = None
        if self.mtp is not None:
            kwargs = dict(att.kwargs)
            pre_norm, hidden = trunk_states(self.model, att.input_ids, kwargs.pop("position_ids"), **kwargs)
            pre_norm = att.unflatten(pre_norm)
        else:
            trunk = self.compiled_trunk if self.compiled_trunk is not None else self.model.model
            hidden = trunk(input_ids=att.input_ids, use_cache=False, **att.kwargs).last_hidden_state
        hidden = att.unflatten(hidden)
        parts: dict[str, torch.Tensor] = {}
        if st.cross_entropy == "plain":
            loss = self._plain_loss(hidden, targets, inputs, att, meta, parts)
        else:
            out = linear_cross_entropy(hidden, self.model.lm_head.weight, targets, method=st.cross_entropy,
                                       z_weight=st.z_loss)
            parts["ce"] = out.ce
            if out.z is not None:
                parts["z_loss"] = out.z
            loss = out.loss
        if self.mtp is not None:
            losses = mtp_losses(self.mtp, self.model, pre_norm, windows, position_ids,
                                cross_entropy=st.cross_entropy)
            weight = st.mtp.weight_at(tokens_seen)
            total = total_mtp_loss(losses, weight)
            for k, l_k in enumerate(losses, start=1):
                parts[f"mtp_{k}"] = l_k.detach()
            loss = loss + total
        return loss, parts

    def _plain_loss(self, hidden, targets, inputs, att, meta, parts) -> torch.Tensor:
        """Full logits (what model(...).logits gives, bit for bit), CE, distillation, z-loss."""
        st = self.settings
        logits = self.model.lm_head(hidden).float()  # losses in fp32 whatever the autocast dtype
        ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        parts["ce"] = ce.detach()
        if st.distillation is not None:
            loss = self._distill(logits, targets, inputs, att, meta, parts)
        else:
            loss = ce
        if st.z_loss > 0:
            z = z_loss(logits)
            parts["z_loss"] = z.detach()
            loss = loss + st.z_loss * z
        return loss

    def _distill(self, logits, targets, inputs, att, meta, parts) -> torch.Tensor:
        d = self.settings.distillation
        if d.logits == "full":
            teacher = TeacherTargets.dense(teacher_logits(self.teacher, inputs, att.position_ids, attention=att))
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
