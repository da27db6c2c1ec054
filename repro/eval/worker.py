"""Entry point of one evaluation process under `accelerate launch`:
`python -m repro.eval.worker PAYLOAD`.

PAYLOAD is a JSON file holding the evaluate stage's config (as in params.yaml) and its
input and output paths (repro.eval.launch.write_payload). Every process validates the
config with the same pydantic model and runs the stage; rank 0 writes the outputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from repro.numerics import pin_numerics_env

pin_numerics_env()  # before torch is imported below

from repro.stages.base import StageIO  # noqa: E402
from repro.stages.configs import EvaluateConfig  # noqa: E402


def main(argv: list[str]) -> int:
    payload = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    cfg = EvaluateConfig.model_validate(payload["config"])
    io = StageIO(payload["name"], {k: Path(v) for k, v in payload["inputs"].items()},
                 {k: Path(v) for k, v in payload["outputs"].items()})
    from repro.stages import evaluate

    evaluate.run(cfg, io)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
