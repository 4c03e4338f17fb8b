"""The training loop of ``maxformer train``: epochs, checkpoints, the run folder, torchrun.

:func:`models.app.training.trainer.train` runs a :class:`models.app.config.TrainConfig`.
"""
