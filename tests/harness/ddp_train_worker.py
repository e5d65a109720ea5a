"""One rank of a test training run, launched by torchrun (``python -m torch.distributed.run ... ddp_train_worker.py
DUMP_DIR -- <python -m microcinema_core.train arguments>``).

It trains exactly as ``python -m microcinema_core.train`` does (the same parse_args, distributed.setup, Trainer),
then writes the module weights this rank holds to DUMP_DIR/rank<r>.safetensors, outside the run folder, so that a
test can check every rank ends with the same weights."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pack_import import core, sub  # noqa: E402


def main() -> int:
    dump, _, argv = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    import torch

    torch.set_num_threads(1)
    core()
    train, distributed, trainer_mod, checkpoint = (sub("train"), sub("training.distributed"), sub("training.trainer"),
                                                   sub("checkpoint"))
    cfg = train.parse_args(argv)
    dist = distributed.setup(cfg.device)
    try:
        trainer = trainer_mod.Trainer(cfg, dist)
        trainer.train()
        dump.mkdir(parents=True, exist_ok=True)
        checkpoint.write_safetensors_atomic({k: v.detach().contiguous() for k, v in trainer.module.state_dict().items()},
                                            str(dump / f"rank{dist.rank}.safetensors"), {"step": str(trainer.step)})
    finally:
        dist.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
