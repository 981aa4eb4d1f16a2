"""jobs/launch/elastic.py without processes: the derived seeds and the merged epoch sums."""
import torch

from jobs.checkpoint.rng import capture_rng
from jobs.launch.elastic import merged_window, rank_seed, rederived_rank_state


def saved(step: int = 12, world: int = 3) -> dict:
    torch.manual_seed(7)
    windows = [{"unit": "samples", "loss": 1.0 + r, "count": 10, "correct": 4.0 + r, "extra": {"norm": 2.0},
                "steps": 5, "lr": 0.1, "seconds": 3.0} for r in range(world)]
    return {"step": step, "loop": {}, "world_size": world,
            "ranks": [{"rng": capture_rng(), "window": w} for w in windows]}


class Reseeded:
    def reseed_rank(self, seed: int) -> None:
        self.seed = seed


def test_each_rank_gets_its_own_seed_and_the_same_one_every_time():
    state = saved()
    seeds = [rank_seed(state, r) for r in range(4)]
    assert len(set(seeds)) == 4 and seeds == [rank_seed(saved(), r) for r in range(4)]
    assert rank_seed(saved(step=13), 0) != seeds[0]  # another checkpoint, another seed
    first, task = rederived_rank_state(state, Reseeded(), 1, 2), Reseeded()
    again = rederived_rank_state(state, task, 1, 2)
    assert torch.equal(first["rng"]["torch"], again["rng"]["torch"]) and task.seed == seeds[1]
    assert not torch.equal(first["rng"]["torch"], rederived_rank_state(state, Reseeded(), 0, 2)["rng"]["torch"])


def test_the_epoch_sums_move_to_rank_0_and_their_totals_stay():
    windows = [r["window"] for r in saved()["ranks"]]
    new = [merged_window(windows, r, 2) for r in range(2)]
    assert sum(w["loss"] for w in new) == 6.0 and sum(w["count"] for w in new) == 30
    assert sum(w["correct"] for w in new) == 15.0
    # averaged over steps x ranks: 3 ranks' sums of 2.0 stand for 2 ranks' now
    assert new[0]["extra"] == {"norm": 4.0} and new[1]["extra"] == {"norm": 0.0}
    assert all(w["steps"] == 5 and w["seconds"] == 3.0 for w in new)
