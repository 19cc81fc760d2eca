"""``operone keys|token``: the Curve keys this node trusts, and peer tokens."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError
from ._common import Obj

__all__ = ["keys", "token"]


@click.group()
def keys() -> None:
    """Manage the Curve keys this node trusts."""


@keys.command("list")
@click.pass_obj
def keys_list(obj: Obj) -> None:
    """List trusted and pending keys."""
    from ..security.keys import TrustStore

    for k in TrustStore(obj.home.trust_dir).list():
        src = f"  ({k.source})" if k.source else ""
        kinds = ",".join([*(["node"] if k.node else []), *([k.role] if k.role else [])])
        limits = "".join([f" tools={','.join(k.tools)}" if k.tools else "",
                          f" nodes={','.join(k.nodes)}" if k.nodes else "",
                          " signed" if k.signing_key else ""])
        click.echo(f"{k.status:<8} {k.name:<24} {k.fingerprint}  {k.public_key.decode()}"
                   f"  [{kinds or '-'}{limits}]{src}")


@keys.command("accept")
@click.argument("name")
@click.argument("key", required=False)
@click.option("--node", "as_node", is_flag=True,
              help="Trust it as a node: it may join the mesh under NAME as its node id.")
@click.option("--client", "as_client", is_flag=True,
              help="Trust it as a client (with --role; default role: submit).")
@click.option("--role", type=click.Choice(["operator", "submit"]),
              help="A client's role: operator (state-changing queries, cancel any job,"
                   " broadcast) or submit (its own jobs, read-only queries).")
@click.option("--tools", metavar="T1,T2", help="Tools the client may run (fs.* = a prefix).")
@click.option("--nodes", metavar="N1,N2", help="Nodes the client's jobs may run on.")
@click.option("--signing-key", metavar="HEX",
              help="The node's Ed25519 signing key (operone keys show prints it).")
@click.pass_obj
def keys_accept(obj: Obj, name: str, key: str | None, as_node: bool, as_client: bool,
                role: str | None, tools: str | None, nodes: str | None,
                signing_key: str | None) -> None:
    """Trust KEY (z85 text or a .key file) under NAME; without KEY, accept the
    pending key NAME.  Without --node or --client the key is both a node and
    an operator client (as every key was before roles; docs/security.md)."""
    from ..security.keys import TrustStore, parse_public_key

    store = TrustStore(obj.home.trust_dir)
    if key is None:
        pending = [k for k in store.list() if k.status == "pending" and k.name == name]
        if not pending:
            raise ConfigError(f"no pending key named '{name}'; give the key to accept")
        pub = pending[0].public_key
    else:
        pub = parse_public_key(Path(key) if os.path.exists(key) else key)
    kinds: dict[str, Any] = {}
    if as_node or as_client:
        kinds["node"] = as_node
        kinds["role"] = (role or "submit") if as_client else None
    elif role is not None:
        kinds["role"] = role
    if tools is not None:
        kinds["tools"] = tuple(t.strip() for t in tools.split(",") if t.strip())
    if nodes is not None:
        kinds["nodes"] = tuple(n.strip() for n in nodes.split(",") if n.strip())
    if signing_key is not None:
        kinds["signing_key"] = signing_key
    known = store.trusted_as(pub)
    k = store.accept(name, pub, **kinds)
    if known is not None and known.name != name:
        click.echo(f"warning: this key ({known.fingerprint}) is already trusted as"
                   f" '{known.name}'; it was not added again as '{name}' (to rename it:"
                   f" operone keys reject {known.name}, then accept it again)", err=True)
        return
    what = ", ".join([*(["node"] if k.node else []),
                      *([f"client ({k.role})"] if k.role else [])]) or "nothing"
    click.echo(f"trusted {k.name} {k.fingerprint} as {what}")


@keys.command("reject")
@click.argument("name_or_fingerprint")
@click.pass_obj
def keys_reject(obj: Obj, name_or_fingerprint: str) -> None:
    """Stop trusting a key (by name or fingerprint)."""
    from ..security.keys import TrustStore

    if not TrustStore(obj.home.trust_dir).reject(name_or_fingerprint):
        raise ConfigError(f"no key named or with fingerprint '{name_or_fingerprint}'")
    click.echo(f"rejected {name_or_fingerprint}")


@keys.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def keys_show(obj: Obj, as_json: bool) -> None:
    """Print this node's public key, its fingerprint, and the command that
    trusts it on another node (give them to that node's operator)."""
    from ..aio.runtime import node_keys
    from ..protocol.signature import Signer
    from ..security.keys import load_signing_seed

    node_id = obj.config().node.id
    kp = node_keys(obj.home)
    key = kp.public.decode()
    signing = Signer.from_seed(load_signing_seed(obj.home.node_signing)).public_hex
    # Z85 has no single quote, so '...' quotes every key for a POSIX shell, and
    # "--" keeps a key that starts with '-' from being read as an option.
    command = f"operone keys accept --node --signing-key {signing} -- {node_id} '{key}'"
    if as_json:
        click.echo(json.dumps({"node": node_id, "public_key": key,
                               "fingerprint": kp.fingerprint, "signing_key": signing,
                               "accept_command": command}))
        return
    click.echo(key)
    click.echo(f"fingerprint {kp.fingerprint}")
    click.echo(f"signing key {signing}")
    click.echo(f"to trust it on another node: {command}")


# ----------------------------------------------------------------- token
@click.group()
def token() -> None:
    """Tokens (JWT) for peer links when security.require_token is on."""


@token.command("create")
@click.option("--ttl", type=float, help="Lifetime in seconds (default: security.token_ttl).")
@click.option("--node", "subject", metavar="NODE",
              help="Node the token is for (default: this node); its key must be trusted here.")
@click.pass_obj
def token_create(obj: Obj, ttl: float | None, subject: str | None) -> None:
    """Print a token signed with security.jwt_secret, for the cluster, bound to
    the node's Curve key (a leaked token is useless without its secret key)."""
    from ..aio.runtime import node_keys
    from ..security.keys import TrustStore
    from ..security.tokens import generate_jwt

    config = obj.config()
    secret = config.security.jwt_secret
    if secret is None:
        raise ConfigError("no security.jwt_secret configured: cannot create tokens")
    if ttl is not None and not ttl > 0:
        raise ConfigError(f"--ttl must be a positive number of seconds, not {ttl:g}")
    node_id = subject or config.node.id
    if node_id == config.node.id:
        key = node_keys(obj.home).public
    else:
        found = TrustStore(obj.home.trust_dir).key_of(node_id)
        if found is None:
            raise ConfigError(f"no trusted key for node '{node_id}': a token is bound to the"
                              " node's key, so accept it first (operone keys accept)")
        key = found
    lifetime = config.security.token_ttl if ttl is None else ttl
    click.echo(generate_jwt(secret, node_id, config.node.cluster, ttl=lifetime, curve_key=key))
    click.echo(f"token for '{node_id}' in cluster '{config.node.cluster}', valid"
               f" {lifetime:g} s", err=True)
