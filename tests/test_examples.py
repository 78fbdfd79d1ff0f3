"""docs/extending.md quotes examples/ exactly, and each example trains through the CLI."""

import pytest
import torch
from paths import EXPERIMENTS, ROOT

from lbt_lightning.estimators import DensityEstimator
from lbt_lightning.lightning.cli import main

EXAMPLES = ROOT / "examples"
FILES = ["custom_estimator.py", "custom_estimator.yaml", "custom_method.py", "custom_method.yaml"]


@pytest.fixture
def examples_importable(monkeypatch):
    """What ``PYTHONPATH=examples`` does for the documented command."""
    monkeypatch.syspath_prepend(str(EXAMPLES))


@pytest.mark.parametrize("name", FILES)
def test_docs_quote_the_example_verbatim(name):
    fence = "python" if name.endswith(".py") else "yaml"
    block = f"```{fence}\n{(EXAMPLES / name).read_text()}```"
    assert block in (ROOT / "docs/extending.md").read_text(), f"docs/extending.md must quote examples/{name}"


def test_readme_links_the_recipe():
    assert "docs/extending.md" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", ["custom_estimator", "custom_method"])
def test_example_trains_through_the_cli(name, examples_importable, tmp_cwd):
    cli = main(
        [
            "fit",
            "--config",
            str(EXPERIMENTS / "trainer.yaml"),
            "--config",
            str(EXPERIMENTS / "ring/lbt.yaml"),
            "--config",
            str(EXAMPLES / f"{name}.yaml"),
            "--trainer.max_steps=3",
            "--trainer.enable_progress_bar=false",
        ]
    )
    assert cli.model.global_step == 3
    assert type(cli.model).__module__ == "custom_method" or type(cli.model.estimator).__module__ == name
    assert torch.isfinite(cli.trainer.callback_metrics["train/teach_loss"])
    assert "val/modes" in cli.trainer.callback_metrics


def test_custom_estimator_meets_the_contract(examples_importable):
    from custom_estimator import KernelDensity

    estimator = KernelDensity(centres=5).double()
    assert isinstance(estimator, DensityEstimator)
    x = torch.randn(7, 2, dtype=torch.float64)
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=torch.zeros(5, dtype=torch.float64)),
        torch.distributions.Independent(torch.distributions.Normal(estimator.centres, 0.2), 1),
    )
    torch.testing.assert_close(estimator(x), mixture.log_prob(x))
    with pytest.raises(ValueError, match="centres"):
        KernelDensity(centres=0)


def test_hard_example_loss_with_quantile_one_is_the_lbt_loss(examples_importable):
    from custom_method import HardExampleLBT

    from lbt_lightning.estimators import GaussianMixture
    from lbt_lightning.methods import LBT
    from lbt_lightning.networks import MLPGenerator

    def build(cls, **kwargs):
        torch.manual_seed(0)
        return cls(MLPGenerator(z_dim=4, hidden=[8]), GaussianMixture(components=3), unroll_steps=2, **kwargs)

    real = torch.randn(16, 2)
    losses = []
    for model in (build(LBT), build(HardExampleLBT, quantile=1.0), build(HardExampleLBT, quantile=0.25)):
        torch.manual_seed(1)
        losses.append(model.teaching_loss(real))
    torch.testing.assert_close(losses[1], losses[0])
    assert losses[2] > losses[0]  # the worst-fit quarter has a lower likelihood than the average
    with pytest.raises(ValueError, match="quantile"):
        build(HardExampleLBT, quantile=0.0)


@pytest.mark.parametrize("compile_backend", [None, pytest.param("aot_eager", marks=pytest.mark.slow)])  # 12 s
def test_hard_example_loss_is_the_same_on_the_compiled_backend(compile_backend, examples_importable):
    """The example only overrides the hook, so the compiled unroll runs it too (and traces its
    criterion); ``None`` runs the compiled backend's torch.func code without compiling."""
    from custom_method import HardExampleLBT

    from lbt_lightning.estimators import GaussianMixture
    from lbt_lightning.networks import MLPGenerator
    from lbt_lightning.unroll.compiled import CompiledUnroll

    real, results = torch.randn(16, 2), []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = HardExampleLBT(MLPGenerator(z_dim=4, hidden=[8]), GaussianMixture(components=3), quantile=0.25)
        if compiled:  # what unroll_backend="compiled" builds, with a backend that compiles in seconds
            model.student.compiled = CompiledUnroll(
                model.student, compiled=compile_backend is not None, compile_backend=compile_backend or "inductor"
            )
        torch.manual_seed(1)
        loss = model.teaching_loss(real)
        results.append((loss, torch.autograd.grad(loss, list(model.generator.parameters()))))
    torch.testing.assert_close(results[1][0], results[0][0])
    for eager, compiled in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-6)
