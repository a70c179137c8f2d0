"""Assembling and running a training: the objects of a run (`build`), its bookkeeping callbacks
(`callbacks`), the callbacks that draw it (`pictures`), its HParams (`hparams`) and the run itself (`run`)."""
