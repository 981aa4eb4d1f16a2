"""Data that resumes: a DataLoader whose epochs start at any batch, in the same order, with the same random
augmentation, whatever its workers."""
