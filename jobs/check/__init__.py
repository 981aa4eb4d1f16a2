"""The resume self-check of a workload: does its state_dict() hold everything that decides its future?"""
