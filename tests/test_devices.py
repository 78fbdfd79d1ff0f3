"""The paths that differ by device, on each device present (``device`` fixture): a training step of
every method on 2-D and image networks, sampling, the metrics, checkpoints moved across devices,
and mixed precision (bf16-mixed trains every method with the unrolls in float32)."""

import copy

import pytest
import torch
from test_methods import changed
from test_unroll import TinyGenerator, make_student
from trainers import quiet_trainer

from lbt_lightning.data import RingDataModule, SyntheticImages
from lbt_lightning.estimators import VAE
from lbt_lightning.methods import GAN, LBT, LBTGAN, UnrolledGAN
from lbt_lightning.methods.gan import d_loss
from lbt_lightning.metrics import ModeCoverage, StackedMNISTModes
from lbt_lightning.networks import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator

METHODS = {"gan": GAN, "lbt": LBT, "lbt_gan": LBTGAN, "unrolled_gan": UnrolledGAN}


def networks(kind: str) -> dict:
    """Tiny generator, estimator and discriminator: the ring's MLPs or 8x8 DCGANs (same layer types as CIFAR-10)."""
    if kind == "mlp":
        return {
            "generator": MLPGenerator(z_dim=8, hidden=[16]),
            "estimator": VAE(latent_dim=4, hidden=[16]),
            "discriminator": MLPDiscriminator(hidden=[16]),
        }
    return {
        "generator": DCGANGenerator(z_dim=8, image_size=8, width=8),
        "estimator": VAE(data_shape=[3, 8, 8], latent_dim=4, hidden=[16], output="tanh"),
        "discriminator": DCGANDiscriminator(image_size=8, width=4),
    }


def build(method: str, kind: str = "mlp", **kwargs):
    """``method`` on tiny ``kind`` networks, with K = 2 and one estimator block."""
    nets = networks(kind)
    if method in ("gan", "unrolled_gan"):
        del nets["estimator"]
    if method == "lbt":
        del nets["discriminator"]
    if method != "gan":
        kwargs.setdefault("unroll_steps", 2)
    if method in ("lbt", "lbt_gan"):
        kwargs.setdefault("estimator_steps", 1)
    return METHODS[method](**nets, **kwargs)


def data(kind: str):
    if kind == "mlp":
        return RingDataModule(batch_size=32)
    return SyntheticImages(image_size=8, num_images=16, batch_size=8, seed=0)


def fit(model, device: torch.device, kind: str = "mlp", iterations: int = 1, **kwargs):
    trainer = quiet_trainer(iterations, accelerator=device.type, devices=1, **kwargs)
    trainer.fit(model, data(kind))
    return trainer


def finite(module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in module.state_dict().values() if t.is_floating_point())


@pytest.mark.parametrize("kind", ["mlp", "dcgan"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_one_training_step(device, method, kind):
    model = build(method, kind)
    before = copy.deepcopy(model)
    fit(model, device, kind)
    assert model.device.type == device.type
    model.cpu()
    assert model.global_step == 1 and finite(model)
    assert changed(before.generator, model.generator)
    if hasattr(model, "student"):
        assert changed(before.estimator, model.estimator) and float(model.student.t) == 2


def test_sample_on_the_device_and_indexed_samples_match_the_cpu(device):
    model = build("gan").to(device)
    assert model.sample(5).shape == (5, 2) and model.sample(5).device.type == device.type
    indices = torch.arange(6)
    on_device = model.sample_indexed(indices)
    assert on_device.device.type == device.type
    torch.testing.assert_close(on_device.cpu(), model.cpu().sample_indexed(indices), rtol=1e-5, atol=1e-5)


def test_metrics_update_and_compute_on_the_device(device):
    centers, samples = torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.tensor([[0.05, 0.0], [2.0, 2.0], [0.9, 0.1]])
    labels = torch.tensor([[1, 2, 3], [1, 2, 3], [0, 0, 9]])
    for metric, batch in ((ModeCoverage(centers, sigma=0.1), samples), (StackedMNISTModes(), labels)):
        expected = copy.deepcopy(metric)
        expected.update(batch)
        metric = metric.to(device)
        metric.update(batch.to(device))
        for key, value in expected.compute().items():
            torch.testing.assert_close(metric.compute()[key].cpu(), value, msg=key)


def test_a_checkpoint_trained_on_the_device_loads_and_resumes_on_the_cpu(device, tmp_path):
    model = build("lbt_gan")
    trainer = fit(model, device)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    loaded = LBTGAN.load_from_checkpoint(tmp_path / "last.ckpt", map_location="cpu", **networks("mlp"))
    assert loaded.device.type == "cpu"
    for name, value in model.cpu().state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    resumed = build("lbt_gan")
    # the saved run trained one iteration: max_steps 2 is one more
    trainer = quiet_trainer(1, accelerator="cpu", max_epochs=-1, limit_train_batches=None, max_steps=2)
    trainer.fit(resumed, data("mlp"), ckpt_path=tmp_path / "last.ckpt")
    assert resumed.global_step == 2 and float(resumed.student.t) == 4 and finite(resumed)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_bf16_mixed_trains_every_method_with_float32_state(device, method):
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    model = build(method)
    before = copy.deepcopy(model)
    fit(model, device, precision="bf16-mixed", iterations=2)
    model.cpu()
    assert model.global_step == 2 and int(model.skipped_steps) == 0 and finite(model)
    assert changed(before.generator, model.generator)
    assert all(t.dtype in (torch.float32, torch.float64, torch.long) for t in model.state_dict().values())


def autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16)


def test_the_unrolls_run_in_float32_under_autocast(device):
    """Student.update, Student.teaching_loss and the Unrolled GAN's unrolled loss give under bf16
    autocast exactly what they give without it."""
    student, generator = make_student(steps=2).float().to(device), TinyGenerator().to(device)
    real = torch.randn(32, 2, device=device)
    results = []
    for context in (torch.autocast(device.type, enabled=False), autocast(device)):
        twin = copy.deepcopy(student)
        torch.manual_seed(3)
        fakes = [generator(torch.randn(16, 3, device=device)) for _ in range(4)]
        with context:
            e_loss, updated = twin.update([x.detach() for x in fakes])
            loss = twin.teaching_loss(fakes[:2], real)
        assert loss.dtype == torch.float32 and updated
        results.append([loss, e_loss, *twin.state_dict().values()])
    for expected, got in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)  # bfloat16 would be ~1e-2 off

    discriminator, fake = MLPDiscriminator(hidden=[5]).to(device), torch.randn(32, 2, device=device)
    model = UnrolledGAN(TinyGenerator(), discriminator, unroll_steps=2).to(device)
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=0.05, betas=(0.5, 0.999))
    for _ in range(2):  # a mid-training Adam state
        optimizer.zero_grad()
        d_loss(discriminator(real), discriminator(fake)).backward()
        optimizer.step()
    unrolled = model.unrolled_loss(real, fake, optimizer)
    with autocast(device):
        torch.testing.assert_close(model.unrolled_loss(real, fake, optimizer), unrolled, rtol=1e-6, atol=1e-6)


def test_an_unsupported_precision_is_refused_before_training_naming_the_method(device):
    # Lightning itself turns 16-mixed into bf16-mixed on the CPU
    precision = "16-mixed" if device.type == "cuda" else "bf16-true"
    model = build("lbt")
    with pytest.raises(ValueError, match=f"LBT: trainer.precision='{precision}' is not supported"):
        fit(model, device, precision=precision)
    assert model.global_step == 0 and float(model.student.t) == 0
