"""Batched Newton simulator: N replicated robots stepped by one captured Warp graph.

The simulator exposes its state as zero-copy torch views of the Warp arrays, so the env reads
observations and writes torques and resets without copies or per-env Python loops.
``newton`` and ``warp`` are imported lazily, when a simulator is built.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from tensordict import TensorDict

__all__ = [
    "SOLVER_BUFFERS",
    "NewtonSimulator",
    "copy_state",
    "newton_asset",
    "out_of_range",
    "write_worlds",
]

#: MuJoCo-Warp's per-world buffers that persist between steps (the ones ``SolverMuJoCo.reset``
#: clears): the acceleration warm-start, which changes the next step's result in the last bits,
#: the actuator activations and controls, and the applied forces. Every other array of its data
#: is recomputed from ``qpos``/``qvel`` (pushed from ``joint_q``/``joint_qd``) at each step.
SOLVER_BUFFERS = ("qacc_warmstart", "act", "ctrl", "qfrc_applied", "xfrc_applied")


def out_of_range(joint_q: torch.Tensor, joint_qd: torch.Tensor, limit: float = 1e6) -> torch.Tensor:
    """``[N]`` bool: worlds whose state ``[N, nq]``, ``[N, nqd]`` is non-finite or exceeds
    ``limit`` in magnitude."""
    # NaN fails every comparison, so "not (|x| <= limit)" catches NaN, inf and huge values.
    ok_q = (joint_q.abs() <= limit).all(-1)
    ok_qd = (joint_qd.abs() <= limit).all(-1)
    return ~(ok_q & ok_qd)


def write_worlds(
    sim: Any,
    mask: torch.Tensor,
    joint_q: torch.Tensor | None = None,
    joint_qd: torch.Tensor | None = None,
) -> None:
    """Writes ``(joint_q, joint_qd)`` (default: the initial state) into the current state of
    the worlds selected by ``mask`` ``[N]`` of a simulator, and clears their applied forces."""
    q = sim.default_q if joint_q is None else joint_q
    qd = sim.default_qd if joint_qd is None else joint_qd
    m = mask.view(-1, 1)
    # torch.where over all rows: no host sync to find the indices, and writes in place (into
    # Warp memory, through the views, for the MuJoCo simulator).
    sim.joint_q.copy_(torch.where(m, q, sim.joint_q))
    sim.joint_qd.copy_(torch.where(m, qd, sim.joint_qd))
    sim.joint_f.masked_fill_(m, 0.0)


def copy_state(targets: Mapping[Any, torch.Tensor], state: Any, owner: str) -> None:
    """Copies ``state[key]`` into each ``targets[key]`` in place (a saved state put back).

    Raises:
        ValueError: a saved tensor does not have its target's shape (another task or
            ``num_envs``); ``owner`` names what is loaded.
    """
    for key, target in targets.items():
        value = state.get(key)
        if value.shape != target.shape:
            raise ValueError(
                f"{owner} state {key!r} has shape {tuple(value.shape)}, "
                f"expected {tuple(target.shape)} (another task or num_envs?)."
            )
        target.copy_(value)


def newton_asset(name: str) -> str:
    """Path of a robot asset shipped inside the installed ``newton`` wheel.

    Args:
        name: file name under ``newton/examples/assets`` (e.g. ``"nv_ant.xml"``).
    """
    import importlib.resources

    return str(importlib.resources.files("newton.examples") / "assets" / name)


class NewtonSimulator:
    """``num_worlds`` copies of one robot (on a ground plane), simulated by ``SolverMuJoCo``.

    One call to :meth:`simulate` advances every world by ``sim_substeps * sim_dt`` seconds by
    replaying a Warp graph captured at construction (on CPU too: it removes the Python launch
    overhead that otherwise dominates MuJoCo-Warp on CPU).

    Args:
        add_robot: callable that adds one robot (and its default joint angles) to a
            ``newton.ModelBuilder`` that already has the MuJoCo custom attributes registered.
            The robot may be floating (free root joint) or fixed to the world.
        num_worlds: number of replicated worlds.

    Keyword Args:
        device: torch / Warp device of the model (``"cpu"`` or ``"cuda:N"``).
        sim_dt: physics time step in seconds.
        sim_substeps: physics steps per :meth:`simulate` call. Must be even: the captured graph
            bakes in the double-buffer swap, and with an even count the result lands in the
            buffer that the torch views point to.
        njmax: constraint rows per world for MuJoCo-Warp (automatic sizing overflowed under
            random actions).
        nconmax: contacts per world for MuJoCo-Warp.
        capture: replay a captured Warp graph (``True``) or launch kernels eagerly.
        ground_plane: add a ground plane shared by all worlds (``False`` for fixed-base robots
            that never touch the ground, e.g. the cartpole).
        verbose: keep Warp's info messages (initialisation banner, one line per kernel module
            loaded or compiled) while building; by default only warnings are shown.

    Attributes:
        joint_q: ``[N, nq]`` view: root position, root quaternion (xyzw), joint angles (a
            fixed-base robot has no root coordinates: joint angles only).
        joint_qd: ``[N, nqd]`` view: root COM linear velocity and angular velocity (world
            frame), joint velocities (fixed base: joint velocities only).
        joint_f: ``[N, nqd]`` view of the generalised forces applied during :meth:`simulate`.
    """

    def __init__(
        self,
        add_robot: Callable[[Any], None],
        num_worlds: int,
        *,
        device: str | torch.device = "cpu",
        sim_dt: float = 1.0 / 240.0,
        sim_substeps: int = 4,
        njmax: int = 200,
        nconmax: int = 100,
        capture: bool = True,
        ground_plane: bool = True,
        verbose: bool = False,
    ) -> None:
        if sim_substeps < 2 or sim_substeps % 2:
            raise ValueError(f"sim_substeps must be a positive even number, got {sim_substeps}.")
        import warp as wp

        log_level = wp.config.log_level
        if not verbose:
            wp.config.log_level = max(log_level, wp.LOG_WARNING)
        try:
            self._build(
                add_robot,
                num_worlds,
                device,
                sim_dt,
                sim_substeps,
                njmax,
                nconmax,
                capture,
                ground_plane,
            )
        finally:
            wp.config.log_level = log_level

    def _build(
        self,
        add_robot: Callable[[Any], None],
        num_worlds: int,
        device: str | torch.device,
        sim_dt: float,
        sim_substeps: int,
        njmax: int,
        nconmax: int,
        capture: bool,
        ground_plane: bool,
    ) -> None:
        import newton
        import warp as wp

        self.num_worlds = int(num_worlds)
        self.device = torch.device(device)
        self.sim_dt = float(sim_dt)
        self.sim_substeps = int(sim_substeps)
        wp_device = str(self.device) if self.device.type == "cuda" else "cpu"

        robot = newton.ModelBuilder()
        newton.solvers.SolverMuJoCo.register_custom_attributes(robot)
        add_robot(robot)
        scene = newton.ModelBuilder()
        newton.solvers.SolverMuJoCo.register_custom_attributes(scene)
        scene.replicate(robot, self.num_worlds)
        if ground_plane:
            scene.add_ground_plane()
        self.model = scene.finalize(device=wp_device)
        self.solver = newton.solvers.SolverMuJoCo(self.model, njmax=njmax, nconmax=nconmax)
        self.state_0 = self.model.state()
        self.state_1 = self.model.state()
        self.control = self.model.control()

        n = self.num_worlds
        self.joint_q = wp.to_torch(self.state_0.joint_q).view(n, -1)
        self.joint_qd = wp.to_torch(self.state_0.joint_qd).view(n, -1)
        self.joint_f = wp.to_torch(self.control.joint_f).view(n, -1)
        self.default_q = self.joint_q.clone()
        self.default_qd = self.joint_qd.clone()
        # solver.reset takes one mask entry per world plus one for the global world (-1).
        self._mask = torch.zeros(n + 1, dtype=torch.bool, device=self.device)
        self._mask_wp = wp.from_torch(self._mask, dtype=wp.bool)

        self._wp_stream = wp.get_stream(wp_device) if self.device.type == "cuda" else None
        self._graph = None
        with self._on_warp_stream():
            self._run_substeps()  # eager run: compiles (or loads) the kernels before capture
            if capture:
                with wp.ScopedCapture(device=wp_device) as cap:
                    self._run_substeps()
                self._graph = cap.graph
        self.reset_worlds(torch.ones(n, dtype=torch.bool, device=self.device))

    @property
    def nq(self) -> int:
        """Joint coordinates per world."""
        return self.joint_q.shape[1]

    @property
    def nqd(self) -> int:
        """Joint velocities (DoFs) per world."""
        return self.joint_qd.shape[1]

    @contextlib.contextmanager
    def _on_warp_stream(self) -> Iterator[None]:
        """Order Warp work after pending torch work on the same data, and vice versa.

        On CUDA, torch and Warp may run on different streams; events make each wait for the
        other without a host sync. CPU work is synchronous, so nothing is needed there.
        """
        if self._wp_stream is None:
            yield
            return
        import warp as wp

        torch_stream = wp.stream_from_torch(self.device)
        self._wp_stream.wait_stream(torch_stream)
        yield
        torch_stream.wait_stream(self._wp_stream)

    def _run_substeps(self) -> None:
        s0, s1 = self.state_0, self.state_1
        for _ in range(self.sim_substeps):
            s0.clear_forces()
            self.solver.step(s0, s1, self.control, None, self.sim_dt)
            s0, s1 = s1, s0

    def simulate(self) -> None:
        """Advance every world by ``sim_substeps * sim_dt`` seconds under the ``joint_f`` set."""
        import warp as wp

        with self._on_warp_stream():
            if self._graph is None:
                self._run_substeps()
            else:
                wp.capture_launch(self._graph)

    def reset_worlds(
        self,
        mask: torch.Tensor,
        joint_q: torch.Tensor | None = None,
        joint_qd: torch.Tensor | None = None,
    ) -> None:
        """Write a new state into the worlds selected by ``mask`` and clear their solver state.

        Args:
            mask: ``[N]`` bool, the worlds to reset.
            joint_q: ``[N, nq]`` new coordinates (only the masked rows are used); defaults to
                the initial pose.
            joint_qd: ``[N, nqd]`` new velocities (only the masked rows are used); defaults to
                the initial velocities.
        """
        write_worlds(self, mask, joint_q, joint_qd)
        self._mask[:-1].copy_(mask.view(-1))
        # The solver otherwise warm-starts the reset worlds from their stale accelerations.
        with self._on_warp_stream():
            self.solver.reset(self.state_0, self._mask_wp, flags=0)

    def _solver_buffers(self) -> dict[str, torch.Tensor]:
        """Zero-copy ``[N, ...]`` views of :data:`SOLVER_BUFFERS`."""
        import warp as wp

        data = self.solver.mjw_data
        return {name: wp.to_torch(getattr(data, name)) for name in SOLVER_BUFFERS}

    def state(self) -> TensorDict:
        """A copy of everything the next :meth:`simulate` depends on, ``[num_worlds]``-shaped.

        ``joint_q``, ``joint_qd``, the applied forces ``joint_f`` and, under ``"solver"``,
        MuJoCo-Warp's buffers that persist between steps (:data:`SOLVER_BUFFERS`). Loading it
        into a simulator of the same model (:meth:`load_state`) makes its next steps
        bit-identical to this one's.

        Examples:
            >>> from torchrl_flowmbpo.envs.locomotion import CartPoleEnv
            >>> sim = CartPoleEnv(2, seed=0).sim
            >>> sorted(sim.state()["solver"].keys())
            ['act', 'ctrl', 'qacc_warmstart', 'qfrc_applied', 'xfrc_applied']
        """
        # Plain torch copies: every Warp launch makes the torch stream wait for it (see
        # _on_warp_stream), so the views are up to date here.
        solver = TensorDict(self._solver_buffers(), batch_size=[self.num_worlds]).clone()
        state = {"joint_q": self.joint_q, "joint_qd": self.joint_qd, "joint_f": self.joint_f}
        return TensorDict(state, batch_size=[self.num_worlds]).clone().set("solver", solver)

    def load_state(self, state: TensorDict) -> None:
        """Writes a :meth:`state` of a simulator of the same model into this one, in place.

        Raises:
            ValueError: a tensor of ``state`` does not have the shape of this simulator's.
        """
        targets = {"joint_q": self.joint_q, "joint_qd": self.joint_qd, "joint_f": self.joint_f}
        targets.update({("solver", k): v for k, v in self._solver_buffers().items()})
        copy_state(targets, state, "Simulator")

    def invalid_worlds(self, limit: float = 1e6) -> torch.Tensor:
        """``[N]`` bool: worlds whose state is non-finite or exceeds ``limit`` in magnitude."""
        return out_of_range(self.joint_q, self.joint_qd, limit)
