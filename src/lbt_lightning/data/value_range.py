"""The value-range contract between data, estimators and metrics.

Each DataModule states ``value_range``: ``(low, high)`` for data confined to an interval (images:
``(-1, 1)``, Stacked MNIST: ``(0, 1)``), or None for data on the whole real line (the 2-D
mixtures). An estimator whose likelihood holds on an interval only states ``support`` (the
Bernoulli VAE: ``(0, 1)``; outside it the ELBO has no upper bound and training diverges
silently), and a metric that reads values in a fixed range asks for it. Both are checked
before training, by :func:`check_within`.
"""

UNBOUNDED = "the whole real line"


def describe(value_range: tuple[float, float] | None) -> str:
    return UNBOUNDED if value_range is None else f"[{value_range[0]:g}, {value_range[1]:g}]"


def data_value_range(datamodule, user: str) -> tuple[float, float] | None:
    """``datamodule.value_range`` as a float pair or None; raises naming ``user`` when the
    datamodule states none."""
    if not hasattr(datamodule, "value_range"):
        raise ValueError(
            f"{user} needs to know the data's value range: set `value_range` on {type(datamodule).__name__} "
            "to (low, high), or None for data on the whole real line"
        )
    value_range = datamodule.value_range
    return None if value_range is None else (float(value_range[0]), float(value_range[1]))


def check_within(user: str, support: tuple[float, float] | None, datamodule) -> None:
    """Refuse data whose value range is not inside ``support`` (None: any value), naming both.

    Example:
        >>> class Ring:
        ...     value_range = None
        >>> check_within("VAE(likelihood='bernoulli')", (0.0, 1.0), Ring())
        Traceback (most recent call last):
        ...
        ValueError: VAE(likelihood='bernoulli') needs data in [0, 1], but Ring's values lie on the whole real line ...
    """
    if support is None:
        return
    value_range = data_value_range(datamodule, user)
    if value_range is None or not support[0] <= value_range[0] <= value_range[1] <= support[1]:
        raise ValueError(
            f"{user} needs data in {describe(support)}, but {type(datamodule).__name__}'s values lie on "
            f"{describe(value_range)} (value_range); use data in that range or another likelihood/metric"
        )
