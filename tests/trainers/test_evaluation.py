"""evaluate_policy: counted episodes, and the mean forward velocity of their steps."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from torchrl.data import Categorical, Composite, Unbounded
from torchrl.envs import EnvBase, StepCounter, TransformedEnv

from torchrl_flowmbpo.trainers import evaluate_policy, find_forward_velocity_index


class ClockEnv(EnvBase):
    """Env ``i``'s ``k``-th episode lasts ``lengths[i][k]`` steps (its last length repeats).

    Observation ``(-1, t + 10 k, 1000)``, ``t`` the steps taken in the episode (0 after a
    reset); the reward is the pre-step ``observation[1]``, like the locomotion tasks' progress
    term.
    """

    forward_velocity_index = 1

    def __init__(self, lengths: list[list[int]]) -> None:
        n = len(lengths)
        super().__init__(batch_size=torch.Size([n]))
        self.lengths = lengths
        self.t = torch.zeros(n, dtype=torch.long)
        self.k = torch.zeros(n, dtype=torch.long)
        self.observation_spec = Composite(observation=Unbounded((n, 3)), shape=(n,))
        self.action_spec = Unbounded((n, 1))
        self.reward_spec = Unbounded((n, 1))
        flag = Categorical(2, (n, 1), dtype=torch.bool)
        self.done_spec = Composite(
            done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), shape=(n,)
        )

    def _obs(self) -> torch.Tensor:
        ones = torch.ones(self.batch_size)
        return torch.stack((-ones, (self.t + 10 * self.k).float(), 1000 * ones), -1)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        reward = self._obs()[:, 1:2]
        self.t += 1
        pairs = zip(self.lengths, self.k.tolist(), strict=True)
        done = self.t >= torch.tensor([ls[min(k, len(ls) - 1)] for ls, k in pairs])
        self.k += done.long()
        flags = done.unsqueeze(-1)
        return TensorDict(
            {
                "observation": self._obs(),
                "reward": reward,
                "done": flags,
                "terminated": flags.clone(),
                "truncated": torch.zeros_like(flags),
            },
            batch_size=self.batch_size,
        )

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        mask = None if tensordict is None else tensordict.get("_reset", None)
        mask = torch.ones(self.batch_size, dtype=torch.bool) if mask is None else mask
        self.t[mask.reshape(-1)] = 0
        false = torch.zeros(*self.batch_size, 1, dtype=torch.bool)
        return TensorDict(
            {"observation": self._obs(), "done": false, "terminated": false, "truncated": false},
            batch_size=self.batch_size,
        )

    def _set_seed(self, seed: int | None) -> None:
        pass


def zero_policy() -> TensorDictModule:
    return TensorDictModule(
        lambda obs: torch.zeros(*obs.shape[:-1], 1), in_keys=["observation"], out_keys=["action"]
    )


#: 3 episodes on 2 envs: each env counts ceil(3 / 2) = 2. Env 0 (2 then 1 step) finishes its
#: two at step 3 and runs 1-step episodes k = 2..5 (steps 4-7) that are not counted; env 1 (3 then
#: 4 steps) finishes at step 7.
LENGTHS = [[2, 1], [3, 4]]


def test_forward_velocity_is_the_step_weighted_mean_of_the_counted_episodes():
    stats = evaluate_policy(ClockEnv(LENGTHS), zero_policy(), episodes=3, forward_velocity_index=1)
    assert stats["episodes"] == 4
    assert stats["length_mean"] == 2.5  # (2 + 1 + 3 + 4) / 4
    # Pre-step observation[1] = t + 10 k over each counted episode's steps:
    # env 0: k=0 (0 + 1), k=1 (10); env 1: k=0 (0 + 1 + 2), k=1 (10 + 11 + 12 + 13).
    counted = (0 + 1) + 10 + (0 + 1 + 2) + (10 + 11 + 12 + 13)
    assert stats["forward_velocity"] == counted / 10 == 6.0
    # With env 0's uncounted episodes (20, 30, 40, 50) it would be 200 / 14; the reward is the
    # same pre-step component, so the return per step agrees.
    assert stats["return_per_step"] == 6.0
    # Returns (rewards = pre-step values), in the order the episodes ended.
    assert stats["return_mean"] == (1 + 10 + 3 + 46) / 4


def test_without_an_index_the_statistics_are_unchanged():
    plain = evaluate_policy(ClockEnv(LENGTHS), zero_policy(), episodes=3)
    tracked = evaluate_policy(
        ClockEnv(LENGTHS), zero_policy(), episodes=3, forward_velocity_index=1
    )
    assert "forward_velocity" not in plain
    assert {k: v for k, v in tracked.items() if k != "forward_velocity"} == plain


@pytest.mark.parametrize("index", [-1, 3, 37])
def test_bad_index_names_the_value_and_the_range(index):
    with pytest.raises(ValueError, match=rf"in \[0, 2\] .*got {index}\."):
        evaluate_policy(ClockEnv(LENGTHS), zero_policy(), episodes=3, forward_velocity_index=index)


def test_index_is_found_through_wrappers():
    env = ClockEnv(LENGTHS)
    assert find_forward_velocity_index(env) == 1
    assert find_forward_velocity_index(TransformedEnv(env, StepCounter())) == 1

    class NoVelocity(ClockEnv):
        forward_velocity_index = None

    assert find_forward_velocity_index(TransformedEnv(NoVelocity(LENGTHS), StepCounter())) is None
