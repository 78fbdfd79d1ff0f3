"""Learning by Teaching (LBT) for PyTorch Lightning."""
