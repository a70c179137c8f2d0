"""Pictures of the data, the models and their predictions: the numbers (`analysis`), the figures
(`plots`), the test report (`test_report`) and the callbacks that draw them during a run."""
