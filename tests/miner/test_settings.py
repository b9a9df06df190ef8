"""`--training-repo TASK_TYPE=URL@COMMIT`: parsing and the one-line errors that name the bad value."""

from __future__ import annotations

import pytest

from core.miner_api import TrainingRepoResponse
from miner.settings import MinerSettings, parse_training_repos

COMMIT = "3f2a9c1d" * 5


def test_each_value_announces_a_repo_for_its_task_type():
    repos = parse_training_repos(
        [
            f"InstructTextTask=https://github.com/me/trainer@{COMMIT}",
            # An "@" inside the URL stays in the URL: the commit follows the last one.
            "text=https://git@example.com/me/tournament.git@ABCDEF1",
            "DpoTask = file:///srv/repos/dpo @ 0123456",
        ]
    )

    assert repos == {
        "InstructTextTask": TrainingRepoResponse(github_repo="https://github.com/me/trainer", commit_hash=COMMIT),
        "text": TrainingRepoResponse(github_repo="https://git@example.com/me/tournament.git", commit_hash="ABCDEF1"),
        "DpoTask": TrainingRepoResponse(github_repo="file:///srv/repos/dpo", commit_hash="0123456"),
    }
    settings = MinerSettings(training_repos=repos)
    assert settings.repo_for("text").commit_hash == "ABCDEF1"
    assert settings.repo_for("InstructTextTask").github_repo == "https://github.com/me/trainer"


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("https://github.com/me/trainer@3f2a9c1", "expected TASK_TYPE=URL@COMMIT"),
        ("InstructTextTask=https://github.com/me/trainer", "expected TASK_TYPE=URL@COMMIT"),
        ("InstructTextTask=@3f2a9c1", "expected TASK_TYPE=URL@COMMIT"),
        ("SpeechTask=https://github.com/me/trainer@3f2a9c1", "unknown task type 'SpeechTask'; use one of "),
        ("InstructTextTask=ssh://git@github.com/me/trainer@3f2a9c1", "the repo URL must be an https:// or file:// URL"),
        ("InstructTextTask=https://@3f2a9c1", "the repo URL must be an https:// or file:// URL"),
        ("InstructTextTask=https://github.com/me/trainer@main", "the commit must be 7 to 64 hex digits"),
        ("InstructTextTask=https://github.com/me/trainer@3f2a9c", "the commit must be 7 to 64 hex digits"),
    ],
)
def test_a_bad_value_is_refused_in_one_line_that_quotes_it(value, error):
    with pytest.raises(ValueError) as refused:
        parse_training_repos([value])
    message = str(refused.value)
    assert message.startswith(error) and message.endswith(f"(got {value!r})") and "\n" not in message


def test_a_task_type_given_twice_is_refused():
    first = "InstructTextTask=https://github.com/me/a@1111111"
    second = "InstructTextTask=https://github.com/me/b@2222222"
    with pytest.raises(ValueError, match=r"^InstructTextTask is given more than once \(got '.*me/b@2222222'\)$"):
        parse_training_repos([first, second])
