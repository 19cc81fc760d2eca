"""Tests of the home directory layout, config loading, writing and init."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from operone_zmq.config import (
    DEFAULT_BASE_PORT,
    Config,
    Home,
    LoggingConfig,
    MeshConfig,
    NodeConfig,
    SecurityConfig,
    ToolsSection,
    WorkersConfig,
    default_home,
    default_node_id,
    init_home,
    load_config,
    parse_peer_address,
    render_config,
    resolve_worker_endpoint,
    write_default_config,
)
from operone_zmq.errors import ConfigError
from operone_zmq.security import TrustStore, load_keypair

EXAMPLE = Path(__file__).resolve().parents[2] / "brokers" / "example-config.toml"
SECRET = "x" * 40
ODD_SECRET = 'tab\there, newline\n, quote" and \x01' + "x" * 32
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes and ipc://")


def write(home: Home, text: str) -> Path:
    home.path.mkdir(parents=True, exist_ok=True)
    home.config_file.write_text(text, encoding="utf-8")
    return home.config_file


# ----------------------------------------------------------------- home dir
def test_default_home_locations() -> None:
    """OPERONE_HOME wins; then %APPDATA% on Windows; then XDG or ~/.config on POSIX."""
    assert default_home({"OPERONE_HOME": "/opt/op"}) == Path("/opt/op")
    assert default_home({"APPDATA": "/appdata"}, platform="win32") == Path("/appdata/operone")
    assert default_home({"XDG_CONFIG_HOME": "/xdg"}, platform="linux") == Path("/xdg/operone")
    assert default_home({}, platform="linux") == Path.home() / ".config" / "operone"
    assert default_home({}, platform="darwin") == Path.home() / ".config" / "operone"


def test_home_layout(tmp_path: Path) -> None:
    """The home's files and directories sit where the docs say."""
    home = Home(tmp_path)
    assert home.config_file == tmp_path / "config.toml"
    assert home.node_secret == tmp_path / "keys" / "node.key_secret"
    assert home.node_public == tmp_path / "keys" / "node.key"
    assert home.trust_dir == tmp_path / "trust"
    assert home.run_dir == tmp_path / "run"
    assert home.log_dir == tmp_path / "log"


def test_default_node_id_is_a_valid_id() -> None:
    """The host-derived id passes node id validation."""
    assert NodeConfig(id=default_node_id()).id == default_node_id()


# ------------------------------------------------------------------ loading
@posix_only
def test_defaults_without_a_file(tmp_path: Path) -> None:
    """No config.toml: every default, the host's id, ipc:// workers under run/."""
    home = Home(tmp_path)
    config = load_config(home, environ={})
    assert config.node == NodeConfig(id=default_node_id())
    assert config.node.name == config.node.id
    assert config.node.base_port == DEFAULT_BASE_PORT
    assert config.security == SecurityConfig()
    assert config.tools.shell_allow == ()
    assert config.workers == WorkersConfig()
    assert config.limits.max_message_size == 64 * 1024 * 1024
    assert config.mesh == MeshConfig()
    assert config.logging == LoggingConfig()
    assert config.broker.worker_endpoint == f"ipc://{home.run_dir}/{config.node.id}.workers.ipc"


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    """Each layer overrides the one before it."""
    home = Home(tmp_path)
    write(home, '[node]\nid = "from-file"\nbase_port = 7800\n[workers]\ncount = 3\n')
    environ = {"OPERONE_NODE_BASE_PORT": "7900", "OPERONE_WORKERS_COUNT": "5"}
    config = load_config(home, {"workers.count": 7, "node.name": None}, environ)
    assert config.node.id == "from-file"
    assert config.node.base_port == 7900
    assert config.workers.count == 7
    assert config.node.name == "from-file"


def test_environment_conversions(tmp_path: Path) -> None:
    """Environment strings become ints, floats, bools, lists, choices and None."""
    environ = {
        "OPERONE_NODE_ID": "env-node",
        "OPERONE_WORKERS_CAPABILITIES": "gpu, linux,,",
        "OPERONE_WORKERS_HEARTBEAT_INTERVAL": "0.25",
        "OPERONE_SECURITY_JWT_SECRET": SECRET,
        "OPERONE_SECURITY_REQUIRE_TOKEN": "yes",
        "OPERONE_LOGGING_FORMAT": "JSON",
        "OPERONE_LOGGING_LEVEL": "DEBUG",
        "OPERONE_TOOLS_FS_ROOT": "",
        "OPERONE_MESH_PEERS": "b@10.0.0.2:7700,c@[::1]:7800",
        "OPERONE_HOME": "/ignored",
        "OPERONE_BROKER_START_VERBOSE": "1",  # a click option variable: ignored
    }
    config = load_config(Home(tmp_path), environ=environ)
    assert config.node.id == "env-node"
    assert config.workers.capabilities == ("gpu", "linux")
    assert config.workers.heartbeat_interval == 0.25
    assert config.security == SecurityConfig(jwt_secret=SECRET, require_token=True)
    assert config.logging == LoggingConfig(format="json", level="debug")
    assert config.tools.fs_root is None
    assert config.mesh.peers == ("b@10.0.0.2:7700", "c@[::1]:7800")


def test_string_overrides_are_parsed(tmp_path: Path) -> None:
    """CLI-style string overrides are converted like environment values."""
    config = load_config(
        Home(tmp_path),
        {"node.id": "x", "node.base_port": "8000", "workers.capabilities": "a,b"},
        environ={},
    )
    assert config.node.base_port == 8000
    assert config.workers.capabilities == ("a", "b")


def test_unknown_section_and_key_name_the_file(tmp_path: Path) -> None:
    """Unknown sections and keys are errors naming the section/option and the file."""
    home = Home(tmp_path)
    path = write(home, "[bogus]\nx = 1\n")
    with pytest.raises(ConfigError, match=re.escape(f"unknown section [bogus] in {path}")):
        load_config(home, environ={})
    write(home, "[workers]\ncuont = 2\n")
    with pytest.raises(ConfigError, match=re.escape(f"unknown option workers.cuont in {path}")):
        load_config(home, environ={})
    write(home, "workers = 2\n")
    with pytest.raises(ConfigError, match="must be a \\[workers\\] table"):
        load_config(home, environ={})


def test_unknown_override_is_an_error(tmp_path: Path) -> None:
    """Overrides must name an existing section.key."""
    with pytest.raises(ConfigError, match="unknown option 'workers'"):
        load_config(Home(tmp_path), {"workers": 2}, environ={})
    with pytest.raises(ConfigError, match=re.escape("unknown option workers.nope")):
        load_config(Home(tmp_path), {"workers.nope": 2}, environ={})


def test_removed_security_curve_is_an_error_with_a_migration(tmp_path: Path) -> None:
    """Issue 9: security.curve did nothing (there is no plaintext mode); a file or
    variable that still sets it fails and says what to do."""
    home = Home(tmp_path)
    home.path.mkdir(exist_ok=True)
    home.config_file.write_text('[node]\nid = "n"\n[security]\ncurve = false\n')
    with pytest.raises(ConfigError, match=r"security\.curve .*removed: there is no plaintext"):
        load_config(home, environ={})
    home.config_file.write_text('[node]\nid = "n"\n')
    with pytest.raises(ConfigError, match=r"OPERONE_SECURITY_CURVE was removed"):
        load_config(home, environ={"OPERONE_SECURITY_CURVE": "off"})
    assert "curve" not in render_config(Config(NodeConfig(id="n")))


@pytest.mark.parametrize(
    ("toml", "option"),
    [
        ("[workers]\ncount = 2.5\n", "workers.count"),
        ("[workers]\ncount = true\n", "workers.count"),
        ('[workers]\ncount = "2"\n', "workers.count"),
        ("[security]\nrequire_token = 1\n", "security.require_token"),
        ('[mesh]\npeers = "a:1"\n', "mesh.peers"),
        ("[mesh]\npeers = [1, 2]\n", "mesh.peers"),
        ("[workers]\nheartbeat_interval = nan\n", "workers.heartbeat_interval"),
        ('[logging]\nformat = "xml"\n', "logging.format"),
        ("[node]\nid = 5\n", "node.id"),
    ],
)
def test_wrong_types_name_option_and_file(tmp_path: Path, toml: str, option: str) -> None:
    """A value of the wrong type is an error naming the option and the file."""
    home = Home(tmp_path)
    path = write(home, toml)
    with pytest.raises(ConfigError, match=re.escape(f"{option} in {path} must be")):
        load_config(home, environ={})


def test_wrong_type_in_environment_names_the_variable(tmp_path: Path) -> None:
    """A bad environment value names its variable."""
    with pytest.raises(ConfigError, match="OPERONE_WORKERS_COUNT must be an integer"):
        load_config(Home(tmp_path), environ={"OPERONE_WORKERS_COUNT": "many"})
    with pytest.raises(ConfigError, match="true or false"):
        load_config(Home(tmp_path), environ={"OPERONE_SECURITY_REQUIRE_TOKEN": "maybe"})


def test_secret_values_are_not_echoed(tmp_path: Path) -> None:
    """Errors about the JWT secret never print it."""
    home = Home(tmp_path)
    write(home, "[security]\njwt_secret = 123456789\n")
    with pytest.raises(ConfigError) as info:
        load_config(home, environ={})
    assert "123456789" not in str(info.value)
    assert "<hidden>" in str(info.value)
    write(home, '[security]\njwt_secret = "short-secret"\n')
    with pytest.raises(ConfigError, match="at least 32 bytes") as info:
        load_config(home, environ={})
    assert "short-secret" not in str(info.value)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[node]\nbase_port = 0\n", "node.base_port must be between 1 and 65531, not 0"),
        ("[node]\nbase_port = 65532\n", "node.base_port must be between 1 and 65531"),
        ('[node]\nid = "has space"\n', "node.id must be 1-64 letters"),
        ('[node]\nid = ".hidden"\n', "node.id must be 1-64 letters"),
        ('[node]\ncluster = ""\n', "node.cluster must be"),
        ("[workers]\ncount = -1\n", "workers.count must be between 0 and"),
        ("[workers]\nconcurrency = 0\n", "workers.concurrency must be between 1"),
        (
            "[workers]\nheartbeat_interval = 0\n",
            "workers.heartbeat_interval must be a positive number",
        ),
        ('[workers]\ncapabilities = ["a b"]\n', "workers.capabilities entries"),
        ("[security]\nrequire_token = true\n", "security.require_token needs"),
        ("[security]\ntoken_ttl = -5\n", "security.token_ttl must be a positive number"),
        ('[tools]\nfs_root = "relative/dir"\n', "tools.fs_root must be an absolute path"),
        ('[tools]\nshell_allow = ["rm -rf"]\n', "tools.shell_allow entries"),
        ('[tools]\nmodules = ["not-a.module"]\n', "tools.modules entries"),
        ("[limits]\nmax_message_size = 10\n", "limits.max_message_size must be between"),
        ("[limits]\nresult_cache_seconds = -1\n", "limits.result_cache_seconds must be"),
        ('[broker]\nworker_endpoint = "udp://x"\n', "broker.worker_endpoint must be"),
        ('[mesh]\npeers = ["no-port"]\n', "mesh.peers entry 'no-port'"),
        ('[mesh]\npeers = ["h:99999"]\n', "mesh.peers entry"),
        ('[logging]\nlevel = "loud"\n', "logging.level must be one of"),
    ],
)
def test_out_of_range_values(tmp_path: Path, toml: str, message: str) -> None:
    """Values out of range are errors naming the option, the problem and the file."""
    home = Home(tmp_path)
    path = write(home, toml)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_config(home, environ={})
    assert f"(in {path})" in str(info.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    """A syntax error is a ConfigError naming the file and the line."""
    home = Home(tmp_path)
    path = write(home, "[node\nid = 1\n")
    with pytest.raises(ConfigError, match=re.escape(f"invalid TOML in {path}")):
        load_config(home, environ={})


def test_dataclasses_validate_themselves() -> None:
    """Sections built in code are checked too, and lists become tuples."""
    with pytest.raises(ConfigError, match=re.escape("node.base_port")):
        NodeConfig(id="n", base_port=70000)
    tools = ToolsSection(shell_allow=["ls"])  # type: ignore[arg-type]
    assert tools.shell_allow == ("ls",)
    assert ToolsSection(fs_root="~/files").fs_root == str(Path.home() / "files")
    assert Config(NodeConfig(id="n")).workers.count == 2


def test_parse_peer_address() -> None:
    """HOST:PORT and [IPv6]:PORT are split; anything else is refused."""
    assert parse_peer_address("10.0.0.2:7700") == ("10.0.0.2", 7700)
    assert parse_peer_address("pc-b.local:7800") == ("pc-b.local", 7800)
    assert parse_peer_address("[fe80::1]:7700") == ("fe80::1", 7700)
    # ("host:²" is digits to str.isdigit, and int() of it, or of 5,000
    # digits, raised ValueError instead of ConfigError.)
    for bad in ("host", ":7700", "host:", "host:x", "host:0", "host:65536", "a b:1",
                "host:\u00b2", "host:" + "1" * 5000):
        with pytest.raises(ConfigError):
            parse_peer_address(bad)


def test_worker_endpoint_fallbacks(tmp_path: Path) -> None:
    """Windows and over-long ipc paths use tcp://127.0.0.1:<base_port+10>."""
    node = NodeConfig(id="n", base_port=7700)
    home = Home(tmp_path)
    assert resolve_worker_endpoint(home, node, platform="win32") == "tcp://127.0.0.1:7710"
    assert resolve_worker_endpoint(home, node, "tcp://1.2.3.4:5") == "tcp://1.2.3.4:5"
    deep = Home(tmp_path / ("d" * 120))
    assert resolve_worker_endpoint(deep, node, platform="linux") == "tcp://127.0.0.1:7710"
    with pytest.raises(ConfigError, match=re.escape("set broker.worker_endpoint")):
        resolve_worker_endpoint(home, NodeConfig(id="n", base_port=65530), platform="win32")
    explicit = load_config(home, {"node.id": "n", "broker.worker_endpoint": "tcp://h:1"}, {})
    assert explicit.broker.worker_endpoint == "tcp://h:1"


# ------------------------------------------------------------------ writing
def test_write_default_config_round_trips(tmp_path: Path) -> None:
    """The written file loads back to the requested values; defaults stay commented."""
    home = Home(tmp_path / "home")
    dotted: dict[str, Any] = {"tools.fs_root": "/srv/files"}
    path = write_default_config(
        home,
        "pc-a",
        name='Lab "A" \\ PC üñí',
        base_port=7800,
        workers_count=4,
        security_jwt_secret=ODD_SECRET,
        mesh_peers=["peer-b@10.0.0.2:7700"],
        **dotted,
    )
    assert path == home.config_file
    config = load_config(home, environ={})
    assert config.node == NodeConfig(id="pc-a", name='Lab "A" \\ PC üñí', base_port=7800)
    assert config.workers == WorkersConfig(count=4)
    assert config.security.jwt_secret == ODD_SECRET
    assert config.mesh.peers == ("peer-b@10.0.0.2:7700",)
    assert config.tools.fs_root == "/srv/files"
    text = path.read_text(encoding="utf-8")
    assert "\ncount = 4\n" in text
    assert "\n# concurrency = 128\n" in text
    assert "\n# require_token = false\n" in text
    if sys.platform != "win32":
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_write_default_config_refuses_to_overwrite(tmp_path: Path) -> None:
    """An existing config is kept unless force is given."""
    home = Home(tmp_path)
    write_default_config(home, "one")
    with pytest.raises(ConfigError, match="exists already"):
        write_default_config(home, "two")
    write_default_config(home, "two", force=True)
    assert load_config(home, environ={}).node.id == "two"


def test_write_default_config_rejects_bad_fields(tmp_path: Path) -> None:
    """Unknown or invalid fields fail before anything is written."""
    home = Home(tmp_path)
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        write_default_config(home, "n", colour="blue")
    with pytest.raises(ConfigError, match=re.escape("workers.count")):
        write_default_config(home, "n", workers_count=-3)
    with pytest.raises(ConfigError, match="invalid node id"):
        write_default_config(home, "bad id")
    assert not home.config_file.exists()


def test_every_option_is_documented() -> None:
    """The rendered file mentions every option of every section."""
    data = render_config(Config(NodeConfig(id="n")))
    for section, cls in [("node", NodeConfig), ("workers", WorkersConfig), ("mesh", MeshConfig)]:
        assert f"[{section}]" in data
        for f in dataclasses.fields(cls):
            name = f.name
            assert re.search(rf"^(# )?{name} = ", data, re.MULTILINE), name
    for line in data.splitlines():
        assert len(line) <= 100


def test_example_config_matches_the_writer() -> None:
    """brokers/example-config.toml is what write_default_config writes, and it loads."""
    rendered = render_config(Config(NodeConfig(id="my-node")))
    assert EXAMPLE.read_text(encoding="utf-8") == rendered
    parsed = tomllib.loads(rendered)
    assert parsed["node"]["id"] == "my-node"


# --------------------------------------------------------------------- init
def test_init_home(tmp_path: Path) -> None:
    """init creates private dirs, the config, the node key pair, and trusts that key."""
    home = Home(tmp_path / "home")
    config, pair = init_home(home, "pc-a")
    assert config.node.id == "pc-a"
    assert load_keypair(home.node_secret) == pair
    store = TrustStore(home.trust_dir)
    assert store.is_trusted(pair.public)
    assert store.name_of(pair.public) == "pc-a"
    if sys.platform != "win32":
        for d in (home.path, home.keys_dir, home.trust_dir, home.run_dir, home.log_dir):
            assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
        assert stat.S_IMODE(os.stat(home.node_secret).st_mode) == 0o600


def test_init_home_twice(tmp_path: Path) -> None:
    """A second init needs force, which replaces the key and revokes the old one."""
    home = Home(tmp_path)
    _, old = init_home(home, "pc-a")
    with pytest.raises(ConfigError, match=re.escape(f"already initialised at {home.path}")):
        init_home(home, "pc-a")
    config, new = init_home(home, "pc-b", force=True, workers_count=1)
    assert config.node.id == "pc-b"
    assert config.workers.count == 1
    assert new.public != old.public
    store = TrustStore(home.trust_dir)
    assert not store.is_trusted(old.public)
    assert store.name_of(new.public) == "pc-b"
    assert [e.name for e in store.list()] == ["pc-b"]


def test_init_home_default_id(tmp_path: Path) -> None:
    """Without an id, init uses the host-derived one."""
    config, _ = init_home(Home(tmp_path))
    assert config.node.id == default_node_id()


def test_down_retention_reaches_the_link_state_database(tmp_path: Path) -> None:
    """routing.down_retention_s is how long the broker's LSDB keeps a dead node."""
    from operone_zmq.aio.runtime import broker_from_config
    from operone_zmq.config import load_config

    home = Home(tmp_path / "home")
    init_home(home, "pc-a")
    assert broker_from_config(home, load_config(home)).core.lsdb.retention == 14400.0
    b = broker_from_config(home, load_config(home, {"routing.down_retention_s": 0}))
    assert b.core.lsdb.retention == 0.0
    with pytest.raises(ConfigError, match=r"routing\.down_retention_s"):
        load_config(home, {"routing.down_retention_s": -1})
