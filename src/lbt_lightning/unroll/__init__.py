"""The unroll: LBT's differentiable inner optimization and the losses built on it.

``objectives`` holds the pure functions (GAN losses, the K-step unroll, the teaching loss);
``backends`` the interface and the eager (autograd) implementation, ``compiled`` the torch.func +
torch.compile one; ``teacher`` the estimator with its one persistent Adam state, which LBT and
LBT-GAN hold; ``twin_optimizer`` a ``torch.optim`` update rule as a differentiable function (the
Unrolled GAN's discriminator steps).
"""
