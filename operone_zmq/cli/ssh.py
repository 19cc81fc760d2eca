"""``operone ssh``: a one-off command on a host over SSH (no mesh)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ._common import Obj

__all__ = ["ssh"]


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("target", metavar="[USER@]HOST[:PORT]|LEGACY-NAME")
@click.argument("command", nargs=-1, required=True)
@click.option("--key", "key_file", type=click.Path(dir_okay=False),
              help="Private key (default: ssh.key_file, else agent / ~/.ssh).")
@click.option("--password-env", metavar="VAR", help="Read the password from this variable.")
@click.option("--known-hosts", type=click.Path(dir_okay=False),
              help="known_hosts file (default: ssh.known_hosts, else ~/.ssh/known_hosts).")
@click.option("--accept-new-host", is_flag=True, help="Accept and remember an unknown host key.")
@click.option("--timeout", type=float, default=60.0, show_default=True)
@click.pass_obj
def ssh(obj: Obj, target: str, command: tuple[str, ...], key_file: str | None,
        password_env: str | None, known_hosts: str | None, accept_new_host: bool,
        timeout: float) -> None:
    """Run COMMAND on a host over SSH (a one-off, no mesh):
    operone ssh admin@10.0.0.5 -- uname -a"""
    from ..config import parse_ssh_host
    from ..ssh import SSHClient

    config = obj.config()
    user: str | None = None
    host, port = target, 22
    for entry in config.ssh.hosts:  # a configured legacy host by name
        name, u, h, hport = parse_ssh_host(entry)
        if name == target:
            user, host, port = u, h, hport
            break
    else:
        if "@" in target:
            user, _, target = target.rpartition("@")
        h, colon, ptext = target.rpartition(":")
        if colon and ptext.isdigit():
            host, port = h.strip("[]"), int(ptext)
        else:
            host = target
    password = os.environ.get(password_env) if password_env else None
    key = key_file or config.ssh.key_file
    kh = known_hosts or config.ssh.known_hosts
    with SSHClient(host, port, user, private_key_path=os.path.expanduser(key) if key else None,
                   password=password,
                   known_hosts=Path(kh).expanduser() if kh else None,
                   accept_unknown_host=accept_new_host or config.ssh.accept_unknown_host,
                   command_timeout=timeout) as client:
        r = client.execute(list(command))
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    sys.exit(r.exit_status)
