"""Optimizers from the spec: AdamW (SmolLM3, FACTS 3.8) or Muon + AdamW (FACTS 5).

Weight decay exclusions follow nanotron's `weight_decay_exclude_named_params`: a parameter
skips weight decay when its full name (as `model.named_parameters()` gives it, e.g.
`model.embed_tokens.weight`) fully matches one of the spec's regexes. SmolLM3 excludes only
the token embedding, so RMSNorm gains are decayed (FACTS 3.8). Tied weights appear once in
`named_parameters()` (under the embedding's name), so a tied LM head follows the embedding.

Muon (FACTS 5.1-5.4) orthogonalises the update of 2-D hidden matrices only; every 2-D weight
inside a decoder layer (q/k/v/o projections, MLP gate/up/down) goes to `torch.optim.Muon`,
and everything else (token embedding, untied LM head, norm gains, biases) to AdamW with the
spec's `adamw` settings and the same decay grouping.

LR: the spec's LRs are the only ones (the schedule is a shape, repro.train.schedule). Every
param group carries `base_lr`, its peak LR from the spec, and each step the loop sets
lr = base_lr * multiplier (`set_lr_multiplier`), so Muon's and AdamW's groups follow the same
schedule shape, each from its own peak. `reference_lr` (AdamW's; for Muon the AdamW part's)
is the group whose LR the training log reports.

Every group also carries `group` ("decay", "no_decay" or "muon"): a label for logs. Groups
are always built in a fixed order, and `load_state` re-applies the spec by that order.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import torch

from repro.spec.schema import AdamWParams, AdamWSpec, MuonSpec

# Every 2-D weight below a decoder layer is a hidden matrix (FACTS 5.4), and so is every
# 2-D weight of a multi-token-prediction depth (its projection and block). Norm gains there
# are 1-D, so `ndim == 2` leaves them to AdamW. Names may carry a prefix (the training
# module holds the model as `model.` and the MTP modules as `mtp.`).
HIDDEN_MATRIX = re.compile(r"(?:.*\.)?(?:model\.layers|mtp\.depths)\.\d+\..+")

MUON_STATE_KIND = "muon+adamw"  # marks MuonWithAdamW.state_dict() (an AdamW dict has no "kind")


# --------------------------------------------------------------------------- grouping


def is_hidden_matrix(name: str, p: torch.Tensor) -> bool:
    """True for the parameters Muon optimises: 2-D weights inside the decoder layers."""
    return p.ndim == 2 and HIDDEN_MATRIX.fullmatch(name) is not None


def split_muon(model: torch.nn.Module) -> tuple[list[tuple[str, torch.Tensor]], list[tuple[str, torch.Tensor]]]:
    """(hidden matrices for Muon, everything else for AdamW), as (name, tensor) pairs in
    `named_parameters()` order; frozen parameters are left out."""
    muon, other = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (muon if is_hidden_matrix(name, p) else other).append((name, p))
    return muon, other


def _decay_split(named: list[tuple[str, torch.Tensor]], patterns: list[str]):
    regexes = [re.compile(p) for p in patterns]
    decay, no_decay = [], []
    for name, p in named:
        (no_decay if any(r.fullmatch(name) for r in regexes) else decay).append((name, p))
    return decay, no_decay


def _adamw_settings(spec: AdamWParams) -> list[dict[str, Any]]:
    """Hyper-parameters of the [decay, no_decay] AdamW groups (all but `params`)."""
    common = {"betas": tuple(spec.betas), "eps": spec.eps, "base_lr": spec.lr, "lr": spec.lr}
    return [
        {**common, "group": "decay", "weight_decay": spec.weight_decay},
        {**common, "group": "no_decay", "weight_decay": 0.0},
    ]


def _muon_settings(spec: MuonSpec) -> dict[str, Any]:
    """Hyper-parameters of the single Muon group. torch's adjust_lr_fn takes exactly our
    names, "original" (Keller: sqrt(max(1, A/B))) or "match_rms_adamw" (Moonlight:
    0.2*sqrt(max(A, B))) (FACTS 5.3)."""
    return {
        "group": "muon", "base_lr": spec.lr, "lr": spec.lr, "momentum": spec.momentum,
        "nesterov": spec.nesterov, "ns_steps": spec.ns_steps, "weight_decay": spec.weight_decay,
        "adjust_lr_fn": spec.adjust_lr,
    }


def param_groups(model: torch.nn.Module, spec: AdamWParams,
                 params: list[tuple[str, torch.Tensor]] | None = None) -> list[dict]:
    """Two AdamW groups in a fixed order: [decayed, not decayed], over `params` (default: all
    trainable parameters). Parameters are (name, tensor) pairs, so torch records
    `param_names` in the optimizer state and `load_state` can check the grouping."""
    if params is None:
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay, no_decay = _decay_split(params, spec.no_decay_patterns)
    s_decay, s_no_decay = _adamw_settings(spec)
    # param_names given explicitly too: torch records none for an empty group (e.g. no
    # pattern matches) and then refuses to mix it with named groups.
    return [{"params": ps, "param_names": [n for n, _ in ps], **s}
            for ps, s in ((decay, s_decay), (no_decay, s_no_decay))]


# --------------------------------------------------------------------------- Muon + AdamW


class MuonWithAdamW:
    """`torch.optim.Muon` on the hidden matrices and `torch.optim.AdamW` on the rest, driven
    as one optimizer (FACTS 5.4). It is not a `torch.optim.Optimizer` subclass (that base
    class would hold its own copy of the groups); it exposes what the training loop and
    checkpointing use: `param_groups`, `state`, `step`, `zero_grad`, `state_dict`,
    `load_state_dict`."""

    def __init__(self, muon: torch.optim.Muon, adamw: torch.optim.AdamW):
        self.muon = muon
        self.adamw = adamw

    @property
    def param_groups(self) -> list[dict]:
        """Muon's group, then AdamW's [decay, no_decay]: the same dicts the two optimizers
        use, so setting `g["lr"]` on them takes effect."""
        return [*self.muon.param_groups, *self.adamw.param_groups]

    @property
    def state(self) -> dict:
        """Per-parameter state of both optimizers (a merged copy: read it, don't write it)."""
        return {**self.muon.state, **self.adamw.state}

    def step(self, closure: Callable[[], Any] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.muon.step()
        self.adamw.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none=set_to_none)
        self.adamw.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"kind": MUON_STATE_KIND, "muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != MUON_STATE_KIND:
            raise ValueError("not a Muon+AdamW optimizer state (it has no 'kind': 'muon+adamw')")
        self.muon.load_state_dict(state["muon"])
        self.adamw.load_state_dict(state["adamw"])

    def __repr__(self) -> str:
        return f"MuonWithAdamW(\n{self.muon!r},\n{self.adamw!r})"


Optimizer = torch.optim.AdamW | MuonWithAdamW


# --------------------------------------------------------------------------- building


def build_adamw(model: torch.nn.Module, spec: AdamWSpec) -> torch.optim.AdamW:
    """torch.optim.AdamW over `param_groups`, each group at its peak LR (`base_lr`)."""
    # foreach (multi-tensor) is torch's default on CPU; fused would add nothing at this size.
    return torch.optim.AdamW(param_groups(model, spec), lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps)


def resolve_ns_dtype(ns_dtype: str, device: torch.device) -> torch.dtype:
    """MuonSpec.ns_dtype on `device`: `auto` is bfloat16 on CUDA, float32 elsewhere."""
    if ns_dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"bfloat16": torch.bfloat16, "float32": torch.float32}[ns_dtype]


def newton_schulz(update: torch.Tensor, coefficients: tuple[float, float, float], steps: int,
                  eps: float, dtype: torch.dtype) -> torch.Tensor:
    """torch.optim.Muon's quintic Newton-Schulz orthogonalisation (Keller Jordan's; FACTS
    5.1), the same operations in the same order, computed in `dtype`."""
    a, b, c = coefficients
    x = update.to(dtype)
    tall = update.size(0) > update.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm <= 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


class Muon(torch.optim.Muon):
    """torch.optim.Muon with the Newton-Schulz iteration in `ns_dtype`. With bfloat16 it is
    torch's own step, bit for bit; otherwise the same update (momentum, Nesterov, decoupled
    weight decay, adjusted LR, in torch's order) with `newton_schulz` in that dtype. Its
    state (`momentum_buffer` per parameter) is torch's, so checkpoints load either way."""

    def __init__(self, params, *, ns_dtype: torch.dtype, **settings):
        super().__init__(params, **settings)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        if self.ns_dtype == torch.bfloat16:
            return super().step(closure)
        from torch.optim._muon import _adjust_lr  # torch's own LR adjustment (FACTS 5.3)

        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            buffers: list[torch.Tensor] = []
            self._init_group(group, params, grads, buffers)
            lr, momentum = float(group["lr"]), group["momentum"]
            for param, grad, buf in zip(params, grads, buffers):
                buf.lerp_(grad, 1 - momentum)
                update = grad.lerp(buf, momentum) if group["nesterov"] else buf
                update = newton_schulz(update, group["ns_coefficients"], group["ns_steps"],
                                       group["eps"], self.ns_dtype)
                param.mul_(1 - lr * group["weight_decay"])
                param.add_(update, alpha=-_adjust_lr(lr, group["adjust_lr_fn"], param.shape))
        return loss


def build_muon(model: torch.nn.Module, spec: MuonSpec) -> MuonWithAdamW:
    """Muon on the decoder layers' 2-D weights, AdamW (spec.adamw) on the rest (FACTS 5.4)."""
    hidden, other = split_muon(model)
    if not hidden:
        raise ValueError("the model has no 2-D weights inside its decoder layers for Muon to optimise")
    s = _muon_settings(spec)
    # ns_coefficients and eps stay torch's defaults (Keller's quintic; FACTS 5.1).
    ns_dtype = resolve_ns_dtype(spec.ns_dtype, hidden[0][1].device)
    muon = Muon([{"params": hidden, **s}], lr=s["lr"], ns_dtype=ns_dtype)
    adamw = torch.optim.AdamW(param_groups(model, spec.adamw, other), lr=spec.adamw.lr,
                              betas=tuple(spec.adamw.betas), eps=spec.adamw.eps)
    return MuonWithAdamW(muon, adamw)


def build_optimizer(model: torch.nn.Module, spec: AdamWSpec | MuonSpec) -> Optimizer:
    """The optimizer the spec names, every group at its peak LR (`base_lr`); call
    `set_lr_multiplier` each step to follow the schedule."""
    if isinstance(spec, MuonSpec):
        return build_muon(model, spec)
    if isinstance(spec, AdamWSpec):
        return build_adamw(model, spec)
    raise TypeError(f"unknown optimizer spec {type(spec).__name__}")


def reference_lr(spec: AdamWSpec | MuonSpec) -> float:
    """The reference group's peak LR: AdamW's (for Muon, its AdamW part's). The log's `lr`
    column is this group's LR, and the schedule's multiplier is rounded at it."""
    return spec.adamw.lr if isinstance(spec, MuonSpec) else spec.lr


def set_lr_multiplier(optimizer: Optimizer, m: float) -> None:
    """lr = base_lr * m on every group (m = the schedule's factor times the LR scale)."""
    for g in optimizer.param_groups:
        g["lr"] = g["base_lr"] * m


# --------------------------------------------------------------------------- reloading


def _check_names(what: str, expected: list, saved: list) -> None:
    if saved != expected:
        raise ValueError(
            f"the saved {what} state groups parameters differently from this phase "
            f"(saved {saved}, now {expected}); no_decay_patterns, the Muon/AdamW split or the "
            "architecture changed between training phases: keep them equal across an "
            "experiment's `training.stages`, or set `reset_optimizer: true` on the one that "
            "changes them"
        )


def _names(groups: list[dict]) -> list:
    return [g.get("param_names") for g in groups]


def load_state(optimizer: Optimizer, state: dict, spec: AdamWSpec | MuonSpec, loader=None) -> None:
    """Load a saved optimizer state into `optimizer` (built by `build_optimizer` for the same
    model and spec kind), then re-apply the spec's hyper-parameters: the saved groups carry
    the previous phase's values (torch's load_state_dict replaces each group's settings with
    the saved ones), and a phase may change betas, eps, weight decay, momentum or peak LR.
    Raises ValueError when the optimizer kind or the parameter grouping differs. `loader`
    replaces `optimizer.load_state_dict` for AdamW (FSDP2 loads through
    repro.train.distributed.load_optimizer_state)."""
    saved_kind = "muon" if state.get("kind") == MUON_STATE_KIND else "adamw"
    kind = "muon" if isinstance(spec, MuonSpec) else "adamw"
    if saved_kind != kind:
        raise ValueError(
            f"the saved optimizer state is {saved_kind} but this phase's optimizer is {kind}; "
            "the optimizer kind cannot change between training phases with a shared state: "
            "keep `optimizer.kind` equal, or set `reset_optimizer: true` on the phase "
            "(`training.stages[i]`) that changes it"
        )
    if isinstance(spec, MuonSpec):
        if not isinstance(optimizer, MuonWithAdamW):
            raise TypeError("a Muon spec needs the optimizer build_optimizer(model, spec) returns")
        _check_names("Muon", _names(optimizer.muon.param_groups), _names(state["muon"]["param_groups"]))
        _check_names("AdamW", _names(optimizer.adamw.param_groups), _names(state["adamw"]["param_groups"]))
        optimizer.load_state_dict(state)
        optimizer.muon.param_groups[0].update(_muon_settings(spec))
        adamw, adamw_spec = optimizer.adamw, spec.adamw
    else:
        _check_names("AdamW", _names(optimizer.param_groups), _names(state["param_groups"]))
        (loader or optimizer.load_state_dict)(state)
        adamw, adamw_spec = optimizer, spec
    for g, s in zip(adamw.param_groups, _adamw_settings(adamw_spec), strict=True):
        g.update(s)
