"""The driver on a fake DVC: what it queues, skips, waits for, reruns and tells optuna."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.paths import sweep_state_dir
from repro.sweep.driver import Driver
from repro.sweep.errors import SweepInputError, SweepRunError
from repro.sweep.results import collect_results
from repro.sweep.strategies import OptunaSearch
from tests.sweep.toy import TOY_KEYS, TOY_OBJECTIVE, FakeDvc, make_plan, make_sweep, toy_value


STATE = str(sweep_state_dir("sw"))  # .repro/sweeps/sw: the driver keeps the sweep's state there


def _driver(dvc: FakeDvc, tmp_path, sweep=None, workers: int = 1) -> tuple[Driver, list[str]]:
    lines: list[str] = []
    return Driver(make_plan(sweep), dvc, tmp_path, workers, echo=lines.append,
                  poll_s=0, sleep=lambda s: None), lines


def _results(dvc: FakeDvc, sweep: str = "sw"):
    return collect_results(dvc.experiments(), sweep, TOY_KEYS, TOY_OBJECTIVE)


def test_a_grid_builds_the_baseline_then_queues_every_point_once(tmp_path):
    dvc = FakeDvc()
    driver, lines = _driver(dvc, tmp_path)
    driver.run()
    assert dvc.reproduced == [TOY_OBJECTIVE.stage_id]
    assert dvc.queued == ["sw-0", "sw-1", "sw-2", "sw-3"] and dvc.starts == 1
    results = _results(dvc)
    assert [(r.point, r.value) for r in results] == [
        ({"lr": lr, "wd": wd}, toy_value(lr, wd)) for lr in (0.001, 0.01) for wd in (0.0, 0.5)]
    assert any("4/4 finished" in line for line in lines)


def test_resume_skips_results_waits_for_queued_and_reruns_failed(tmp_path):
    dvc = FakeDvc()
    dvc.add("sw-0", "success", 0.001, 0.0, 1.0)
    dvc.add("sw-1", "failed", 0.001, 0.5)
    dvc.add("sw-2", "queued", 0.01, 0.0)       # left in DVC's queue by an interrupted run
    driver, _ = _driver(dvc, tmp_path)
    driver.run(resume=True)
    assert dvc.discarded == ["sw-1"]            # the failed queue entry, before its rerun
    assert dvc.queued == ["sw-1", "sw-3"]       # sw-0 has a result, sw-2 is already queued
    by_name = {r.name: r for r in _results(dvc)}
    assert by_name["sw-0"].value == 1.0         # kept, not recomputed
    assert all(r.status == "completed" for r in by_name.values()) and len(by_name) == 4


def test_a_failed_trial_is_recorded_with_its_log_not_raised(tmp_path):
    dvc = FakeDvc(fail_lrs=(0.01,))
    driver, lines = _driver(dvc, tmp_path)
    driver.run()
    failed = [r for r in _results(dvc) if r.status == "failed"]
    assert [r.name for r in failed] == ["sw-2", "sw-3"] and failed[0].error == "boom"
    assert any("sw-2" in line and "FAILED" in line and "diverged" in line for line in lines)


def test_an_existing_trial_with_other_values_is_an_error_not_a_mix(tmp_path):
    dvc = FakeDvc()
    dvc.add("sw-0", "success", 0.1, 0.0, 1.0)   # the grid changed since it ran
    driver, _ = _driver(dvc, tmp_path)
    with pytest.raises(SweepInputError, match="sweep block changed") as e:
        driver.run()
    assert "--restart" in e.value.issues[0].fix
    assert dvc.queued == []


def test_restart_discards_the_sweep_and_nothing_else(tmp_path):
    dvc = FakeDvc()
    dvc.add("sw-0", "success", 0.1, 0.0, 1.0)
    dvc.add("sw-1", "queued", 0.1, 0.0)
    dvc.add("other-0", "success", 0.1, 0.0, 1.0)
    (tmp_path / STATE).mkdir(parents=True)
    (tmp_path / STATE / "optuna.journal").write_text("old")
    (tmp_path / ".repro/sweeps/other").mkdir()  # another sweep's state
    driver, _ = _driver(dvc, tmp_path)
    driver.run(resume=False)
    assert dvc.discarded == ["sw-1", "sw-0"] and "other-0" in dvc.records
    assert not (tmp_path / STATE).exists() and (tmp_path / ".repro/sweeps/other").is_dir()
    assert dvc.queued == ["sw-0", "sw-1", "sw-2", "sw-3"]


def _recorded() -> FakeDvc:
    dvc = FakeDvc()
    dvc.add("sw-0", "success", 0.001, 0.0, 1.0)
    dvc.add("sw-1", "queued", 0.001, 0.5)
    return dvc


def _refused_restart(tmp_path, dvc: FakeDvc, error: type[Exception], match: str) -> None:
    """The restart is refused before it discards or removes anything, and runs nothing."""
    before = dict(dvc.records)
    driver, _ = _driver(dvc, tmp_path)
    with pytest.raises(error, match=match):
        driver.run(resume=False)
    assert dvc.discarded == [] and dvc.records == before
    assert dvc.reproduced == [] and dvc.queued == []


@pytest.mark.parametrize("linked", [STATE, ".repro/sweeps", ".repro"])
def test_restart_through_a_link_is_refused_before_anything_is_discarded(tmp_path, linked):
    """--restart removes the sweep's own folder under .repro/sweeps/; a link on the way
    there (rmtree would empty its target) is refused, and no experiment is discarded first."""
    target = tmp_path / "mine"  # what the link points at: it holds a sweep state folder
    sentinel = target / Path(STATE).relative_to(linked) / "sentinel.txt"
    sentinel.parent.mkdir(parents=True)
    sentinel.write_text("keep me")
    (tmp_path / linked).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / linked).symlink_to(target)
    _refused_restart(tmp_path, _recorded(), SweepInputError,
                     f"{tmp_path / linked} is a symbolic link.*nothing was discarded or removed")
    assert sentinel.read_text() == "keep me" and (tmp_path / linked).is_symlink()


def test_restart_over_a_file_in_the_state_folder_place_is_refused(tmp_path):
    (tmp_path / STATE).parent.mkdir(parents=True)
    (tmp_path / STATE).write_text("not a folder")
    _refused_restart(tmp_path, _recorded(), SweepInputError, "is not a folder")
    assert (tmp_path / STATE).read_text() == "not a folder"


def test_restart_with_a_running_trial_is_refused_before_anything_is_discarded(tmp_path):
    dvc = _recorded()
    dvc.add("sw-2", "running", 0.01, 0.0)
    (tmp_path / STATE).mkdir(parents=True)
    (tmp_path / STATE / "optuna.journal").write_text("old")
    _refused_restart(tmp_path, dvc, SweepRunError, r"sw-2 are running.*dvc queue kill")
    assert (tmp_path / STATE / "optuna.journal").read_text() == "old"


def test_a_trial_removed_from_the_queue_is_recorded_as_lost(tmp_path):
    class LosingDvc(FakeDvc):
        def start(self, workers):
            self.records.pop("sw-1")            # `dvc queue remove sw-1` behind our back
            super().start(workers)

    dvc = LosingDvc()
    driver, lines = _driver(dvc, tmp_path)
    driver.run()
    assert [r.name for r in _results(dvc)] == ["sw-0", "sw-2", "sw-3"]
    assert any("sw-1" in line and "left DVC's queue" in line for line in lines)


def test_a_running_trial_of_an_interrupted_sweep_is_waited_for(tmp_path):
    class SlowDvc(FakeDvc):
        polls = 0

        def in_flight(self):
            self.polls += 1
            if self.polls == 3:                 # sw-0 finishes while we wait
                self.add("sw-0", "success", 0.001, 0.0, 7.0)
            return super().in_flight()

    dvc = SlowDvc()
    dvc.add("sw-0", "running", 0.001, 0.0)
    driver, lines = _driver(dvc, tmp_path)
    driver.run()
    assert "sw-0" not in dvc.queued and dvc.queued == ["sw-1", "sw-2", "sw-3"]
    assert {r.name: r.value for r in _results(dvc)}["sw-0"] == 7.0


def _optuna(trials: int = 5):
    return make_sweep(strategy="optuna", trials=trials, parameters={
        "lr": {"keys": ["train-toy-*.optimizer.lr"], "values": [0.001, 0.003, 0.01, 0.03]},
        "wd": {"keys": ["train-toy-*.optimizer.weight_decay"], "values": [0.0, 0.5]}})


def test_optuna_runs_rounds_of_workers_and_tells_every_result(tmp_path):
    dvc = FakeDvc(fail_lrs=(0.03,))
    driver, _ = _driver(dvc, tmp_path, _optuna(), workers=2)
    driver.run()
    assert dvc.starts == 3                      # rounds of 2, 2, 1
    study = OptunaSearch(_optuna(), tmp_path / STATE).study
    assert len(study.trials) == 5
    for t in study.trials:
        record = dvc.records[t.user_attrs["dvc_experiment"]]
        if record.state == "failed":
            assert t.state.name == "FAIL"
        else:
            assert t.state.name == "COMPLETE"
            assert t.value == toy_value(t.params["lr"], t.params["wd"])


def test_optuna_resume_tells_finished_interrupted_trials_and_reruns_lost_ones(tmp_path):
    sweep = _optuna(trials=3)
    search = OptunaSearch(sweep, tmp_path / STATE)
    done, lost = search.ask(2)                  # the sweep stopped after asking these
    del search
    dvc = FakeDvc()
    dvc.add(done.name, "success", done.point["lr"], done.point["wd"], 0.25)
    driver, _ = _driver(dvc, tmp_path, sweep)
    driver.run()
    assert dvc.queued == [lost.name, "sw-2"]    # the lost one rerun under its name, then the rest
    study = OptunaSearch(sweep, tmp_path / STATE).study
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert study.trials[done.index].value == 0.25


def test_optuna_refuses_a_changed_search_with_a_fix(tmp_path):
    OptunaSearch(_optuna(), tmp_path / STATE).ask(1)
    driver, _ = _driver(FakeDvc(), tmp_path, _optuna().model_copy(update={"seed": 9}))
    with pytest.raises(SweepInputError, match="another search space") as e:
        driver.run()
    assert "--restart" in e.value.issues[0].fix


def test_a_failing_poll_is_retried_and_too_many_give_up(tmp_path):
    from repro.sweep.errors import SweepRunError

    class FlakyDvc(FakeDvc):
        def __init__(self, failures):
            super().__init__()
            self.failures = failures

        def in_flight(self):
            if self.starts and self.failures:   # only while waiting
                self.failures -= 1
                raise SweepRunError("`dvc queue status` failed (exit 255):\nUnable to acquire lock")
            return super().in_flight()

    dvc = FlakyDvc(failures=2)
    driver, lines = _driver(dvc, tmp_path)
    driver.run()
    assert len(_results(dvc)) == 4 and sum("polling again" in line for line in lines) == 2
    with pytest.raises(SweepRunError, match="acquire lock"):
        _driver(FlakyDvc(failures=99), tmp_path)[0].run()
