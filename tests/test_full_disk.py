"""A full disk: calls are still answered and governed, nothing settled is lost, the daemon
stays up, and a control request that cannot be recorded gets a clear error."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ironrt.errors import IronrtError
from ironrt.tempdaemon import wait_until
from tests.fs import daemon_on, fill, small_filesystem


def test_full_disk_loses_no_settled_spend(tmp_path: Path) -> None:
    with small_filesystem("4m") as fs:
        d = daemon_on(fs)
        with d:
            token_file = tmp_path / "token"
            script = tmp_path / "hold.py"
            script.write_text(
                f"import os, time\nopen({str(token_file)!r}, 'w').write(os.environ['IC_TOKEN'])\ntime.sleep(60)\n"
            )
            agent_id = d.rt.start_agent(str(script), budget=1.0)
            ended = d.rt.start_agent(["true"], name="ended")
            d.rt.wait(ended, timeout=15)
            wait_until(lambda: token_file.exists() and token_file.read_text(), timeout=15)
            auth = {"authorization": f"Bearer {token_file.read_text()}"}
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 200}]}
            filler = fs / "filler"
            fill(filler)
            for _ in range(3):  # answered although nothing can be written
                r = httpx.post(f"{d.router_url}/v1/chat/completions", headers=auth, json=body)
                assert r.status_code == 200
            with pytest.raises(IronrtError, match="disk full"):
                d.rt.start_agent(str(script))
            # Changes a person asks for are refused whole (507): memory keeps what disk has.
            with pytest.raises(IronrtError, match="disk full") as refused:
                d.rt.update_agent(agent_id, budget_usd=2.0, rpm=7)
            assert refused.value.code == "storage_error"
            kept = d.rt.get_agent(agent_id)
            assert (kept.budget_usd, kept.rpm) == (1.0, None)
            assert d.rt.get_limits(f"agent:{agent_id}").budget_usd == 1.0
            with pytest.raises(IronrtError, match="disk full"):
                d.rt.remove_agent(ended)
            assert d.rt.get_agent(ended).name == "ended"  # still listed, as on disk
            assert d.rt.health().ok
            spent_in_memory = d.rt.get_agent(agent_id).spent_usd
            assert spent_in_memory > 0
            filler.unlink()
            r = httpx.post(f"{d.router_url}/v1/chat/completions", headers=auth, json=body)
            assert r.status_code == 200
            wait_until(lambda: d.rt.get_agent(agent_id).spent_usd > spent_in_memory, timeout=5)
            total = d.rt.get_agent(agent_id).spent_usd
            d.kill()  # a crash now: the total reached the disk with the last call
            d.start()
            assert d.rt.get_agent(agent_id).spent_usd == pytest.approx(total, abs=1e-12)
            assert d.rt.get_agent(agent_id).budget_usd == 1.0
            assert d.rt.get_agent(ended).name == "ended"
