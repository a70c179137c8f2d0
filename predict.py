"""Predict your own handwriting: `python predict.py ckpt_path=.../best.ckpt inputs=my_letters/`."""

from emnist_lightning.cli.predict import main

if __name__ == "__main__":
    main()
