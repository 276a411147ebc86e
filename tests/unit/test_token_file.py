"""The cluster token a run creates or uses is readable by its owner alone: whoever reads it can
run code as the trainer."""

from __future__ import annotations

import stat

from soulsai_ray.cluster import private_token_file


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_token_is_written_0600_in_a_0700_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    path = private_token_file()
    assert path == tmp_path / ".ray" / "auth_token"
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    token = path.read_text()
    assert len(token) == 64 and int(token, 16) >= 0  # the form Ray itself writes
    assert private_token_file() == path and path.read_text() == token  # kept, not replaced


def test_a_token_ray_wrote_world_readable_is_made_private(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    folder = tmp_path / ".ray"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    (folder / "auth_token").write_text("a" * 64)
    (folder / "auth_token").chmod(0o644)
    path = private_token_file()
    assert _mode(path) == 0o600 and _mode(folder) == 0o700
    assert path.read_text() == "a" * 64
    assert "was mode 644; made it 600" in caplog.text


def test_a_token_path_of_the_users_choosing_keeps_its_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(shared / "token"))
    path = private_token_file()
    assert path == shared / "token" and _mode(path) == 0o600 and _mode(shared) == 0o755


def test_a_token_in_the_environment_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RAY_AUTH_TOKEN", "b" * 64)
    assert private_token_file() is None
    assert not (tmp_path / ".ray").exists()
