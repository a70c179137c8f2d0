"""Evaluate a checkpoint: `python eval.py ckpt_path=outputs/.../checkpoints/best.ckpt`."""

from emnist_lightning.evaluate import main

if __name__ == "__main__":
    main()
