"""The value-range contract: data modules state their range; a likelihood, metric or picture that
does not fit it is refused before training, naming both."""

from types import SimpleNamespace

import pytest
import torch
from trainers import quiet_trainer

from lbt_lightning.callbacks import ImageQuality, SampleGrid, SampleWriter, StackedMNISTModesCallback
from lbt_lightning.callbacks.fid import to_uint8
from lbt_lightning.data import GridDataModule, RingDataModule, StackedMNISTDataModule, SyntheticImages
from lbt_lightning.data.value_range import check_within
from lbt_lightning.estimators import VAE
from lbt_lightning.methods import LBT
from lbt_lightning.networks import MLPGenerator


def test_every_shipped_data_module_states_its_range():
    assert RingDataModule().value_range is None and GridDataModule().value_range is None
    assert StackedMNISTDataModule(root="x").value_range == (0.0, 1.0)
    assert SyntheticImages().value_range == (-1.0, 1.0)


def test_the_bernoulli_vae_has_a_support_the_gaussian_none():
    assert VAE(likelihood="bernoulli").support == (0.0, 1.0) and VAE().support is None


@pytest.mark.parametrize("data", [RingDataModule(batch_size=16), SyntheticImages(num_images=32, batch_size=8)])
def test_a_bernoulli_vae_on_data_outside_0_1_is_refused_before_training(data):
    shape = [2] if isinstance(data, RingDataModule) else list(data.data_shape)
    model = LBT(
        MLPGenerator(z_dim=4, hidden=[8]),  # the range is checked before the shapes
        VAE(data_shape=shape, latent_dim=2, hidden=[8], likelihood="bernoulli"),
        unroll_steps=1, estimator_steps=1,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"bernoulli|VAE") as info:
        quiet_trainer(2).fit(model, data)
    message = str(info.value)
    assert "[0, 1]" in message and ("whole real line" in message or "[-1, 1]" in message)
    assert model.global_step == 0


def test_a_data_module_without_a_range_is_named():
    with pytest.raises(ValueError, match="`value_range` on Custom"):
        check_within("the estimator", (0.0, 1.0), type("Custom", (), {})())
    check_within("the estimator", None, type("Custom", (), {})())  # no support: nothing to check


def test_stacked_mnist_modes_refuse_images_in_minus_1_1():
    with pytest.raises(ValueError, match=r"StackedMNISTModesCallback.*\[0, 1\].*\[-1, 1\]"):
        StackedMNISTModesCallback().setup(SimpleNamespace(datamodule=SyntheticImages()), None, "fit")


def test_fid_refuses_unbounded_data_and_reads_0_1_images_right():
    trainer = SimpleNamespace(datamodule=RingDataModule())
    with pytest.raises(ValueError, match=r"ImageQuality needs images in \[-1, 1\] or \[0, 1\]"):
        ImageQuality().setup(trainer, None, "fit")
    images = torch.tensor([0.0, 0.5, 1.0])
    assert to_uint8(images, (0.0, 1.0)).tolist() == [0, 128, 255]
    assert to_uint8(images * 2 - 1, (-1.0, 1.0)).tolist() == [0, 128, 255]
    with pytest.raises(ValueError, match="value_range"):
        to_uint8(images, (0.0, 2.0))


def test_pictures_take_the_data_range_never_a_guess():
    smnist = SimpleNamespace(datamodule=SimpleNamespace(value_range=(0.0, 1.0)))
    assert SampleWriter()._range(smnist) == (0.0, 1.0)
    assert SampleWriter(value_range=(-1.0, 1.0))._range(smnist) == (-1.0, 1.0)
    with pytest.raises(ValueError, match="SampleWriter"):
        SampleWriter()._range(SimpleNamespace(datamodule=RingDataModule()))
    assert SampleGrid().value_range is None
