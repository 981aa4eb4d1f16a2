"""Workloads other than the ResNet, trained by the same toolkit (docs/your-own-training.md)."""
