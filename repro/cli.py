"""The `repro` command: one short function per verb; knobs live in specs, not flags."""

from __future__ import annotations

from repro.numerics import pin_numerics_env

# Before every other import: numpy (which repro.stages.base loads), its OpenBLAS, MKL and ATen
# each read their kernel switches once, when they load (repro/numerics.py). The imports below
# therefore follow a statement, on purpose.
pin_numerics_env()

import datetime
import importlib
import json
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path, PurePosixPath
from typing import NoReturn

import click
import yaml
from pydantic import ValidationError

from repro import paths, yamlio
from repro.environment import fingerprint, process_seconds
from repro.errors import ReproError, ReproErrors
from repro.hub import mirror as hub_mirror
from repro.launch import slurm as slurm_launch
from repro.spec.load import SPEC_SUFFIXES, SpecError, load_spec, validation_issues
from repro.spec.safety import redact_text
from repro.stages import UnknownStageKind
from repro.stages import kind as stage_kind
from repro.stages.base import (
    StageIO,
    atomic_write_text,
    remove_stale_temporaries,
    seed_everything,
    set_offline_env,
    write_json,
)
from repro.verify.lockfile import check_workspace_files, declared_outputs

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1

MAX_SHOWN_CHARS = 2000
"""Longest part of a rendered error (its file, field, message or fix): a message may quote
a user's value of megabytes."""


def _shown(text: str) -> str:
    text = redact_text(text)  # before cutting: a cut URL could lose the `@` of its password
    if len(text) <= MAX_SHOWN_CHARS:
        return text
    return f"{text[:MAX_SHOWN_CHARS]}... ({len(text) - MAX_SHOWN_CHARS} more characters)"


def render_error(error: ReproError, context: str = "") -> str:
    """The one rendering of a user's error, from its data: for each issue
    `file:line: field: message` (`error: field: message` when no file is known) and an
    indented `fix:` line; after several problems found together (ReproErrors), how many and
    what was not done. `context` prefixes each message (`stage <id>`). Each part passes
    through redact_text (a spec or params.yaml may hold a credential) and is cut to
    MAX_SHOWN_CHARS."""
    lines = []
    for issue in error.issues:
        message = f"{context}: {issue.message}" if context else issue.message
        if issue.file:
            where = f"{issue.file}:{issue.line}" if issue.line else issue.file
            head = f"{_shown(where)}: {_shown(issue.field or '<spec>')}"
        else:
            head = f"error: {_shown(issue.field)}" if issue.field else "error"
        lines.append(f"{head}: {_shown(message)}")
        if issue.fix:
            lines.append(f"    fix: {_shown(issue.fix)}")
    if isinstance(error, ReproErrors):
        lines.append(f"{len(error.issues)} problem(s); {error.outcome}.")
    return "\n".join(lines)


def _exit(error: ReproError, context: str = "") -> NoReturn:
    click.echo(render_error(error, context), err=True)
    sys.exit(error.exit_status)


def _spec_files(targets: tuple[str, ...]) -> list[Path]:
    """The spec files `targets` name: a file as given; a folder's *.yaml and *.yml files at
    any depth, sorted (hidden folders such as .git and .venv are skipped, symlinked folders
    not followed). A target that does not exist, or a folder holding no spec file, is
    refused (exit 2): checking nothing must not pass for success."""
    files: list[Path] = []
    issues: list[ReproError] = []
    for t in targets:
        p = Path(t)
        if p.is_dir():
            found: list[Path] = []
            for folder, subfolders, names in os.walk(p, onerror=lambda e: issues.append(
                    ReproError(f"cannot list the folder: "
                                f"{e.strerror or e}",
                               fix="check its permissions", file=str(e.filename or t)))):
                subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
                found.extend(Path(folder, n) for n in names if n.lower().endswith(SPEC_SUFFIXES))
            if not found:
                issues.append(ReproError("the folder holds no spec file "
                                          "(*.yaml or *.yml, in it or its subfolders)",
                                         fix="name the folder that holds the specs (e.g. specs/) "
                                          "or a spec file",
                                         file=t))
            files.extend(sorted(found))
        elif not os.path.lexists(p):
            issues.append(ReproError("file not found (nor a folder)",
                                     fix="check the path (relative paths start at the current "
                                      f"directory, {os.getcwd()!r})",
                                     file=t))
        else:
            files.append(p)  # load_spec refuses what is not a regular file, before reading
    if issues:
        raise SpecError(issues)
    return files


def _one_line(text: str) -> str:
    lines = [line.strip() for line in redact_text(text).splitlines() if line.strip()]
    return " / ".join(lines) if len(lines) <= 3 else " / ".join(lines[:3]) + " / ..."


def _log_internal_error(error: BaseException) -> str:
    """Write `error`'s traceback (credentials in URLs redacted) to a new log file; return
    where it went. Falls back to the temporary folder where the workspace is not writable."""
    text = redact_text("".join(traceback.format_exception(error)))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    for log in (Path(str(paths.error_log(stamp))),
                Path(tempfile.gettempdir()) / Path(str(paths.error_log(stamp))).name):
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(text, encoding="utf-8")
            return str(log)
        except OSError:
            continue
    return "(no writable folder for the log)"


LAZY_VERBS: dict[str, tuple[str, str]] = {
    "sweep": ("repro.sweep.cli", "sweep"),
    "fit": ("repro.scaling.command", "fit_cmd"),
}
"""Verbs defined in their own packages (module, attribute), imported when named or listed:
DVC starts `repro stage` once per stage, which should not pay for the sweep and ladder code.
The other verbs import what only they use inside their functions, for the same reason."""


class _Main(click.Group):
    """The `repro` group: no verb ends in a traceback.

    An error the user can fix (a ReproError, such as a spec problem; a file that cannot be
    read or written) is rendered by render_error, naming what is wrong and the fix, exit 2
    (or the error's own exit_status); anything else is a bug, printed as one line with the
    log file that holds its traceback, exit 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_VERBS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_VERBS:
            module, attr = LAZY_VERBS[cmd_name]
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort,
                SystemExit, KeyboardInterrupt):
            raise
        except ReproError as e:
            _exit(e)
        except OSError as e:
            if e.filename is None:  # not about a path the user named: treat as a bug
                raise _internal(e) from None
            where = _log_internal_error(e)
            _exit(ReproError(_one_line(f"{e.strerror or e}: {e.filename}"),
                             fix="check that the path exists and is readable/writable "
                                 f"(details in {where})"))
        except Exception as e:
            raise _internal(e) from None


def _internal(error: BaseException) -> SystemExit:
    where = _log_internal_error(error)
    click.echo(f"internal error: {_one_line(f'{type(error).__name__}: {error}')}; the traceback "
               f"is in {where}", err=True)
    return SystemExit(EXIT_INTERNAL)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="repro")
def main() -> None:
    """Declarative reproduction of LM pretraining experiments, compiled to DVC."""
    pin_numerics_env()  # again: an in-process caller (a test's CliRunner) may have changed os.environ


@main.command()
@click.argument("targets", nargs=-1, required=True)
def validate(targets: tuple[str, ...]) -> None:
    """Validate spec files (or folders of them: their *.yaml and *.yml files, recursively)."""
    issues: list[ReproError] = []
    files = _spec_files(targets)
    invalid = 0
    for path in files:
        try:
            spec = load_spec(path)
            click.echo(redact_text(f"ok  {path}  ({spec.name})"))
        except SpecError as e:
            issues.extend(e.issues)
            invalid += 1
    where = (f"under {targets[0]}" if len(targets) == 1 and Path(targets[0]).is_dir()
             else f"in {', '.join(targets)}")
    summary = f"checked {len(files)} spec file(s) {where}: "
    if issues:
        click.echo(redact_text(summary + f"{invalid} invalid"), err=True)
        raise SpecError(issues)
    click.echo(redact_text(summary + "all valid"))


@main.command("compile")
@click.option("--check", is_flag=True,
              help="Exit 1 if any pipeline's dvc.yaml or params files are stale; write nothing.")
@click.option("--specs", "specs_dir", default=str(paths.SPECS_DIR), show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder whose top-level *.yaml files are the default pipeline's experiments "
                   "(and whose examples/<name>/ folders are the example pipelines).")
@click.option("--root", default=".", type=click.Path(file_okay=False, path_type=Path),
              help="Where dvc.yaml and the params files (and examples/<name>/) are written.")
def compile_cmd(check: bool, specs_dir: Path, root: Path) -> None:
    """Compile specs into dvc.yaml + params.yaml (experiments) + params.data.yaml (data
    stages), and each example's into examples/<name>/ (byte-identical on re-run)."""
    from repro.compile import lockfile  # per verb: `repro stage` starts once per DVC stage
    from repro.compile.pipelines import compile_all, orphans  # the compiler: this verb only

    compiled = compile_all(specs_dir, root)
    targets = {root / str(rel): text for c in compiled for rel, text in c.texts().items()}
    orphaned = {root / str(rel): why for rel, why in orphans(compiled, root).items()}
    # per dvc.lock: its stages' id -> name (an entry under an id is renamed, not dropped)
    locks = {root / str(c.pipeline.dvc_lock): {s: c.graph.name(s) for s in c.stage_ids}
             for c in compiled}
    if check:
        stale = [str(p) for p, text in targets.items()
                 if not p.exists() or p.read_text(encoding="utf-8") != text]
        renamed = {p: n for p, names in locks.items() if (n := len(lockfile.renames(p, names)))}
        dead = {p: n for p, names in locks.items()
                if (n := len(lockfile.dead_entries(p, names.values())) - renamed.get(p, 0))}
        if stale or orphaned or dead or renamed:
            said = [f"stale: {', '.join(stale)}; run `repro compile`"] if stale else []
            said += [f"{p} records {n} stage(s) under their ids, the names before issue 22: "
                     "run `repro compile`, which renames them" for p, n in renamed.items()]
            said += [f"{p} records {n} stage(s) no dvc.yaml declares (DVC never removes "
                     "them, and rewrites them after every stage it runs): run `repro "
                     "compile`, which removes them" for p, n in dead.items()]
            said += [f"{p} is generated but {why}: run `repro compile`, which removes it"
                     for p, why in orphaned.items()]
            click.echo("\n".join(said), err=True)
            sys.exit(1)
        click.echo(f"{len(targets)} pipeline files are up to date "
                   f"({len(compiled)} pipeline(s): {', '.join(c.pipeline.label for c in compiled)})")
        return
    for path, text in targets.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
            click.echo(f"wrote {path}")
        else:
            click.echo(f"unchanged {path}")
    for lock, names in locks.items():
        if renamed := lockfile.rename(lock, names):
            click.echo(f"renamed {len(renamed)} entries of {lock} to the stages' names")
        if gone := lockfile.prune(lock, names.values()):
            click.echo(f"removed {len(gone)} entries of stages no longer declared from {lock}")
    for path, why in orphaned.items():  # generated by us (its header says so)
        path.unlink()
        lock = path.name == str(paths.DVC_YAML)
        click.echo(f"removed {path} ({why}" + ("; its dvc.lock, if any, is DVC's: remove it "
                                              "too)" if lock else ")"))


_STAGE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,199}$")


def _pairs(values: tuple[str, ...], flag: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for v in values:
        key, sep, path = v.partition("=")
        if not sep or not key or not path:
            raise click.BadParameter(f"expected KEY=PATH, got {v!r}", param_hint=flag)
        if key in out:
            raise click.BadParameter(f"{key!r} is given twice", param_hint=flag)
        out[key] = Path(path)
    return out


def _what(value: object) -> str:
    """A YAML value's kind in words (for "is a list, not a mapping")."""
    kinds = {bool: "true/false", int: "a number", float: "a number", str: "a string",
             list: "a list", type(None): "empty"}
    return kinds.get(type(value), type(value).__name__)


def _producer(path: Path) -> str | None:
    """The stage that makes `path`, as a `dvc repro` target: a stage of ./dvc.yaml or of an
    example pipeline's (examples/<name>/dvc.yaml:<stage>); None if none does."""
    pipelines = [Path(str(paths.DVC_YAML)),
                 *sorted(Path(str(paths.EXAMPLES_DIR)).glob(f"*/{paths.DVC_YAML}"))]
    for dvc_yaml in pipelines:
        try:
            stages = (yamlio.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {})["stages"]
            name = next((name for name, entry in stages.items()
                         if path.as_posix() in declared_outputs(entry)), None)
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
            continue
        if name is not None:
            return name if dvc_yaml == Path(str(paths.DVC_YAML)) else f"{dvc_yaml.as_posix()}:{name}"
    return None


def _check_io(io, kind: str) -> None:
    """Refuse, before anything is loaded, a missing input (naming the stage that makes it) and
    an output a stage may not replace: a stage replaces its outputs whole (atomic_dir), so an
    output must be a path inside the workspace, below it, as dvc.yaml declares them, and clear
    of the paths repro, DVC and git keep (repro.paths.reserved_clash, as the compiler checks:
    `--out docs=specs` would replace every spec)."""
    fix = "run the stage through `dvc repro` (its command in dvc.yaml)"
    for key, path in io.outputs.items():
        parts = path.parts
        if path.is_absolute() or ".." in parts or not parts or path.name in ("", "."):
            raise ReproError(f"stage {io.name}: --out {key}={path} is not a path inside the "
                             "workspace; a stage replaces its outputs whole, so only the "
                             "relative paths dvc.yaml declares are accepted", fix=fix)
        clash = paths.reserved_clash(path, kind)
        if clash is not None:
            raise ReproError(f"stage {io.name} would replace {path} (--out {key}) whole, "
                             f"{clash}; it would delete what it did not make", fix=fix)
    for key, path in io.inputs.items():
        if not path.exists():
            maker = _producer(path)
            raise ReproError(f"stage {io.name}: input {key} ({path}) does not exist"
                             + (f"; stage {maker} makes it" if maker else ""),
                             fix=f"`dvc repro {maker}`" if maker else
                             "run `dvc repro` for this stage, which builds its inputs first")


@main.command(hidden=False)
@click.argument("kind")
@click.argument("stage_id", metavar="NAME")
@click.option("--id", "content_id", default="", metavar="ID",
              help="The stage's id (`<kind>-<label>-<hash8>`), which names its state folders; "
                   "default: NAME.")
@click.option("--in", "inputs", multiple=True, metavar="KEY=PATH", help="Stage input.")
@click.option("--out", "outputs", multiple=True, metavar="KEY=PATH", help="Stage output.")
@click.option("--params", "params_file", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The params file holding the stage's section (an example pipeline's "
                   "stages name theirs).  [default: params.data.yaml for a data stage, "
                   "else params.yaml]")
def stage(kind: str, stage_id: str, content_id: str, inputs: tuple[str, ...],
          outputs: tuple[str, ...], params_file: Path | None) -> None:
    """Run one pipeline stage (called by the commands in dvc.yaml).

    Reads the stage's section of its params file (so `dvc exp run -S` overrides apply) and
    validates it with the same models as the spec.
    """
    try:
        declared = stage_kind(kind)
    except UnknownStageKind as e:
        raise click.BadParameter(str(e), param_hint="KIND") from None
    # the id (else the name) names folders the stage may replace or clear
    # (.repro/resume/<id>, its snapshots): only the compiler's forms, `<kind>-<label>` and
    # `<kind>-<label>-<hash>`, of lowercase letters, digits, `_`, `-`
    for value, hint in ((stage_id, "NAME"), (content_id, "--id")):
        if value and not _STAGE_ID.match(value):
            raise click.BadParameter(f"{redact_text(value)!r} is not a stage name or id "
                                     "(lowercase letters, digits, `_` and `-`, as in dvc.yaml)",
                                     param_hint=hint)
    if params_file is None:
        params_file = Path(str(declared.params_file))
    display = str(params_file)
    try:
        params = yamlio.safe_load(params_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SpecError([ReproError(f"cannot read params: {e}", fix="run `repro compile`",
                                    file=display)]) from None
    if not isinstance(params, dict):
        raise SpecError([ReproError(f"is {_what(params)}, not a mapping of stage names to their "
                                    "settings", fix="run `repro compile` to rewrite it",
                                    file=display)])
    if stage_id not in params:
        raise SpecError([ReproError("no such section", field=stage_id,
                                    fix=f"dvc.yaml and {display} disagree; run `repro compile`",
                                    file=display)])
    if not isinstance(params[stage_id], dict):
        raise SpecError([ReproError(f"is {_what(params[stage_id])}, not a mapping of settings",
                                    field=stage_id, fix="run `repro compile` to rewrite it, or "
                                    "fix the `-S` override that replaced the section",
                                    file=display)])
    model = declared.config
    try:
        # the workspace (where DVC runs the stage) confines local paths, as at compile time:
        # `dvc exp run -S` edits params.yaml after the spec was validated (repro.spec.safety)
        cfg = model.model_validate(params[stage_id], context={"workspace": Path.cwd()})
    except ValidationError as e:
        issues = validation_issues(e, params[stage_id], {}, display, model)
        raise SpecError([ReproError(i.message, fix=i.fix, file=i.file, line=i.line,
                                    field=f"{stage_id}.{i.field}" if i.field else stage_id)
                         for i in issues]) from None
    # StageIO.name is the id: it names the state a stage keeps outside DVC (resume folder,
    # data-order ledger, Slurm job folder), which a rerun with other settings must not pick
    # up, as one under the settings-free name would
    io = StageIO(content_id or stage_id, _pairs(inputs, "--in"), _pairs(outputs, "--out"))
    _check_io(io, kind)
    # a killed earlier run of this stage left temporaries next to its outputs (repro.stages.base)
    for out in io.outputs.values():
        remove_stale_temporaries(out)
    set_offline_env()
    # a hub mirror (`repro mirror`) named by REPRO_HUB_MIRROR is the cache read offline; set
    # here, not in the stages' code, since it changes where bytes are read, not what a stage does
    os.environ.update(hub_mirror.mirror_offline_env())
    seed_everything(getattr(cfg, "seed", 0))
    record = None  # where the outputs were computed: here, or on a Slurm job's node
    try:
        launcher = declared.launcher(cfg)
        if launcher is not None and launcher.kind == "slurm":  # the job runs `run` (repro.launch)
            record = slurm_launch.run_stage(kind, declared, cfg, io)  # the job's node's
        else:
            declared.run(cfg, io)
    except ReproError as e:  # what is wrong and the fix, said for this stage
        _exit(e, context=f"stage {stage_id}")
    if "env" in io.outputs:  # last, so a failed stage leaves no record of a run
        # `run`: measured, read by `repro status` (how long a pipeline's last build took)
        write_json(io.output("env"), {**(record if record is not None else fingerprint()),
                                      "run": {"wall_seconds": round(process_seconds(), 2)}})


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def explain(as_json: bool) -> None:
    """Why `dvc repro` would run each stage: changed settings (old → new), code, inputs."""
    from repro.explain import explain as run_explain  # per verb: `repro stage` starts once per DVC stage
    from repro.explain import render as render_explain  # with run_explain: this verb only

    check_workspace_files(Path("."))  # one error naming a malformed file, not a KeyError
    try:
        runs = run_explain(Path("."))
    except (OSError, RuntimeError) as e:  # DVC missing or failing: its own words
        raise ReproError(str(e), fix="check that `dvc status` runs in this workspace") from e
    if as_json:
        click.echo(json.dumps([{"stage": r.stage, "reasons": r.reasons, "upstream": r.upstream}
                               for r in runs], indent=2))
    else:
        click.echo(render_explain(runs), nl=False)


@main.command()
@click.argument("stages", nargs=-1)
@click.option("--rtol", default=1e-4, show_default=True, type=click.FloatRange(min=0),
              help="Relative tolerance, used only where the environments differ.")
@click.option("--atol", default=1e-6, show_default=True, type=click.FloatRange(min=0),
              help="Absolute tolerance, used only where the environments differ.")
@click.option("--out", "out_dir", default=str(paths.VERIFY_DIR), show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where certificate.md and certificate.json are written.")
@click.option("--scratch", type=click.Path(exists=False, path_type=Path), default=None,
              help="Rebuild in this (new) folder instead of a temporary one.")
@click.option("--keep", is_flag=True, help="Keep the scratch copy for inspection.")
def verify(stages: tuple[str, ...], rtol: float, atol: float, out_dir: Path,
           scratch: Path | None, keep: bool) -> None:
    """Rebuild the pipeline (or STAGES alone) in a scratch copy and certify its outputs
    against dvc.lock; exit 1 if any stage fails."""
    from repro.verify.certificate import render_text  # per verb: `repro stage` starts once per DVC stage
    from repro.verify.run import verify as run_verify  # imports torch: this verb only
    from repro.verify.tolerance import Tolerance  # with run_verify: this verb only

    # a ReproError (e.g. an existing --scratch) is reported by _Main: exit 2, redacted
    cert, where = run_verify(Path("."), list(stages), Tolerance(rtol, atol), scratch, keep)
    text = render_text(cert)
    click.echo(text)
    write_json(out_dir / "certificate.json", cert.as_json())
    atomic_write_text(out_dir / "certificate.md", text)
    click.echo(f"wrote {out_dir}/certificate.md and certificate.json"
               + (f"; scratch kept at {where}" if keep else ""))
    sys.exit(0 if cert.passed else 1)


@main.command()
@click.option("--params", "params_file", default=str(paths.PARAMS_YAML), show_default=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The pipeline whose train stages are probed (first AdamW and Muon phases).")
@click.option("--record", is_flag=True,
              help="Write this machine's hashes as the reference of its numerics class "
                   "(repro/probe/references.json; commit it).")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write every hash and the verdict here.")
@click.option("--vocab-size", type=click.IntRange(min=4), default=None,
              help="The model's vocabulary, where the tokenizer is a pretrained one.")
def probe(params_file: Path, record: bool, json_file: Path | None, vocab_size: int | None) -> None:
    """Run one training step on fixed inputs, hash every result (tokenizer, each module's
    output, the loss, each gradient, the AdamW and Muon steps, MTP, distillation) and compare
    with the reference of this machine's numerics class: names the first operation that
    differs. Exit 1 if one differs or the reference is stale, 0 on a match or a class without
    a reference."""
    import torch  # the probe's own verb: after pin_numerics_env (main)

    from repro.probe import reference  # imports torch and the train stage: this verb only
    from repro.probe.ops import run_probe  # with reference: this verb only
    from repro.probe.run import probe_settings  # with reference: this verb only
    from repro.train.determinism import setup_torch  # with reference: this verb only

    settings = probe_settings(params_file, vocab_size)
    setup_torch(1, torch.device("cpu"), deterministic=True)  # the train stage's thread count
    ops = run_probe(settings.adamw, settings.muon, settings.vocab_size)
    key = reference.class_key(reference.numerics_class())
    digest = reference.settings_digest(settings.as_dict())
    click.echo(f"probed {len(ops)} operations of {', '.join(settings.stages)} "
               f"({params_file}); numerics class {key}")
    if record:
        reference.record(ops, key, digest)
        click.echo(f"recorded as the reference of {key} in {reference.REFERENCE_FILE}")
        return
    verdict = reference.compare(ops, key, digest)
    click.echo(verdict.summary())
    if json_file is not None:
        write_json(json_file, {"class": reference.numerics_class(), "key": key,
                               "settings_sha256": digest, "hardware": reference.hardware(),
                               "verdict": verdict.status, "first_difference": verdict.first_difference,
                               "ops": [[op.name, op.digest, list(op.shape)] for op in ops]})
    sys.exit(1 if verdict.status in ("differs", "stale") else 0)


@main.command()
@click.argument("targets", nargs=-1, required=True)
@click.option("--mfu", default=0.40, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Assumed model FLOPs utilisation (PERF.md: SmolLM3 ~29%, nanochat ~50%).")
@click.option("--peak-tflops", default=989.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Accelerator peak TFLOP/s (H100 SXM bf16 dense: 989).")
@click.option("--json", "as_json", is_flag=True, help="Print the plans as JSON.")
def plan(targets: tuple[str, ...], mfu: float, peak_tflops: float, as_json: bool) -> None:
    """Estimate curation CPU-hours, training FLOPs, evaluation cost and disk of specs."""
    from repro.plan.build import plan_spec  # here: the cost model imports torch
    from repro.plan.render import render  # with plan_spec: only `repro plan` needs it

    specs, issues = [], []
    for path in _spec_files(targets):
        try:
            specs.append((str(path), load_spec(path)))
        except SpecError as e:
            issues.extend(e.issues)
    if issues:
        raise SpecError(issues)
    others = {s.name: s for _, s in specs}
    plans = [plan_spec(s, f, mfu=mfu, peak_tflops=peak_tflops, others=others) for f, s in specs]
    if as_json:
        click.echo(json.dumps({"mfu": mfu, "peak_tflops": peak_tflops,
                               "plans": [p.as_dict() for p in plans]}, indent=2))
    else:
        click.echo("\n\n".join(render(p) for p in plans))


@main.command()
@click.argument("site_dir", metavar="[DIR]", required=False,
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--reports", "reports_dir", default=str(paths.REPORTS_DIR), show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder holding the reports to publish (and, for --model, the scores).")
@click.option("--specs", "specs_dir", default=str(paths.SPECS_DIR), show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Specs folder whose experiment descriptions the pages show (its *.yaml and "
                   "examples/*/*.yaml).")
@click.option("--hub-repo", metavar="ORG/NAME", default=None,
              help="Upload to this Hugging Face repository (created if missing): the site to a "
                   "static Space, --model to a model repository, --dataset to a dataset "
                   "repository. Token: HF_TOKEN or `hf auth login`.")
@click.option("--model", "model", metavar="STAGE|PATH", default=None,
              help="Instead of the site: upload a train stage's checkpoint (or a checkpoint "
                   "folder) to --hub-repo, its model card stamped with the git revision and "
                   "the reports' final scores.")
@click.option("--dataset", "dataset", metavar="STAGE|PATH", default=None,
              help="Instead of the site: upload a curate stage's documents (or a folder) to "
                   "--hub-repo as a dataset repository.")
@click.option("--license", "license_id", metavar="ID", default=None,
              help="With --model/--dataset: the hub license id written into the card's front "
                   "matter (a spec does not choose one; the card says `unknown` until then).")
def publish(site_dir: Path | None, reports_dir: Path, specs_dir: Path, hub_repo: str | None,
            model: str | None, dataset: str | None, license_id: str | None) -> None:
    """Build a static site of every report and experiment into DIR (replaced atomically), or
    upload a model (--model) or a curated dataset (--dataset) to --hub-repo."""
    from repro.report.publish import INDEX, PublishError, build_site, push_to_hub  # per verb: `repro stage` starts once per DVC stage

    chosen = [n for n, v in (("DIR", site_dir), ("--model", model), ("--dataset", dataset)) if v]
    if len(chosen) != 1:
        raise PublishError(f"give one of DIR, --model or --dataset (got {', '.join(chosen) or 'none'})",
                           fix="`repro publish site/` for the site, `repro publish --model "
                               "<train stage> --hub-repo ORG/NAME` for a checkpoint")
    if model or dataset:
        from repro.report.hub import push_folder, resolve  # per verb: `repro stage` starts once per DVC stage

        kind = "model" if model else "dataset"
        if not hub_repo:
            raise PublishError(f"--{kind} uploads to the hub: it needs --hub-repo ORG/NAME")
        folder = resolve(model or dataset, kind)
        click.echo(f"pushed {folder.path} to "
                   f"{push_folder(folder, hub_repo, kind, reports_dir=reports_dir, license=license_id)}")
        return
    if license_id:
        raise PublishError("--license applies to --model and --dataset (the site has no license card)")
    # a ReproError (e.g. DIR is not a site repro published) is reported by _Main: exit 2
    site = build_site(reports_dir, site_dir, specs_dir)
    for note in site.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {site_dir}: {site.reports} report(s), {site.experiments} "
               f"experiment(s); open {site_dir / INDEX}")
    if hub_repo:
        click.echo(f"pushed to {push_to_hub(site_dir, hub_repo)}")


@main.command()
@click.argument("targets", nargs=-1, required=True, metavar="SPEC...")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
def mirror(targets: tuple[str, ...], folder: Path) -> None:
    """Fetch every hub asset the specs need (evaluation datasets, a hub tokenizer or teacher)
    into DIR, on a machine that reaches the hub. Offline, REPRO_HUB_MIRROR=DIR makes the
    stages read it."""
    specs = [load_spec(path) for path in _spec_files(targets)]  # a SpecError: exit 2
    assets = hub_mirror.hub_assets(specs)
    if not assets:
        click.echo(f"the spec(s) need nothing from the hub; {folder} left unchanged")
        return
    hub_mirror.check_online_env(folder)  # before any Hugging Face library reads its settings
    click.echo(f"mirroring {len(assets)} hub asset(s) into {folder}", err=True)
    hub_mirror.mirror(assets, folder, lambda line: click.echo(line, err=True))
    click.echo(f"wrote {folder}: {len(assets)} asset(s), listed in "
               f"{folder / hub_mirror.MANIFEST}; offline, run the pipeline with "
               f"{hub_mirror.MIRROR_ENV}={folder.resolve()}")


@main.command()
@click.argument("reports", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
def summary(reports: tuple[Path, ...]) -> None:
    """Where the report is, its headline comparison with intervals, what to try next
    (the end of `make quickstart`). REPORTS: report folders (default: the root pipeline's)."""
    from repro.summary import render as render_summary  # per verb: `repro stage` starts once per DVC stage

    dirs = [PurePosixPath(p.as_posix()) for p in reports] or None
    click.echo(render_summary(Path("."), dirs), nl=False)


@main.command()
@click.option("--no-dvc", is_flag=True, help="Skip `dvc status`: stages and last build times only.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(no_dvc: bool, as_json: bool) -> None:
    """Every pipeline (dvc.yaml, examples/*/dvc.yaml): stages, up to date vs to run, and how
    long its last build took."""
    from repro.status import as_json as status_json  # per verb: `repro stage` starts once per DVC stage
    from repro.status import collect as collect_status  # with as_json: this verb only
    from repro.status import render as render_status  # with as_json: this verb only

    pipelines = collect_status(Path("."), ask_dvc=not no_dvc)
    if as_json:
        click.echo(json.dumps(status_json(pipelines), indent=2))
    else:
        click.echo(render_status(pipelines), nl=False)


if __name__ == "__main__":
    main()
