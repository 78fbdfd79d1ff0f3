"""What ties the methods to Lightning: the CLI, checkpoint files, precision, optimizers, loggers.

``cli`` is the ``lightning``/``lbt``/``python -m lbt_lightning`` command; ``checkpoint_io`` the
atomic checkpoint writer and the load errors that name the file; ``precision`` the Trainer
precisions the methods accept; ``optim`` the optimizers with the paper's defaults; ``loggers``
Lightning's CSVLogger with an optional ``save_dir``.
"""
