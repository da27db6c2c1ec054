"""Process groups for data-parallel training (torchrun; gloo on CPU, NCCL on GPU).

A stage whose spec asks for `ddp` or `fsdp2` with nproc > 1 re-launches itself under
`torch.distributed.run` (torchrun), each rank running the worker it names (repro.relaunch);
each rank then joins the group from torchrun's environment. Data parallelism keeps the global batch: every rank
draws the same step (the sampler is deterministic), takes rows rank, rank + world, ...,
and gradients are averaged, so the update equals the single-process one up to float
summation order. Rank 0 writes every output.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from repro.relaunch import WorkerArgs, cores_per_process, run_launcher
from repro.spec.schema import DistributedSpec


@dataclass(frozen=True)
class DistContext:
    rank: int
    world: int
    device: torch.device
    kind: str  # single | ddp | fsdp2

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or ("RANK" in os.environ and "WORLD_SIZE" in os.environ)


def relaunch_with_torchrun(spec: DistributedSpec, worker: WorkerArgs) -> None:
    """Run `python <worker>` under torchrun in spec.nproc processes (the stage's payload in
    its arguments makes the ranks independent of how this process was started: CLI, DVC or
    a test); RelaunchError if a rank failed (repro.relaunch)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={spec.nproc}", *worker]
    # torchrun sets OMP_NUM_THREADS=1 unless it is set; each rank takes an equal share of
    # the cores instead (REPRO_NUM_THREADS, read by the stage's setup_torch).
    env = dict(os.environ)
    env.setdefault("REPRO_NUM_THREADS", str(cores_per_process(spec.nproc)))
    env.setdefault("OMP_NUM_THREADS", env["REPRO_NUM_THREADS"])
    run_launcher(cmd, env, f"torchrun with {spec.nproc} processes")


def init(spec: DistributedSpec) -> DistContext:
    """Join the process group (under torchrun) or describe the single process."""
    cuda = torch.cuda.is_available()
    if spec.kind == "single" or spec.nproc == 1 or not under_torchrun():
        device = torch.device("cuda", 0) if cuda else torch.device("cpu")
        return DistContext(0, 1, device, "single")
    import torch.distributed as dist

    backend = spec.backend if spec.backend != "auto" else ("nccl" if cuda else "gloo")
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    world = dist.get_world_size()
    if world != spec.nproc:
        raise RuntimeError(f"torchrun started {world} processes but distributed.nproc is {spec.nproc}")
    return DistContext(dist.get_rank(), world, device, spec.kind)


def all_mean(ctx: DistContext, value: torch.Tensor) -> torch.Tensor:
    """Mean of a scalar tensor over ranks (identity on one process)."""
    if not ctx.enabled:
        return value
    import torch.distributed as dist

    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / ctx.world


def all_max_(ctx: DistContext, value: torch.Tensor) -> torch.Tensor:
    """In-place max over ranks (for QK-clip's per-head logits)."""
    if ctx.enabled:
        import torch.distributed as dist

        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return value


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def wrap_model(model: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """DDP or FSDP2 around the model; the model itself when single-process."""
    if not ctx.enabled:
        return model
    if ctx.kind == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    if ctx.kind == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        # one FSDP unit per decoder layer (its all-gather overlaps the previous layer's
        # compute), then the root for embedding, final norm and head (torchtitan's layout)
        hf = model.model if hasattr(model, "settings") else model  # TrainModule -> HF model
        for layer in hf.model.layers:
            fully_shard(layer)
        fully_shard(model)
        return model
    raise ValueError(f"unknown distributed kind {ctx.kind!r}")


def _sharded(ctx: DistContext) -> bool:
    return ctx.kind == "fsdp2" and ctx.enabled


def _full_options(load: bool = False):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # saving gathers onto rank 0 (cpu_offload: the others get {}); loading broadcasts rank
    # 0's copy, so a rollback target held only by rank 0 restores every rank
    return StateDictOptions(full_state_dict=True, cpu_offload=True, broadcast_from_rank0=load)


def module_state(module: torch.nn.Module, ctx: DistContext) -> dict[str, torch.Tensor]:
    """The unsharded state of `module` on CPU. Under FSDP2 every rank must call it (the
    shards are gathered); elsewhere it is a plain detached copy."""
    if _sharded(ctx):
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(module, options=_full_options())  # rank 0 only: {} elsewhere
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def load_module_state(module: torch.nn.Module, state: dict[str, torch.Tensor], ctx: DistContext) -> None:
    if _sharded(ctx):
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        set_model_state_dict(module, state, options=_full_options(load=True))
    else:
        module.load_state_dict(state)


def optimizer_state(module: torch.nn.Module, optimizer, ctx: DistContext) -> dict:
    """The optimizer's state in torch's ordinary (index-keyed) format, unsharded, so a
    checkpoint written under FSDP2 continues on one process and vice versa."""
    if not _sharded(ctx):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    full = get_optimizer_state_dict(module, optimizer, options=_full_options())
    if not full:  # with cpu_offload only rank 0 receives the gathered state
        return {}
    order = [name for g in optimizer.param_groups for name in g["param_names"]]
    index = {name: i for i, name in enumerate(order)}
    groups = []
    for g, saved in zip(optimizer.param_groups, full["param_groups"]):
        groups.append({**{k: v for k, v in saved.items() if k != "params"},
                       "params": [index[n] for n in g["param_names"]], "param_names": list(g["param_names"])})
    return {"state": {index[n]: v for n, v in full["state"].items()}, "param_groups": groups}


def load_optimizer_state(module: torch.nn.Module, optimizer, state: dict, ctx: DistContext) -> None:
    if not _sharded(ctx):
        optimizer.load_state_dict(state)
        return
    if not state:  # a rank other than 0 holding no copy: rank 0 broadcasts
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        set_optimizer_state_dict(module, optimizer, {}, options=_full_options(load=True))
        return
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    names = [n for g in state["param_groups"] for n in g["param_names"]]
    by_index = {i: n for g in state["param_groups"] for i, n in zip(g["params"], g["param_names"])}
    full = {"state": {by_index[i]: v for i, v in state["state"].items()},
            "param_groups": [{**{k: v for k, v in g.items() if k != "params"}, "params": list(g["param_names"])}
                             for g in state["param_groups"]]}
    assert len(set(names)) == len(names)
    set_optimizer_state_dict(module, optimizer, full, options=_full_options(load=True))
