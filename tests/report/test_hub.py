"""`repro publish --model / --dataset`: a checkpoint or a curated dataset folder to a Hugging
Face repository, tested against a mock of huggingface_hub's HfApi (as the site's push is)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from unittest import mock

import pytest
from click.testing import CliRunner

from repro.cli import main
from repro.model.card import CardFacts, render, split
from repro.report.hub import Folder, push_folder, resolve, stage_outputs
from repro.report.publish import PublishError


def _site_fixtures():
    path = Path(__file__).with_name("report_site_fixtures.py")
    spec = importlib.util.spec_from_file_location("report_site_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stage_reports = _site_fixtures().stage_reports  # pytest fixture: reports the report stage wrote


def _row(stage_reports: Path) -> dict:
    summary = json.loads((stage_reports / "quick" / "summary.json").read_text())
    return summary["rows"][0]


def _model_folder(root: Path, experiment: str, step: int) -> Path:
    """A checkpoint export as a train stage writes it (files only; nothing here loads it)."""
    folder = root / "artifacts" / "checkpoints" / "train-a"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "smollm3"}')
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "tokenizer.json").write_text("{}")
    (folder / "trainer_state.json").write_text(json.dumps(
        {"experiment": experiment, "global_step": step, "tokens_seen": 1}))
    facts = CardFacts(stage_id="train-a", experiment=experiment, phase="decay",
                      architecture={"hidden_size": 32}, params_total=10, params_non_embedding=5,
                      mixture={"web": 1.0}, tokens_phase=4, tokens_total=8, global_step=step,
                      steps=1, seq_len=4, batch_tokens=4, optimizer={"kind": "adamw"},
                      schedule={"warmup_steps": 0}, seed=0, data_seed=0, precision="fp32",
                      state_path="../../train-state/train-a")
    (folder / "README.md").write_text(render(facts))
    return folder


def _uploaded(api: mock.Mock) -> dict[str, bytes | str]:
    """path in repo -> what the one commit uploads (bytes, or a local file's path)."""
    api.create_commit.assert_called_once()
    return {op.path_in_repo: op.path_or_fileobj
            for op in api.create_commit.call_args.kwargs["operations"]}


def test_a_model_goes_to_a_model_repository_in_one_commit_with_its_card_stamped(stage_reports, tmp_path):
    row = _row(stage_reports)
    folder = _model_folder(tmp_path, row["experiment"], row["step_end"])
    card_before = (folder / "README.md").read_bytes()
    api = mock.Mock()
    url = push_folder(Folder(folder, "train-a"), "org/tiny-lm", "model", reports_dir=stage_reports,
                      license="apache-2.0", root=tmp_path, api=api)
    assert url == "https://huggingface.co/org/tiny-lm"
    api.create_repo.assert_called_once_with("org/tiny-lm", repo_type="model", exist_ok=True)
    assert api.create_commit.call_args.kwargs["repo_type"] == "model"
    files = _uploaded(api)
    assert sorted(files) == ["README.md", "config.json", "model.safetensors", "tokenizer.json",
                             "trainer_state.json"]
    assert files["model.safetensors"] == str(folder / "model.safetensors")  # uploaded, not copied
    meta, body = split(files["README.md"].decode())
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "transformers"
    assert "## Publication" in body and "- stage: `train-a`" in body
    assert "git revision of the workspace: unknown (not a git checkout)" in body
    # the report's final scores for this checkpoint, with standard errors
    assert "### Final scores" in body and "| task | metric | value | stderr |" in body
    assert f"`{stage_reports / 'quick'}/summary.json`" in body
    assert (folder / "README.md").read_bytes() == card_before  # the stage's bytes stay as built


def test_scores_of_another_checkpoint_are_not_attributed_to_this_one(stage_reports, tmp_path):
    row = _row(stage_reports)
    folder = _model_folder(tmp_path, row["experiment"], row["step_end"] - 1)
    api = mock.Mock()
    push_folder(Folder(folder, None), "org/tiny-lm", "model", reports_dir=stage_reports,
                root=tmp_path, api=api)
    body = _uploaded(api)["README.md"].decode()
    assert "| task |" not in body and f"not this checkpoint (step {row['step_end'] - 1})" in body
    assert split(body)[0]["license"] == "unknown"  # no --license: the card's own


def test_a_folder_with_training_state_or_without_weights_is_refused(tmp_path):
    folder = _model_folder(tmp_path, "exp", 1)
    (folder / "optimizer.pt").write_bytes(b"state")
    with pytest.raises(PublishError, match="holds training state \\(optimizer.pt\\)"):
        push_folder(Folder(folder, None), "org/m", "model", api=mock.Mock())
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("x")
    with pytest.raises(PublishError, match="not a model folder"):
        push_folder(Folder(other, None), "org/m", "model", api=mock.Mock())
    with pytest.raises(PublishError, match="ORG/NAME"):
        push_folder(Folder(folder, None), "no-slash", "model", api=mock.Mock())


def test_a_dataset_goes_to_a_dataset_repository(tmp_path):
    folder = tmp_path / "curated"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "00000.jsonl").write_text('{"id": "a", "text": "t"}\n')
    (folder / ".partial").write_text("hidden: not uploaded")
    (folder / "README.md").write_text("# web\n\nCurated web documents.\n")
    api = mock.Mock()
    url = push_folder(Folder(folder, "curate-web"), "org/web", "dataset", root=tmp_path, api=api)
    assert url == "https://huggingface.co/datasets/org/web"
    api.create_repo.assert_called_once_with("org/web", repo_type="dataset", exist_ok=True)
    files = _uploaded(api)
    assert sorted(files) == ["README.md", "data/00000.jsonl"]
    card = files["README.md"].decode()
    assert card.startswith("# web\n") and "- stage: `curate-web`" in card  # no front matter added
    api.create_commit.side_effect = RuntimeError("403 Forbidden")
    with pytest.raises(PublishError, match="403 Forbidden.*write access"):
        push_folder(Folder(folder, None), "org/web", "dataset", api=api)


def _pipeline(root: Path) -> None:
    (root / "dvc.yaml").write_text(
        "stages:\n"
        "  train-a:\n"
        "    cmd: repro stage train train-a --in tokenizer=t --out checkpoint=artifacts/checkpoints/train-a\n"
        "      --out state=artifacts/train-state/train-a --out metrics=metrics/train-a.json\n"
        "  curate-web:\n"
        "    cmd: repro stage curate curate-web --in raw=r --out docs=data/curated/curate-web\n")


def test_stages_are_resolved_to_their_outputs(tmp_path):
    _pipeline(tmp_path)
    assert stage_outputs(tmp_path)["train-a"]["state"] == "artifacts/train-state/train-a"
    with pytest.raises(PublishError, match="not built here") as e:
        resolve("train-a", "model", tmp_path)
    assert "dvc repro train-a" in e.value.fix
    _model_folder(tmp_path, "exp", 1)
    assert resolve("train-a", "model", tmp_path) == Folder(
        tmp_path / "artifacts/checkpoints/train-a", "train-a")
    with pytest.raises(PublishError, match="has no docs output") as e:
        resolve("train-a", "dataset", tmp_path)
    assert "curate-web" in e.value.fix
    with pytest.raises(PublishError, match="neither a folder nor a stage") as e:
        resolve("train-b", "model", tmp_path)
    assert "train-a" in e.value.fix


def test_cli_publishes_a_model_by_stage_name(stage_reports, tmp_path, monkeypatch):
    import huggingface_hub

    _pipeline(tmp_path)
    row = _row(stage_reports)
    _model_folder(tmp_path, row["experiment"], row["step_end"])
    monkeypatch.chdir(tmp_path)
    api = mock.Mock()
    monkeypatch.setattr(huggingface_hub, "HfApi", mock.Mock(return_value=api))
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")
    result = CliRunner().invoke(main, ["publish", "--model", "train-a", "--hub-repo", "org/tiny-lm",
                                       "--reports", str(stage_reports), "--license", "mit"])
    assert result.exit_code == 0, result.output
    assert "pushed artifacts/checkpoints/train-a to https://huggingface.co/org/tiny-lm" in result.output
    assert split(_uploaded(api)["README.md"].decode())[0]["license"] == "mit"
    for args, message in ((["--model", "train-a"], "needs --hub-repo"),
                          (["site", "--model", "train-a", "--hub-repo", "o/n"], "give one of DIR"),
                          ([], "give one of DIR"),
                          (["site", "--license", "mit"], "--license applies to --model")):
        result = CliRunner().invoke(main, ["publish", *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)
