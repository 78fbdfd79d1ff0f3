"""Lightning's CSVLogger with an optional ``save_dir``, which the CLI sets to ``trainer.default_root_dir``."""

from pytorch_lightning import loggers


class CSVLogger(loggers.CSVLogger):
    """:class:`pytorch_lightning.loggers.CSVLogger` whose ``save_dir`` may be left out of a config.

    Lightning's requires ``save_dir``, so a config that names the logger had to fix the folder and
    ``--trainer.default_root_dir`` was ignored. With this class the ``lightning``/``lbt`` CLI
    fills an unset ``save_dir`` (of any logger) with ``trainer.default_root_dir``; a ``save_dir``
    given in a config or on the command line wins.

    Arguments:
        save_dir: Folder of ``<name>/version_<n>/``; None only when the CLI fills it in.
        name, version, prefix, flush_logs_every_n_steps: As in Lightning's ``CSVLogger``.
    """

    def __init__(
        self,
        save_dir: str | None = None,
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ):
        if save_dir is None:
            raise ValueError(
                "CSVLogger: save_dir is None; give a folder (the lbt CLI sets it to trainer.default_root_dir)"
            )
        super().__init__(save_dir, name, version, prefix, flush_logs_every_n_steps)
