"""`up.py` (`python3 dev.py up`): the stack with the HTTP API comes up, serves, and stops
on SIGTERM with exit 0, no traceback and nothing left listening."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.dev_up import (
    data_dir,  # noqa: F401 - fixtures, used by name
    free_ports,
    listening,
)
from tests.support.factories import booking_data

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e


async def test_up_serves_the_api_and_stops_cleanly_on_sigterm(data_dir: Path) -> None:  # noqa: F811
    temporal, ui, codec, api, mllp, dev_http, dev_metrics = free_ports(7)
    env = {key: value for key, value in os.environ.items() if not key.startswith("MSR_")}
    env.update({
        "MSR_DATA_DIR": str(data_dir), "MSR_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal}",
        "MSR_UI_PORT": str(ui), "MSR_CODEC_SERVER_PORT": str(codec), "MSR_METRICS_PORT": "0",
        "MSR_API_PORT": str(api), "MSR_INTAKE_MLLP_PORT": str(mllp),
        "MSR_DEV_SERVER_HTTP_PORT": str(dev_http), "MSR_DEV_SERVER_METRICS_PORT": str(dev_metrics),
    })
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "up.py"), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert process.stdout is not None
    output: list[str] = []
    try:
        while not any(line.startswith("press Ctrl-C") for line in output):
            line = await asyncio.wait_for(process.stdout.readline(), timeout=120)
            assert line, "".join(output)
            output.append(line.decode())
        tokens = {line.split()[0]: line.split()[-1] for line in output
                  if "token (this run only)" in line}
        assert f"HTTP API:     http://127.0.0.1:{api}" in "".join(output)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api}", timeout=30) as http:
            data = booking_data()
            booked = await http.post("/sessions", json=data, headers={
                "Authorization": f"Bearer {tokens['scheduler']}"})
            assert booked.status_code == 201, booked.text
            cancelled = await http.post(f"/sessions/{data['session_id']}/cancel", headers={
                "Authorization": f"Bearer {tokens['scheduler']}"})
            assert cancelled.status_code == 200, cancelled.text
            console = await http.get("/console/sign-in")  # the console shares the port
            assert console.status_code == 200
            assert 'name="csrf_token"' in console.text
            fhir = await http.post("/fhir/Appointment", json={})  # mounted, and guarded
            assert fhir.status_code == 401, fhir.text
        # The MLLP listener answers a message it cannot process with an ACK, not silence.
        assert f"HL7 v2 MLLP: 127.0.0.1:{mllp}" in "".join(output)
        reader, writer = await asyncio.open_connection("127.0.0.1", mllp)
        writer.write(b"\x0bMSH|^~\\&|SCHED|CLINIC|MSR|PRACTICE|20261201090000||SIU^S99|M-1|P|2.5"
                     b"\r\x1c\r")
        await writer.drain()
        ack = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), timeout=30)
        writer.close()
        assert ack.startswith(b"\x0bMSH|"), ack
        assert b"MSA|A" in ack, ack  # AR or AE: refused with a reason
        assert b"|M-1" in ack, ack  # answering this message
        process.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = "".join(output) + rest.decode()
    assert process.returncode == 0, text
    assert "Traceback" not in text
    assert text.rstrip().endswith("stopped")
    for port in (temporal, ui, codec, api, mllp, dev_http, dev_metrics):
        assert not listening(port), port
