"""`python -m emnist_lightning.cli.demo ckpt_path=...` (or `emnist-demo`): a page to draw on, served on
http://127.0.0.1:8000 (conf/demo.yaml).

It shows, as you draw, the model's top characters with probability bars and the 28x28 image the model
sees, made by the same conversion as predict.py. Ctrl-C stops it.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from emnist_lightning.errors import ConfigError
from emnist_lightning.inference.models import open_predictor
from emnist_lightning.inference.server import make_server
from emnist_lightning.models.pretrained import resolve_models
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.task import run_entry_point

log = logging.getLogger(__name__)


def serve(cfg: DictConfig, context: RunContext) -> None:
    predictor = open_predictor(resolve_models(cfg.get("ckpt_path"), cfg.pretrained_dir), bool(cfg.trust_program))
    if str(cfg.demo.host) not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "demo.host=%s: the page and its predictions are open to other machines on the network, "
            "with no login; use demo.host=127.0.0.1 to keep it to this one",
            cfg.demo.host,
        )
    try:
        server = make_server(predictor, cfg.demo.host, int(cfg.demo.port), int(cfg.demo.top_k))
    except OSError as err:
        raise ConfigError(
            f"cannot serve on {cfg.demo.host}:{cfg.demo.port} ({err.strerror}); choose another demo.port"
        ) from err
    host, port = server.server_address[:2]
    print(f"Drawing page: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopped")
    finally:
        server.server_close()


def main() -> None:
    run_entry_point("demo", serve)


if __name__ == "__main__":
    main()
