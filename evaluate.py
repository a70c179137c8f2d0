"""Evaluate a checkpoint: `python evaluate.py ckpt_path=outputs/.../checkpoints/best.ckpt`."""

from emnist_lightning.cli.evaluate import main

if __name__ == "__main__":
    main()
