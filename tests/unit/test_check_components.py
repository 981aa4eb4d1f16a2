"""The resume check's pieces (jobs.check): where it resumes, what it compares, which difference it names first."""
from types import SimpleNamespace

import torch

from jobs.check.components import components, first_difference
from jobs.check.resume_check import resume_points


def test_it_resumes_at_an_epoch_end_and_inside_a_later_epoch_after_the_first_trace():
    def points(spe):
        return resume_points(SimpleNamespace(steps_per_epoch=spe, total_steps=100 * spe))
    assert points(1) == [1]  # no step inside an epoch of one step
    assert points(2) == [2, 5] and points(3) == [3, 5] and points(8) == [8, 12]  # all after step spe + 2


def test_the_parts_of_a_task_are_found_in_its_attributes_and_their_containers():
    model = torch.nn.Linear(2, 1)
    task = SimpleNamespace(model=model, optimizers=[torch.optim.SGD(model.parameters(), lr=0.1)], step=3,
                           _cache=7, last_loss=0.5, generators={"noise": torch.Generator().manual_seed(1)})
    found = components(task)
    assert {name: kind for name, (kind, _) in found.items()} == {
        "the global RNGs": "the global RNGs", "task.model": "a model", "task.optimizers[0]": "an optimizer",
        "task.step": "a counter", "task.generators['noise']": "a generator"}  # no cache, no float
    task.generators["noise"].manual_seed(2)
    task.step = 4
    assert first_difference(found, components(task)) == ("task.generators['noise']", "a generator")  # causes first
