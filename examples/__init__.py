"""Workloads other than the ResNet, trained by the same toolkit (see the README's "Your own training")."""
