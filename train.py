"""Train a model: `python train.py model=cnn optimizer=adam` (see conf/train.yaml)."""

from emnist_lightning.cli.train import main

if __name__ == "__main__":
    main()
