"""Differentiable Newton simulation: ``SolverFeatherstone`` under a Warp tape, as a torch op.

:class:`DifferentiableSimulator` steps ``N`` replicated robots from a state ``(joint_q,
joint_qd)`` and generalised forces ``joint_f`` given as torch tensors, and returns the next state
as torch tensors that carry an autograd graph: ``backward`` runs Warp's tape of that step, so
torch chains many steps (and a policy between them) into one exact gradient.

Each recorded step owns its own buffers (one ``State`` per substep, one solver per substep, a
control and a tape): Featherstone keeps its mass-matrix factorisation on the solver and scratch
data on the output state, so sharing them between the substeps of a tape gives silently wrong
gradients. Buffers come from a pool and go back to it once their step's backward has run; a step
whose graph is dropped without a backward just lets its buffers be garbage-collected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from torchrl_flowmbpo.envs.locomotion.simulator import out_of_range, write_worlds

__all__ = ["DifferentiableSimulator"]


@dataclass
class _StepBuffers:
    """The Warp objects one recorded step writes: reused only after its backward ran."""

    states: list[Any]
    solvers: list[Any]
    control: Any
    tape: Any = None
    generation: int = 0


class _FeatherstoneStep(torch.autograd.Function):
    """``(q, qd, f) -> (q', qd')`` through one simulator step; backward through its tape."""

    @staticmethod
    def forward(ctx, joint_q, joint_qd, joint_f, sim):
        record = any(ctx.needs_input_grad[:3])
        buffers = sim._acquire()
        next_q, next_qd = sim._advance(buffers, joint_q, joint_qd, joint_f, record=record)
        if record:
            ctx.sim, ctx.buffers, ctx.generation = sim, buffers, buffers.generation
            # Worlds that left the finite range get no gradient: their adjoints are not numbers.
            ctx.valid = torch.isfinite(next_q).all(-1) & torch.isfinite(next_qd).all(-1)
        else:
            sim._release(buffers)
        return next_q, next_qd

    @staticmethod
    def backward(ctx, grad_q, grad_qd):
        sim, buffers = ctx.sim, ctx.buffers
        if buffers.generation != ctx.generation or buffers.tape is None:
            raise RuntimeError(
                "DifferentiableSimulator: this step's buffers were released before its backward "
                "(backward through the same step twice is not supported)."
            )
        grads = sim._backward(buffers, grad_q, grad_qd)
        sim._release(buffers)
        valid = ctx.valid.unsqueeze(-1)
        return (*(torch.where(valid, g, torch.zeros_like(g)) for g in grads), None)


class DifferentiableSimulator:
    """``num_worlds`` copies of a robot stepped by ``SolverFeatherstone`` with exact gradients.

    :meth:`step` maps torch tensors ``(joint_q [N, nq], joint_qd [N, nqd], joint_f [N, nqd])`` to
    the state ``sim_substeps * sim_dt`` seconds later, differentiably (Warp's tape inside a
    ``torch.autograd.Function``). Without gradients (``torch.no_grad`` or inputs that do not
    require them) nothing is recorded.

    The simulator also keeps a current state (``joint_q``, ``joint_qd``, ``joint_f``, as the
    MuJoCo-backed :class:`~torchrl_flowmbpo.envs.locomotion.simulator.NewtonSimulator` does) for
    code that steps it in place: :meth:`simulate`, :meth:`reset_worlds`, :meth:`invalid_worlds`.

    No contacts are simulated (``collide`` is never called): this covers robots that touch
    nothing, such as the cartpole.

    Args:
        add_robot: callable that adds one robot (and its default joint angles) to a
            ``newton.ModelBuilder``.
        num_worlds: number of replicated worlds.

    Keyword Args:
        device: torch / Warp device of the model.
        sim_dt: physics time step in seconds.
        sim_substeps: physics steps per env step.

    Examples:
        >>> from torchrl_flowmbpo.envs.locomotion.cartpole import CartPoleEnv
        >>> sim = DifferentiableSimulator(CartPoleEnv._add_robot, 2)
        >>> f = torch.zeros(2, 2, requires_grad=True)
        >>> q, qd = sim.step(sim.default_q, sim.default_qd, f)
        >>> qd[:, 0].sum().backward()  # d(cart velocity) / d(force): dt / mass-like, > 0
        >>> bool((f.grad[:, 0] > 0).all())
        True
    """

    def __init__(
        self,
        add_robot: Callable[[Any], None],
        num_worlds: int,
        *,
        device: str | torch.device = "cpu",
        sim_dt: float = 1.0 / 240.0,
        sim_substeps: int = 4,
    ) -> None:
        if sim_substeps < 1:
            raise ValueError(f"sim_substeps must be >= 1, got {sim_substeps}.")
        import newton
        import warp as wp

        self.num_worlds = int(num_worlds)
        self.device = torch.device(device)
        self.sim_dt, self.sim_substeps = float(sim_dt), int(sim_substeps)
        self._wp_device = str(self.device) if self.device.type == "cuda" else "cpu"
        robot = newton.ModelBuilder()
        add_robot(robot)
        scene = newton.ModelBuilder()
        scene.replicate(robot, self.num_worlds)
        self._pool: list[_StepBuffers] = []
        self._generation = 0
        log_level = wp.config.log_level
        wp.config.log_level = max(log_level, wp.LOG_WARNING)
        try:
            self.model = scene.finalize(device=self._wp_device, requires_grad=True)
            n = self.num_worlds
            # Detached: the model's arrays require grad, so their torch views would too.
            self.default_q = wp.to_torch(self.model.joint_q).detach().view(n, -1).clone()
            self.default_qd = wp.to_torch(self.model.joint_qd).detach().view(n, -1).clone()
            self.joint_q = self.default_q.clone()
            self.joint_qd = self.default_qd.clone()
            self.joint_f = torch.zeros_like(self.default_qd)
            self._warm_up()
        finally:
            wp.config.log_level = log_level

    def _warm_up(self) -> None:
        """One recorded step and its backward: loads (or compiles) every kernel now, quietly."""
        buffers = self._acquire()
        self._advance(buffers, self.joint_q, self.joint_qd, self.joint_f, record=True)
        self._backward(buffers, torch.zeros_like(self.joint_q), torch.zeros_like(self.joint_qd))
        self._release(buffers)

    @property
    def nq(self) -> int:
        """Joint coordinates per world."""
        return self.joint_q.shape[1]

    @property
    def nqd(self) -> int:
        """Joint velocities (DoFs) per world."""
        return self.joint_qd.shape[1]

    # ----------------------------------------------------------------- differentiable step
    def step(
        self, joint_q: torch.Tensor, joint_qd: torch.Tensor, joint_f: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The state one env step (``sim_substeps * sim_dt``) after ``(joint_q, joint_qd)``.

        Args:
            joint_q: ``[N, nq]`` joint coordinates.
            joint_qd: ``[N, nqd]`` joint velocities.
            joint_f: ``[N, nqd]`` generalised forces, held over the step.

        Returns:
            ``(joint_q, joint_qd)`` after the step, differentiable w.r.t. all three inputs.

        Raises:
            ValueError: when a shape is not the simulator's.
        """
        expected = {
            "joint_q": (joint_q, (self.num_worlds, self.nq)),
            "joint_qd": (joint_qd, (self.num_worlds, self.nqd)),
            "joint_f": (joint_f, (self.num_worlds, self.nqd)),
        }
        for name, (value, shape) in expected.items():
            if tuple(value.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}.")
        return _FeatherstoneStep.apply(joint_q, joint_qd, joint_f, self)

    def _acquire(self) -> _StepBuffers:
        import newton

        if self._pool:
            buffers = self._pool.pop()
        else:
            model = self.model
            buffers = _StepBuffers(
                states=[model.state() for _ in range(self.sim_substeps + 1)],
                solvers=[
                    newton.solvers.SolverFeatherstone(model, use_tile_gemm=True)
                    for _ in range(self.sim_substeps)
                ],
                control=model.control(),
            )
        self._generation += 1
        buffers.generation = self._generation
        return buffers

    def _release(self, buffers: _StepBuffers) -> None:
        if buffers.tape is not None:
            buffers.tape.zero()
            buffers.tape = None
        buffers.generation = 0
        self._pool.append(buffers)

    def _advance(
        self,
        buffers: _StepBuffers,
        joint_q: torch.Tensor,
        joint_qd: torch.Tensor,
        joint_f: torch.Tensor,
        *,
        record: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        import newton
        import warp as wp

        start = buffers.states[0]
        # Inputs are written outside the tape: an assignment recorded in it would cut the
        # gradient to the previous step.
        with torch.no_grad():
            wp.to_torch(start.joint_q).copy_(joint_q.reshape(-1))
            wp.to_torch(start.joint_qd).copy_(joint_qd.reshape(-1))
            wp.to_torch(buffers.control.joint_f).copy_(joint_f.reshape(-1))
        tape = wp.Tape() if record else None
        with tape if tape is not None else contextlib.nullcontext():
            newton.eval_fk(self.model, start.joint_q, start.joint_qd, start)
            for substep in range(self.sim_substeps):
                state_in, state_out = buffers.states[substep], buffers.states[substep + 1]
                state_in.clear_forces()
                buffers.solvers[substep].step(
                    state_in, state_out, buffers.control, None, self.sim_dt
                )
        buffers.tape = tape
        end = buffers.states[-1]
        n = self.num_worlds
        # Copies: the buffers are reused by later steps.
        return (
            wp.to_torch(end.joint_q).view(n, -1).clone(),
            wp.to_torch(end.joint_qd).view(n, -1).clone(),
        )

    def _backward(
        self, buffers: _StepBuffers, grad_q: torch.Tensor, grad_qd: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import warp as wp

        end, start = buffers.states[-1], buffers.states[0]
        seeds = {
            end.joint_q: wp.from_torch(grad_q.contiguous().reshape(-1)),
            end.joint_qd: wp.from_torch(grad_qd.contiguous().reshape(-1)),
        }
        buffers.tape.backward(grads=seeds)
        n = self.num_worlds
        # Copies before tape.zero(): on the CPU the torch views share the gradient memory.
        return (
            wp.to_torch(start.joint_q.grad).view(n, -1).clone(),
            wp.to_torch(start.joint_qd.grad).view(n, -1).clone(),
            wp.to_torch(buffers.control.joint_f.grad).view(n, -1).clone(),
        )

    # ----------------------------------------------------------------- in-place state
    @torch.no_grad()
    def simulate(self) -> None:
        """Advance the current state by one env step under the current ``joint_f``."""
        q, qd = self.step(self.joint_q, self.joint_qd, self.joint_f)
        self.joint_q.copy_(q)
        self.joint_qd.copy_(qd)

    def reset_worlds(
        self,
        mask: torch.Tensor,
        joint_q: torch.Tensor | None = None,
        joint_qd: torch.Tensor | None = None,
    ) -> None:
        """Write a new current state into the worlds selected by ``mask`` ``[N]``.

        Args:
            mask: ``[N]`` bool, the worlds to reset.
            joint_q: ``[N, nq]`` new coordinates (masked rows used); defaults to the initial pose.
            joint_qd: ``[N, nqd]`` new velocities (masked rows used); defaults to rest.
        """
        write_worlds(self, mask, joint_q, joint_qd)

    def invalid_worlds(self, limit: float = 1e6) -> torch.Tensor:
        """``[N]`` bool: worlds whose current state is non-finite or exceeds ``limit``."""
        return out_of_range(self.joint_q, self.joint_qd, limit)
