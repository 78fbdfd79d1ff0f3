"""Learning by Teaching (LBT) for PyTorch Lightning.

The folders are the architecture::

    estimators/  DensityEstimator (base.py), VAE, GaussianMixture, Flow: explicit densities p_φ(x)
    networks/    generators, discriminators, the digit classifier: plain nn.Modules
    unroll/      inner.py (LBT's inner problem top to bottom: the authors' Adam step, the K-step
                 unroll, the Student that holds the estimator with flat φ, m, v), compiled.py (the
                 same unroll under torch.func + torch.compile), twin_optimizer.py (a torch.optim
                 step as a function, for the Unrolled GAN)
    methods/     GenerativeModule (base.py: the fit's checks, length and logging, over
                 sampling.py, updates.py and checkpoint_state.py), GAN (gan.py, with the GAN
                 losses), LBT, LBTGAN (both teach a Student: teaching.py), UnrolledGAN: the
                 algorithms
    data/        LightningDataModules: ring and grid, Stacked MNIST, CIFAR-10, image folders; the
                 sample-index chunks of every evaluation (evaluation.py); the value-range contract
    metrics/     torchmetrics Metrics: 2-D mode coverage, Stacked MNIST modes
    callbacks/   thin: pl_module.sample_indexed(indices) -> metric or plot -> logger; checkpoints,
                 progress, the estimator's fit (estimator_fit.py), training under a CPU-time
                 budget (budget.py: the clock of the demo and the benchmarks)
    lightning/   the glue to Lightning: cli.py (``lightning``/``lbt``), errors.py (its one-line
                 errors), checkpoint_io.py, precision.py, optim.py, loggers.py
    programs/    ``python -m lbt_lightning.programs.demo`` (``make demo``) and
                 ``python -m lbt_lightning.programs.classifier`` (the Stacked MNIST classifier)
    trainer.yaml the default config every command reads first (experiments/trainer.yaml links here)
    __main__.py  ``python -m lbt_lightning``

Where this departs from DESIGN.md's layout, and why: the unroll has a folder of its own
(``unroll/``: the eager path, the compiled path beside it and the Unrolled GAN's twin optimizer);
``cli.py`` sits in ``lightning/`` with the other modules that exist only to fit Lightning
(``python -m lbt_lightning`` and the console scripts are unchanged); and the programs a user runs
are in ``programs/`` rather than beside the library modules. The
public import paths of configs and user code are those of the folders above:
``lbt_lightning.methods.LBTGAN``, ``lbt_lightning.estimators.VAE``, ``lbt_lightning.networks.*``,
``lbt_lightning.data.*``, ``lbt_lightning.callbacks.*``.
"""

import warnings

# Lightning's own pytree helper (pytorch_lightning.utilities._pytree, which every fit, validate,
# test and predict reaches through its CombinedLoader) builds torch's LeafSpec, which recent torch
# deprecates with a FutureWarning that no change here can remove; pytest filters it in setup.cfg.
warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated", category=FutureWarning)
