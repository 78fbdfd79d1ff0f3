"""The unroll: LBT's differentiable inner optimization.

``inner`` holds it top to bottom (the authors' Adam step, the K-step unroll, the ``Student`` that
holds the estimator and its optimizer state and runs its real update and the teaching loss);
``compiled`` runs the same functions under torch.func and torch.compile; ``twin_optimizer`` a
``torch.optim`` update rule as a differentiable function (the Unrolled GAN's discriminator steps).
"""
