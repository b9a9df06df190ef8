"""The trainer host end to end: signed API, git checkout, child-process training, limits, publishing, restarts."""

from __future__ import annotations

import asyncio
import json
import textwrap

import httpx

from tests.trainer.conftest import HOST_URL
from tests.trainer.helpers import TEXT_DOCKERFILE, commit_files, live_processes_in_group, script_repo
from trainer.host.jobs import RECORD_FILE, RESTARTED, STOPPED
from trainer.reference_repo import write_reference_repo

# Checks its inputs like a real trainer would, then writes a small output (and what it saw) to the contract folder.
FAST_TRAINER = textwrap.dedent(
    """
    import json, os, pathlib, sys
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    cache = pathlib.Path(os.environ["GOD_CACHE_DIR"])
    rows = json.loads((cache / "datasets" / f"{args['--task-id']}_train_data.json").read_text())
    assert (cache / "models" / args["--model"].replace("/", "--") / "config.json").is_file()
    out = pathlib.Path(os.environ["GOD_CHECKPOINTS_DIR"]) / args["--task-id"] / args["--expected-repo-name"]
    out.mkdir(parents=True)
    marker = pathlib.Path("marker.txt")
    (out / "marker.txt").write_text(marker.read_text() if marker.exists() else "none")
    seen = {"rows": len(rows), "args": args, "offline": os.environ.get("HF_HUB_OFFLINE"),
            "secret": os.environ.get("TRAINER_TEST_SECRET")}
    (out / "seen.json").write_text(json.dumps(seen))
    print("training done", flush=True)
    """
)

FAILING_TRAINER = textwrap.dedent(
    """
    import sys
    print("loading the model", flush=True)
    print("Traceback (most recent call last):", file=sys.stderr)
    print("ValueError: learning rate must be positive", file=sys.stderr)
    sys.exit(1)
    """
)


def sleeping_trainer(pid_file) -> str:
    """A trainer that starts a child in its process group, records its pid, and sleeps far past any limit."""
    return textwrap.dedent(
        f"""
        import os, pathlib, subprocess, time
        subprocess.Popen(["sleep", "120"])
        pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))
        print("sleeping", flush=True)
        time.sleep(120)
        """
    )


async def wait_for_file(path, within: float = 30.0) -> str:
    for _ in range(int(within / 0.05)):
        if path.exists() and path.read_text():
            return path.read_text()
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} was never written")


async def test_reference_repo_trains_and_publishes_to_the_model_store(make_host, tmp_path):
    commit = await asyncio.to_thread(write_reference_repo, tmp_path / "reference", hyperparameters={"max_steps": 3})
    async with make_host() as host:
        body = host.job(f"file://{tmp_path / 'reference'}", commit)
        response = await host.post(body)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "queued"

        status = await host.wait_for(body["job_id"], within=180)

        assert status["status"] == "success", status
        assert status["output_repository"] == f"localnet/{body['expected_repo_name']}"
        assert status["error"] is None and status["started_at"] and status["finished_at"]
        assert any("trained 3 steps" in line for line in status["log_tail"])
        published = host.store.local_path(status["output_repository"])
        assert (published / "adapter_config.json").is_file()
        assert (published / "adapter_model.safetensors").is_file()
        job_dir = host.data_dir / "jobs" / body["job_id"]
        # The heavy work folders are gone; the record and the log stay.
        assert sorted(item.name for item in job_dir.iterdir()) == [RECORD_FILE, "training.log"]


async def test_posting_the_same_job_id_twice_starts_it_once(make_host, tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINER_TEST_SECRET", "do-not-leak")
    commit = script_repo(tmp_path / "repo", FAST_TRAINER)
    async with make_host() as host:
        body = host.job(f"file://{tmp_path / 'repo'}", commit)
        first, second = await asyncio.gather(host.post(body), host.post(body))
        assert first.status_code == second.status_code == 200
        assert first.json()["created_at"] == second.json()["created_at"]
        status = await host.wait_for(body["job_id"])
        again = await host.post(body)

        assert status["status"] == "success", status
        assert again.json()["status"] == "success"
        assert host.jobs.pipelines_started == 1
        seen = json.loads((host.store.local_path(status["output_repository"]) / "seen.json").read_text())
        assert seen["rows"] == 40 and seen["offline"] == "1"
        assert seen["secret"] is None  # the host's environment does not reach the training run
        assert seen["args"]["--task-id"] == body["task_id"]
        assert json.loads(seen["args"]["--dataset-type"]) == body["dataset_type"]
        assert seen["args"]["--hours-to-complete"] == "1"


async def test_a_commit_behind_the_default_branch_is_the_one_trained(make_host, tmp_path):
    repo = tmp_path / "repo"
    script_repo(repo, FAST_TRAINER)
    wanted = commit_files(repo, {"marker.txt": "wanted"}, message="wanted")
    latest = commit_files(repo, {"marker.txt": "latest"}, message="latest")
    async with make_host() as host:
        full = host.job(f"file://{repo}", wanted)
        short = host.job(f"file://{repo}", wanted[:10])
        for body in (full, short):
            assert (await host.post(body)).status_code == 200
        for body in (full, short):
            status = await host.wait_for(body["job_id"])
            assert status["status"] == "success", status
            assert (host.store.local_path(status["output_repository"]) / "marker.txt").read_text() == "wanted"
    assert wanted != latest


async def test_a_failing_script_reports_its_exit_code_and_error(make_host, tmp_path):
    commit = script_repo(tmp_path / "repo", FAILING_TRAINER)
    async with make_host() as host:
        body = host.job(f"file://{tmp_path / 'repo'}", commit)
        await host.post(body)
        status = await host.wait_for(body["job_id"])
    assert status["status"] == "failure"
    assert status["error"] == "training exited with code 1: ValueError: learning rate must be positive"
    assert status["output_repository"] is None
    assert "loading the model" in status["log_tail"]


async def test_a_run_past_its_time_limit_fails_and_its_process_group_is_gone(make_host, tmp_path):
    pid_file = tmp_path / "pid"
    commit = script_repo(tmp_path / "repo", sleeping_trainer(pid_file))
    async with make_host() as host:
        body = host.job(f"file://{tmp_path / 'repo'}", commit, time_limit_seconds=1.5)
        await host.post(body)
        status = await host.wait_for(body["job_id"], within=30)
    assert status["status"] == "failure"
    assert status["error"] == "exceeded time limit of 1.5 s"
    assert live_processes_in_group(int(pid_file.read_text())) == []


async def test_cancel_kills_the_run_and_capacity_follows_the_slots(make_host, tmp_path):
    pid_file = tmp_path / "pid"
    commit = script_repo(tmp_path / "repo", sleeping_trainer(pid_file))
    url = f"file://{tmp_path / 'repo'}"
    async with make_host(slots=1) as host:
        capacity = await host.client.get(f"{HOST_URL}/v1/capacity", receiver_hotkey=host.hotkey)
        assert capacity.json() == {"slots_total": 1, "slots_free": 1, "gpus": []}
        running, queued = host.job(url, commit), host.job(url, commit)
        await host.post(running)
        await host.wait_for(running["job_id"], until={"running"})
        await wait_for_file(pid_file)
        await host.post(queued)
        capacity = await host.client.get(f"{HOST_URL}/v1/capacity", receiver_hotkey=host.hotkey)
        assert capacity.json()["slots_free"] == 0
        assert (await host.get(queued["job_id"])).json()["status"] == "queued"

        delete_url = f"{HOST_URL}/v1/jobs/{running['job_id']}"
        cancelled = await host.client.delete(delete_url, receiver_hotkey=host.hotkey)
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        assert live_processes_in_group(int(pid_file.read_text())) == []
        # The queued job takes the freed slot.
        pid_file.unlink()
        await host.wait_for(queued["job_id"], until={"running"})
        await host.client.delete(f"{HOST_URL}/v1/jobs/{queued['job_id']}", receiver_hotkey=host.hotkey)
        capacity = await host.client.get(f"{HOST_URL}/v1/capacity", receiver_hotkey=host.hotkey)
        assert capacity.json()["slots_free"] == 1


async def test_a_restarted_host_still_answers_for_old_jobs(make_host, tmp_path):
    fast = script_repo(tmp_path / "fast", FAST_TRAINER)
    pid_file = tmp_path / "pid"
    slow = script_repo(tmp_path / "slow", sleeping_trainer(pid_file))
    async with make_host(slots=2) as host:
        finished = host.job(f"file://{tmp_path / 'fast'}", fast)
        interrupted = host.job(f"file://{tmp_path / 'slow'}", slow)
        await host.post(finished)
        await host.post(interrupted)
        await host.wait_for(finished["job_id"])
        await host.wait_for(interrupted["job_id"], until={"running"})
        await wait_for_file(pid_file)
    # Stopping the host killed the run and recorded why.
    assert live_processes_in_group(int(pid_file.read_text())) == []

    # A crash leaves an active record behind: make one out of a finished record.
    crashed = host.job(f"file://{tmp_path / 'fast'}", fast)
    crashed_dir = host.data_dir / "jobs" / crashed["job_id"]
    crashed_dir.mkdir()
    record = json.loads((host.data_dir / "jobs" / finished["job_id"] / RECORD_FILE).read_text())
    record["request"]["job_id"] = record["status"]["job_id"] = crashed["job_id"]
    record["status"].update(status="running", error=None, output_repository=None, finished_at=None)
    record["pid"] = 2**22 + 1  # no such process
    (crashed_dir / RECORD_FILE).write_text(json.dumps(record))

    async with make_host(slots=2) as restarted:
        assert (await restarted.get(finished["job_id"])).json()["status"] == "success"
        stopped = (await restarted.get(interrupted["job_id"])).json()
        assert (stopped["status"], stopped["error"]) == ("failure", STOPPED)
        after_crash = (await restarted.get(crashed["job_id"])).json()
        assert (after_crash["status"], after_crash["error"]) == ("failure", RESTARTED)
        # An old job id is not started again.
        assert (await restarted.post(finished)).json()["status"] == "success"
        assert restarted.jobs.pipelines_started == 0


async def test_jobs_that_cannot_run_fail_with_a_reason(make_host, tmp_path, dataset_server):
    no_dockerfile = commit_files(tmp_path / "plain", {"README.md": "no contract here"})
    commit = script_repo(tmp_path / "repo", FAST_TRAINER)
    url = f"file://{tmp_path / 'repo'}"
    (dataset_server[1] / "big.json").write_text(json.dumps([{"instruct": "x" * 200}]))
    cases = {
        f"the repo has no {TEXT_DOCKERFILE}": (f"file://{tmp_path / 'plain'}", no_dockerfile, {}),
        "base model other/model is not in the model store": (url, commit, {"model_repo": "other/model"}),
        "the training data is": (url, commit, {"dataset_url": f"{dataset_server[0]}/big.json"}),
        "HTTP 404": (url, commit, {"dataset_url": f"{dataset_server[0]}/missing.json?signature=secret"}),
        "was not found in": (url, "0123456789abcdef", {}),
        "image tasks are not supported": (url, commit, {"task_type": "ImageTask"}),
    }
    async with make_host(max_dataset_bytes=150) as host:
        bodies = {}
        for reason, (repo_url, repo_commit, overrides) in cases.items():
            bodies[reason] = host.job(repo_url, repo_commit, **overrides)
            assert (await host.post(bodies[reason])).status_code == 200
        for reason, body in bodies.items():
            status = await host.wait_for(body["job_id"])
            assert status["status"] == "failure" and reason in status["error"], (reason, status)
            assert "secret" not in status["error"]


async def test_bad_urls_are_refused_before_anything_starts(make_host, tmp_path):
    async with make_host() as host:
        for field, value in (
            ("repo_url", "ssh://git@example.com/repo.git"),
            ("repo_url", "--upload-pack=touch /tmp/x"),
            ("repo_url", "http://example.com/repo.git"),
            ("dataset_url", "file:///etc/passwd"),
            ("model_repo", "../../etc"),
        ):
            body = host.job("https://example.com/repo.git", "a" * 40)
            body[field] = value
            response = await host.post(body)
            assert response.status_code == 422, response.text
            assert field in response.text
        assert host.jobs.pipelines_started == 0
        assert not any((host.data_dir / "jobs").iterdir())


async def test_only_registered_validators_are_served_and_only_their_own_jobs(make_host, tmp_path):
    commit = script_repo(tmp_path / "repo", FAST_TRAINER)
    async with make_host() as host:
        transport = httpx.ASGITransport(app=host.app)
        async with httpx.AsyncClient(transport=transport, base_url=HOST_URL) as unsigned:
            assert (await unsigned.get("/v1/capacity")).status_code == 401
            body = host.job(f"file://{tmp_path / 'repo'}", commit)
            assert (await unsigned.post("/v1/jobs", json=body)).status_code == 401
        refused = await host.post(body, client=host.outsider)
        assert refused.status_code == 403
        assert "not a registered validator" in refused.json()["detail"]
        assert host.jobs.pipelines_started == 0

        await host.post(body)
        assert (await host.get(body["job_id"], client=host.other_validator)).status_code == 404
        assert (await host.post(body, client=host.other_validator)).status_code == 409
        await host.wait_for(body["job_id"])
        assert (await host.get("00000000-0000-4000-8000-000000000000")).status_code == 404
