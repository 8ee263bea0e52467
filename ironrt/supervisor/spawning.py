"""Creating one run of an agent: its environment, its log pipe, its gated process.

The process is created held at its gate (see `process`), so the caller can make its pid
durable before any of the agent's code runs; its resource limits (`rlimits`) are set while
it waits there. Its stdout and stderr are the write end of a pipe whose reader is the log
relay, an independent process: a daemon killed mid-write never breaks an agent's output.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import anyio

from ironrt.errors import StartFailed
from ironrt.protocol import Agent
from ironrt.supervisor import logfiles, process, rlimits
from ironrt.supervisor.envfiles import EnvFileError, read_env_files
from ironrt.supervisor.environment import agent_environment
from ironrt.supervisor.logrelay_client import LogRelay

log = logging.getLogger("ironrt.supervisor")


def is_python_agent(command: list[str]) -> bool:
    return command[0].endswith(("python", "python3")) or any(
        part.endswith(".py") for part in command[1:2]
    )


async def output_for(relay: LogRelay, logs_dir: Path, r: Agent) -> int:
    """A descriptor for the agent's stdout and stderr: the relay's pipe, or (when the relay
    cannot be reached) the log file itself, so an agent still starts, unrotated."""
    path = logfiles.log_path(logs_dir, r.id)
    # There from the start (the relay creates it on the first line): `logs` and a reader
    # of the file find an empty log, not a missing one, before the agent has written.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    try:
        return await relay.pipe_for(r.id, path, r.log_max_bytes, r.log_keep)
    except OSError as exc:
        log.error("log relay unavailable (%s): agent %s writes its log unrotated", exc, r.id)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)


async def spawn_run(
    relay: LogRelay, logs_dir: Path, r: Agent, base_env: dict[str, str], token: str, router: str
) -> process.Spawned:
    """One gated process for the agent, or StartFailed naming why the OS refused it."""
    try:  # read at every start: a rotated secret takes effect at the next restart
        from_files = await anyio.to_thread.run_sync(read_env_files, r.env_files)
    except EnvFileError as exc:
        raise StartFailed(str(exc), field="env_files") from None
    env = agent_environment(
        base_env,
        agent_id=r.id,
        token=token,
        router_url=router,
        overrides=from_files,
        python_agent=is_python_agent(r.command),
    )
    fd = await output_for(relay, logs_dir, r)
    try:
        spawned = process.spawn(r.command, cwd=r.cwd, env=env, log_fd=fd)
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.filename == r.cwd:
            raise StartFailed(f"cannot enter {r.cwd}: {exc.strerror}", field="cwd") from exc
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StartFailed(f"cannot start {r.command[0]}: {reason}", field="command") from exc
    finally:
        os.close(fd)
    try:
        rlimits.apply(spawned.pid, r)
    except StartFailed:
        # Never run without its limits: the gate closes and the shell exits unexecuted.
        process.close_gate(spawned)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(spawned.popen.wait if spawned.popen else int)
        raise
    return spawned
