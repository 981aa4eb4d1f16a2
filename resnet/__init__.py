"""resnet: the CIFAR-10 ResNet workload (He et al. 2016) for the jobs toolkit."""
