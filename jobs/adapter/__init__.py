"""A plain PyTorch training (model, optimizer, scheduler, loader, loss) as a workload, in a few lines."""
