"""The scripted reference controllers: hand-computed targets, and they do what they claim."""

from __future__ import annotations

import torch

from torchrl_flowmbpo.diagnostics import real_rollout
from torchrl_flowmbpo.diagnostics.controllers import REFERENCE_CONTROLLERS, AntTrot, cartpole_pd
from torchrl_flowmbpo.envs import make_env


def test_trot_targets_by_hand():
    trot = AntTrot()
    # Step 0: hips at sin(0) or sin(pi) = 0; ankles at rest + side * sin(offset + pi/2), i.e.
    # +1 for the front-left/back-right pair (offset 0) and -1 for the other (offset pi).
    expected = torch.tensor([0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0])
    torch.testing.assert_close(trot.targets(0), expected, atol=1e-6, rtol=0)
    # A quarter period later (3 Hz, 1/60 s: 5 steps) the hips are at their extremes.
    hips = trot.targets(5)[0::2]
    torch.testing.assert_close(hips, torch.tensor([0.6, -0.6, 0.6, -0.6]), atol=1e-6, rtol=0)


def test_trot_is_a_pd_law_on_the_targets_and_counts_its_steps():
    trot = AntTrot()
    obs = torch.zeros(3, 37)
    obs[:, 11:19] = 0.1  # joint angles
    obs[:, 19:27] = 0.2  # 0.1 x joint velocities: 2 rad/s
    expected = (3.0 * (trot.targets(0) - 0.1) - 0.05 * 2.0).clamp(-1, 1).expand(3, 8)
    torch.testing.assert_close(trot(obs), expected)
    assert trot.step == 1
    torch.testing.assert_close(
        trot(obs), (3.0 * (trot.targets(1) - 0.1) - 0.1).clamp(-1, 1).expand(3, 8)
    )


def test_trot_moves_the_ant_forward():
    env = make_env("ant", num_envs=16, seed=5)
    trot = REFERENCE_CONTROLLERS["ant"]["trot"]()
    td = env.reset()
    alive = torch.ones(16, dtype=torch.bool)
    velocity, steps = torch.zeros(16), torch.zeros(16)
    for t in range(240):
        td["action"] = trot(td["observation"])
        td = env.step(td)
        if t >= 60:  # after landing and the first strides
            velocity += alive * td["observation"][:, 5]
            steps += alive
        alive &= ~td["next", "done"].squeeze(-1)
        td = td["next"]
    per_world = velocity / steps.clamp(min=1)
    # Measured 1.04 m/s mean, single worlds up to 4.8 m/s; standing still is ~0.
    assert velocity.sum() / steps.sum() > 0.5
    assert per_world.max() > 1.5


def test_cartpole_pd_by_hand():
    obs = torch.tensor([[0.0, 0.1, 0.995, 0.0, 0.0], [0.0, -0.1, 0.995, 0.0, 0.0]])
    force = cartpole_pd(obs)
    assert force[0, 0] < 0 < force[1, 0]
    torch.testing.assert_close(force[0, 0], torch.tensor(-4.0 * 0.1002), atol=1e-3, rtol=0)


def test_cartpole_pd_balancer_holds_the_pole_up():
    env = make_env("cartpole", num_envs=4, seed=3, start_angle=0.0)
    _, _, rewards = real_rollout(env, cartpole_pd, 240)
    # A whole episode: about -1.2 (docs/tasks.md); zero action earns about -400.
    assert -5.0 < float(rewards.sum(1).mean()) <= 0.0
