"""Reads a local task's data for lm-eval, from the folder this file sits in.

The evaltasks stage copies this file, byte for byte, next to each task's YAML and
`data.jsonl`, and the YAML names it as its dataset (`custom_dataset: !function
task_loader.load`). Why not `dataset_path: json` with `dataset_kwargs.data_files`, as
lm-eval's guide suggests for local data: `datasets.load_dataset` resolves a relative
`data_files` path against the working directory, not the YAML, so a YAML holding one only
works from one folder, and an absolute path only on one machine. lm-eval resolves a
`!function` module relative to the YAML that names it (lm_eval.utils.import_function:
`yaml_path.parent / "<module>.py"`), so this file finds the data wherever the task folder
is: the repository root, a clone after `dvc pull`, a copy on another machine.

Self-contained on purpose (json, hashlib, pathlib and `datasets`, which lm-eval needs
anyway): it runs inside `lm_eval` where repro may not be installed.
"""

import hashlib
import json
from pathlib import Path


def load(data_file="data.jsonl", data_sha256=None, **_):
    """The task's documents as a DatasetDict with one split, `test`.

    lm-eval calls this with the task's metadata and `dataset_kwargs` as keyword arguments
    (`custom_dataset(**metadata, **dataset_kwargs)`); the CLI's model arguments reach the
    metadata too, hence `**_`. `data_sha256` (from the task manifest) guards against a data
    file that no longer matches its task. Rows are read in file order, so document indices
    (`doc_id`) are the file's line numbers, as with the json loader. No datasets cache is
    written: the rows are built in memory."""
    import datasets  # lm-eval's own dependency; imported here so repro can read this module cheaply

    path = Path(__file__).resolve().with_name(data_file)
    data = path.read_bytes()
    if data_sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != data_sha256:
            raise ValueError(f"{path} does not match its task (sha256 {digest} != "
                             f"{data_sha256}); rebuild the task (`dvc repro`) or `dvc pull` it")
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
