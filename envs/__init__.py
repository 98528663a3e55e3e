"""The memory gridworlds, registered with gymnasium when `envs` is imported.

`gymnasium.make(id, **task_kwargs)` gives the reference env (numpy, minigrid);
`gymnasium.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point", device=...,
**task_kwargs)` gives its natively batched torch twin. Rules and parameters: envs/README.md.
"""

from gymnasium.envs.registration import register

register(
    id="Corridor-v0",
    entry_point="envs.corridor:CorridorEnv",
    vector_entry_point="envs.corridor_batched:BatchedCorridorEnv",
)
register(
    id="Portal-v0",
    entry_point="envs.portal:PortalEnv",
    vector_entry_point="envs.portal_batched:BatchedPortalEnv",
)
register(
    id="Instruction-v0",
    entry_point="envs.instruction:InstructionEnv",
    vector_entry_point="envs.instruction_batched:BatchedInstructionEnv",
)

TASK_IDS = ("Corridor-v0", "Portal-v0", "Instruction-v0")
