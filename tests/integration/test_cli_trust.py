"""The trust and token commands, driven as a user does: the CLI in a subprocess."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import zmq
from helpers import make_home

from operone_zmq.security import TrustStore, fingerprint, load_keypair
from operone_zmq.security.tokens import verify_jwt

SECRET = "k" * 40


def cli(home: Path, *args: str,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    full.pop("OPERONE_HOME", None)
    return subprocess.run([sys.executable, "-P", "-m", "operone_zmq", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=60, env=full)


def test_keys_show_prints_a_ready_accept_command(tmp_path: Path) -> None:
    """Issue 13: `keys show` prints the key, its fingerprint and a quoted
    `operone keys accept -- NAME 'KEY'` line that works when pasted into a shell,
    even for a key starting with '-' or holding shell characters."""
    a = make_home(tmp_path / "a", "pc1", 7700)
    b = make_home(tmp_path / "b", "pc2", 7710)
    out = cli(a.path, "keys", "show")
    assert out.returncode == 0, out.stderr
    key = load_keypair(a.node_public).public.decode()
    lines = out.stdout.splitlines()
    assert lines[0] == key
    assert f"fingerprint {fingerprint(key.encode())}" in lines
    command = lines[-1].split(": ", 1)[1]
    signing = lines[2].split()[-1]
    assert lines[2] == f"signing key {signing}" and len(signing) == 64
    assert command == f"operone keys accept --node --signing-key {signing} -- pc1 '{key}'"
    # The printed line, run by a shell, with `operone` standing for this CLI.
    prefix = f"{shlex.quote(sys.executable)} -P -m operone_zmq --home {shlex.quote(str(b.path))}"
    r = subprocess.run(["sh", "-c", command.replace("operone", prefix, 1)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert TrustStore(b.trust_dir).name_of(key.encode()) == "pc1"
    entry = TrustStore(b.trust_dir).named("pc1")
    assert entry is not None and entry.node and entry.role is None
    assert entry.signing_key == signing
    # A key that starts with '-' and holds `> & $ ( {`: the same quoting works.
    while True:
        odd = zmq.curve_keypair()[0].decode()
        if odd.startswith("-"):
            break
    r = subprocess.run(["sh", "-c", f"{prefix} keys accept -- odd '{odd}'"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert TrustStore(b.trust_dir).name_of(odd.encode()) == "odd"


def test_keys_accept_of_a_key_trusted_under_another_name_warns(tmp_path: Path) -> None:
    home = make_home(tmp_path / "a", "pc1", 7700)
    key = zmq.curve_keypair()[0].decode()
    assert cli(home.path, "keys", "accept", "--", "pc2", key).returncode == 0
    r = cli(home.path, "keys", "accept", "--", "pc3", key)
    assert r.returncode == 0
    assert "already trusted as 'pc2'" in r.stderr
    store = TrustStore(home.trust_dir)
    assert store.name_of(key.encode()) == "pc2"
    assert store.key_of("pc3") is None


def test_token_create(tmp_path: Path) -> None:
    """`operone token create [--ttl] [--node]` prints a token for the cluster,
    bound to the node's trusted Curve key; without jwt_secret it fails plainly."""
    home = make_home(tmp_path / "a", "pc1", 7700)
    env = {"OPERONE_SECURITY_JWT_SECRET": SECRET}
    r = cli(home.path, "token", "create", "--ttl", "120", env=env)
    assert r.returncode == 0, r.stderr
    own = load_keypair(home.node_public).public
    claims = verify_jwt(r.stdout.strip(), SECRET, "operone", expected_subject="pc1",
                        expected_curve_key=own)
    assert claims["exp"] - claims["iat"] == 120
    other = zmq.curve_keypair()[0]
    TrustStore(home.trust_dir).accept("pc2", other)
    r = cli(home.path, "token", "create", "--node", "pc2", env=env)
    assert r.returncode == 0, r.stderr
    verify_jwt(r.stdout.strip(), SECRET, "operone", expected_subject="pc2",
               expected_curve_key=other)
    r = cli(home.path, "token", "create", "--node", "pc9", env=env)
    assert r.returncode != 0 and "no trusted key for node 'pc9'" in r.stderr
    r = cli(home.path, "token", "create")
    assert r.returncode != 0 and "no security.jwt_secret" in r.stderr
    assert "Traceback" not in r.stderr
