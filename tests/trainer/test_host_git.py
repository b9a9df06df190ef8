"""Checking out a training repo at exactly the requested commit, and refusing URLs git must not touch."""

from __future__ import annotations

import pytest

from tests.trainer.helpers import commit_files, git
from trainer.host.git import GitError, check_repo_url, checkout_commit


@pytest.fixture
def two_commit_repo(tmp_path):
    """A repo whose default branch moved past the first commit; returns (url, first, second)."""
    repo = tmp_path / "origin"
    first = commit_files(repo, {"marker.txt": "first"}, message="first")
    second = commit_files(repo, {"marker.txt": "second"}, message="second")
    return f"file://{repo}", first, second


async def test_an_older_commit_than_the_default_branch_is_checked_out(tmp_path, two_commit_repo):
    url, first, second = two_commit_repo
    head = await checkout_commit(url, first, tmp_path / "clone")
    assert head == first != second
    assert (tmp_path / "clone" / "marker.txt").read_text() == "first"


async def test_a_short_hash_resolves_to_its_commit(tmp_path, two_commit_repo):
    url, first, _ = two_commit_repo
    head = await checkout_commit(url, first[:9].upper(), tmp_path / "clone")
    assert head == first
    assert (tmp_path / "clone" / "marker.txt").read_text() == "first"


async def test_a_commit_on_another_branch_is_found(tmp_path, two_commit_repo):
    url, _, second = two_commit_repo
    origin = tmp_path / "origin"
    git(origin, "checkout", "--quiet", "-b", "feature")
    feature = commit_files(origin, {"marker.txt": "feature"}, message="feature")
    git(origin, "checkout", "--quiet", "main")
    head = await checkout_commit(url, feature[:12], tmp_path / "clone")
    assert head == feature != second
    assert (tmp_path / "clone" / "marker.txt").read_text() == "feature"


async def test_an_unknown_commit_is_a_clear_error(tmp_path, two_commit_repo):
    url, _, _ = two_commit_repo
    with pytest.raises(GitError, match="commit deadbeef0 was not found"):
        await checkout_commit(url, "deadbeef0", tmp_path / "clone")
    with pytest.raises(GitError, match="git fetch failed"):
        await checkout_commit(f"file://{tmp_path}/nothing-here", "a" * 40, tmp_path / "clone2")


@pytest.mark.parametrize(
    "url",
    [
        "ssh://git@example.com/repo.git",
        "http://example.com/repo.git",
        "git@example.com:repo.git",
        "ext::sh -c touch% /tmp/pwned",
        "--upload-pack=touch /tmp/pwned",
        "-https://example.com/repo.git",
        "/local/path",
        "https://example.com/repo.git\n--config",
    ],
)
async def test_urls_other_than_https_and_file_are_refused(tmp_path, url):
    with pytest.raises(ValueError, match="not allowed|whitespace"):
        check_repo_url(url)
    with pytest.raises(ValueError):
        await checkout_commit(url, "a" * 40, tmp_path / "clone")
    assert not (tmp_path / "clone").exists()


def test_allowed_urls_pass():
    assert check_repo_url("https://github.com/org/repo") == "https://github.com/org/repo"
    assert check_repo_url("file:///srv/repos/reference") == "file:///srv/repos/reference"
