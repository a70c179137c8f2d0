"""Using a trained model: a user's images through EMNIST's conversion (`images`, `segment`), models from
checkpoints or exported files (`models`), predictions (`results`) and the drawing page (`server`, `static/`)."""
