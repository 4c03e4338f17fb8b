"""The command-line application: the ``maxformer`` commands, the training loop, recipes,
datasets and the errors a user can cause. The library (neurons, layers, zoo, checkpoints,
spike storage, energy measurement) never imports it.
"""
