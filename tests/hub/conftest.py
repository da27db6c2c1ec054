"""Fixtures for the standard lm-eval tasks against a loopback stand-in of the Hugging Face
Hub (hub_standin.py): the hub, a tiny checkpoint, and the environment of a process that
reaches the stand-in (the test process itself stays offline, tests/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: helpers by path
from hub_standin import HubStandin  # noqa: E402
from standard_task_data import WORDS, standard_task_repos  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ROWS = 3
"""Rows per split of every served dataset: every task scores all of them (the presets cap
at 1000 or not at all)."""


@pytest.fixture(scope="session")
def hub():
    """The stand-in hub serving a tiny dataset for each task of the evaluation presets."""
    standin = HubStandin()
    for repo in standard_task_repos(rows=ROWS):
        standin.add(repo)
    standin.start()
    yield standin
    standin.stop()


def hub_env(hub: HubStandin | None, hf_home: Path, **extra: str) -> dict[str, str]:
    """The environment of a subprocess: online against `hub` (None: no hub at all, offline
    flags left to the caller), its caches in `hf_home`, nothing of the user's cache."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
                        "HF_HUB_CACHE", "HF_DATASETS_CACHE", "HF_ENDPOINT", "REPRO_HUB_MIRROR")}
    env |= {"HF_HOME": str(hf_home), "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
            "PYTHONPATH": str(REPO),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    if hub is not None:
        env["HF_ENDPOINT"] = hub.url
    return env | extra


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("checkpoint"))


def make_checkpoint(folder: Path) -> Path:
    """A tiny random SmolLM3 with a byte-level BPE tokenizer trained on the datasets' words
    (special tokens as the tokenizer stage makes them), trained at 64 tokens."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, SmolLM3Config, SmolLM3ForCausalLM

    text = [" ".join(WORDS) + " Question: Answer: Q: A: . ? _"] * 4
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(text, trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", pad_token="<|pad|>")
    torch.manual_seed(0)
    config = SmolLM3Config(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                           max_position_embeddings=128, tie_word_embeddings=True,
                           pad_token_id=1, bos_token_id=0, eos_token_id=0)
    SmolLM3ForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 1, "tokens_seen": 64,
                                                           "seq_len": 64}))
    return folder


def evaluate_config(presets: list[str], tasks: list[str] = ()) -> dict:
    """An evaluate stage's params section: the presets and tasks, no local task, nothing
    cached."""
    return {"experiment": "hub", "checkpoints": ["final"], "seed": 0,
            "evaluation": {"presets": presets, "tasks": list(tasks), "batch_size": 16,
                           "cache_requests": False}}


# The evaluate stage's own `run`, in a process of its own (the Hugging Face libraries read
# their endpoint and cache settings once, at import): what `repro stage evaluate` calls,
# minus the CLI's forced offline mode, so that lm-eval downloads through the stand-in.
_RUN_ONLINE = """
import json, sys
from pathlib import Path
from repro.stages import evaluate
from repro.stages.base import StageIO
from repro.stages.configs import EvaluateConfig
cfg = EvaluateConfig.model_validate(json.loads(sys.argv[1]))
out = Path(sys.argv[3])
evaluate.run(cfg, StageIO("evaluate-hub", {"checkpoint:final": Path(sys.argv[2])},
                          {"results:final": out / "results", "metrics:final": out / "metrics.json"}))
"""


def run_evaluate_online(hub: HubStandin, checkpoint: Path, work: Path,
                        presets: list[str]) -> Path:
    """Score `checkpoint` on `presets` with the datasets downloaded from `hub`; returns the
    folder of the outputs (results/, metrics.json)."""
    out = work / "out"
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_ONLINE, json.dumps(evaluate_config(presets)),
         str(checkpoint), str(out)],
        env=hub_env(hub, work / "hf_home"), cwd=work, text=True, capture_output=True,
        timeout=900)
    assert proc.returncode == 0, f"evaluate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return out


@pytest.fixture(scope="session")
def online_early_signal(hub, checkpoint, tmp_path_factory) -> Path:
    """The `fineweb_early_signal` preset scored with its datasets from the stand-in hub."""
    return run_evaluate_online(hub, checkpoint, tmp_path_factory.mktemp("online"),
                               ["fineweb_early_signal"])
