"""Pictures of the data, the models and their predictions, from plain arrays and tables: the numbers
(`figure_data`), the figures (`plots`), where they go (`sink`), and the sets of figures of a dataset
(`dataset_figures`) and of a test pass (`evaluation_figures`). The callbacks that draw them during a run are
training/figure_callbacks.py."""
