"""Programs run with ``python -m``: ``lbt_lightning.programs.demo`` (``make demo``) and
``lbt_lightning.programs.classifier`` (the Stacked MNIST digit classifier)."""
