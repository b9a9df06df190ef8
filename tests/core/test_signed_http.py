import bittensor as bt
import httpx
import pytest
from bittensor.sp_core import Keypair
from fastapi import Depends, FastAPI
from pydantic import BaseModel

from core.chain import LocalChain
from core.signed_http import SignedClient, require_registered_validator
from core.wallets import create_wallet

RECEIVER = Keypair.create_from_uri("//Trainer").ss58_address


class Job(BaseModel):
    job_id: str
    steps: int


@pytest.fixture
async def setup(tmp_path):
    chain = LocalChain.create(tmp_path / "chain.json", netuid=56)
    validator = create_wallet("owner", "validator", tmp_path / "wallets")
    miner = create_wallet("owner", "miner", tmp_path / "wallets")
    outsider = create_wallet("owner", "outsider", tmp_path / "wallets")
    cold = validator.coldkeypub.ss58_address
    await chain.register(validator.hotkey.ss58_address, cold, stake=100.0, validator_permit=True)
    await chain.register(miner.hotkey.ss58_address, cold)

    app = FastAPI()
    caller_dependency = require_registered_validator(chain, RECEIVER)

    @app.post("/v1/jobs")
    async def create_job(job: Job, caller: str = Depends(caller_dependency)) -> dict:
        return {"caller": caller, "job_id": job.job_id}

    @app.get("/v1/capacity")
    async def capacity(caller: str = Depends(caller_dependency)) -> dict:
        return {"caller": caller}

    transport = httpx.ASGITransport(app=app)
    return {"validator": validator, "miner": miner, "outsider": outsider, "transport": transport}


async def test_registered_validator_is_admitted(setup):
    async with SignedClient(setup["validator"], transport=setup["transport"]) as client:
        response = await client.post("http://trainer/v1/jobs", receiver_hotkey=RECEIVER, json=Job(job_id="j1", steps=3))
        assert response.status_code == 200, response.text
        assert response.json() == {"caller": setup["validator"].hotkey.ss58_address, "job_id": "j1"}
        response = await client.get("http://trainer/v1/capacity?verbose=1", receiver_hotkey=RECEIVER)
        assert response.status_code == 200, response.text


async def test_unsigned_replayed_and_tampered_requests_get_401(setup):
    async with httpx.AsyncClient(transport=setup["transport"], base_url="http://trainer") as raw:
        response = await raw.post("/v1/jobs", json={"job_id": "j1", "steps": 1})
        assert response.status_code == 401
        assert "X-Bittensor" in response.json()["detail"]

        body = b'{"job_id":"j1","steps":1}'
        headers = bt.http_auth.sign(
            setup["validator"], method="POST", path="/v1/jobs", body=body, receiver_ss58=RECEIVER
        )
        headers["Content-Type"] = "application/json"
        assert (await raw.post("/v1/jobs", content=body, headers=headers)).status_code == 200
        replayed = await raw.post("/v1/jobs", content=body, headers=headers)
        assert replayed.status_code == 401 and "already accepted" in replayed.json()["detail"]

        headers = bt.http_auth.sign(
            setup["validator"], method="POST", path="/v1/jobs", body=body, receiver_ss58=RECEIVER
        )
        headers["Content-Type"] = "application/json"
        tampered = await raw.post("/v1/jobs", content=body.replace(b"1}", b"9}"), headers=headers)
        assert tampered.status_code == 401 and "signature" in tampered.json()["detail"]

        # signed for another receiver
        headers = bt.http_auth.sign(
            setup["validator"], method="GET", path="/v1/capacity", receiver_ss58=setup["miner"].hotkey.ss58_address
        )
        assert (await raw.get("/v1/capacity", headers=headers)).status_code == 401

    # the query string is signed too
    headers = bt.http_auth.sign(setup["validator"], method="GET", path="/v1/capacity?a=1", receiver_ss58=RECEIVER)
    async with httpx.AsyncClient(transport=setup["transport"], base_url="http://trainer") as raw:
        assert (await raw.get("/v1/capacity?a=2", headers=headers)).status_code == 401


async def test_non_validators_get_403(setup):
    for name in ("miner", "outsider"):
        async with SignedClient(setup[name], transport=setup["transport"]) as client:
            response = await client.get("http://trainer/v1/capacity", receiver_hotkey=RECEIVER)
        assert response.status_code == 403
        hotkey = setup[name].hotkey.ss58_address
        assert response.json()["detail"] == f"hotkey {hotkey} is not a registered validator on netuid 56"
