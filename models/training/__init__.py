"""Training and evaluation of the model zoo: recipes, datasets, the train loop, torchrun.

``maxformer train`` / ``maxformer eval`` (``models/cli.py``) are the command-line front ends;
:func:`models.training.trainer.train` runs a :class:`models.training.config.TrainConfig`.
"""
