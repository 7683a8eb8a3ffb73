"""Who may talk to the backend: the bind policy and CurveZMQ keys.

Policy (``check_bind_policy``):

* loopback (``tcp://127.x.x.x:PORT``, ``tcp://[::1]:PORT``, ``tcp://localhost:PORT``) and
  ``ipc://PATH`` need nothing: only this machine can connect;
* any other address needs CurveZMQ: ``--curve-secret FILE`` (the server's ``.key_secret``) and
  ``--allowed-clients DIR`` (a folder of the clients' public ``.key`` files; anyone else's
  handshake is refused), or the loudly named ``--insecure-allow-remote-without-encryption``;
* ``--curve-secret`` turns CURVE on for loopback addresses too.

Key files are pyzmq's plain-text certificate files (``zmq.auth``), never pickles.
``image-dynamics keys generate DIR`` writes ``server.key`` / ``server.key_secret``, one client
pair ``client.key`` / ``client.key_secret`` and ``allowed_clients/client.key``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

__all__ = [
    "BindAddress",
    "parse_bind",
    "check_bind_policy",
    "generate_keys",
    "add_client",
    "CurveSetup",
    "INSECURE_FLAG",
]

INSECURE_FLAG = "--insecure-allow-remote-without-encryption"
_TCP_RE = re.compile(r"^tcp://(\[[0-9a-fA-F:.]+\]|[^:/\[\]]+):(\d+|\*)$")


@dataclass(frozen=True)
class BindAddress:
    transport: str  # "tcp" or "ipc"
    host: str  # tcp: host as given (brackets stripped); ipc: the path
    port: int | None  # None for ipc; 0 = pick a free port

    @property
    def is_local(self) -> bool:
        if self.transport == "ipc":
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # "*", interface names, host names

    def zmq_endpoint(self) -> str:
        if self.transport == "ipc":
            return f"ipc://{self.host}"
        host = "127.0.0.1" if self.host == "localhost" else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"tcp://{host}:{'*' if not self.port else self.port}"

    def describe(self) -> str:
        return f"port {self.port} on {self.host}" if self.transport == "tcp" else f"ipc path {self.host}"


def parse_bind(address: str) -> BindAddress:
    if address.startswith("ipc://") and len(address) > len("ipc://"):
        return BindAddress("ipc", address[len("ipc://"):], None)
    m = _TCP_RE.match(address)
    if not m:
        raise UserError(f"cannot use bind address {address!r}",
                        "write it as tcp://HOST:PORT (e.g. tcp://127.0.0.1:5555, port 0 picks a free one) or ipc://PATH")
    host, port = m.group(1), m.group(2)
    host = host[1:-1] if host.startswith("[") else host
    port_num = 0 if port == "*" else int(port)
    if not 0 <= port_num <= 65535:
        raise UserError(f"port {port_num} is out of range", "use a port from 1 to 65535, or 0 for a free one")
    return BindAddress("tcp", host, port_num)


def check_bind_policy(bind: BindAddress, *, curve_secret: str | None, allowed_clients: str | None,
                      insecure: bool) -> str:
    """Returns the mode ("local", "curve" or "insecure-remote") or raises ``UserError``."""
    if (curve_secret is None) != (allowed_clients is None):
        raise UserError("--curve-secret and --allowed-clients go together",
                        "pass both: the server's .key_secret file and the folder of allowed client .key files "
                        "(image-dynamics keys generate DIR makes both)")
    if curve_secret is not None:
        return "curve"
    if bind.is_local:
        return "local"
    if insecure:
        return "insecure-remote"
    raise UserError(
        f"refusing to listen on {bind.zmq_endpoint()} without encryption: anyone who can reach it could use "
        "the backend and read its traffic",
        "bind tcp://127.0.0.1:PORT for this machine only, or make keys with `image-dynamics keys generate DIR` and "
        "pass --curve-secret DIR/server.key_secret --allowed-clients DIR/allowed_clients "
        f"({INSECURE_FLAG} skips this check; not recommended)",
    )


def warn_insecure(bind: BindAddress, stream=sys.stderr) -> None:
    line = "!" * 78
    print(line, file=stream)
    print(f"!! WARNING: {INSECURE_FLAG}", file=stream)
    print(f"!! Listening on {bind.zmq_endpoint()} WITHOUT encryption or authentication.", file=stream)
    print("!! Anyone who can reach this address can submit jobs and read every result.", file=stream)
    print("!! Use CurveZMQ keys instead (image-dynamics keys generate DIR).", file=stream)
    print(line, file=stream, flush=True)


# -- keys ----------------------------------------------------------------------------------------

def _create_pair(folder: Path, name: str) -> tuple[Path, Path]:
    import zmq.auth

    public, secret = zmq.auth.create_certificates(str(folder), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


def generate_keys(folder: str | os.PathLike, *, force: bool = False) -> dict[str, Path]:
    """Server pair + one client pair + the allow-list folder holding the client's public key."""
    folder = Path(folder)
    if (folder / "server.key_secret").exists() and not force:
        raise UserError(f"{folder} already holds server keys",
                        "pick another folder, or add clients with `image-dynamics keys add-client DIR NAME`")
    folder.mkdir(parents=True, exist_ok=True)
    server_pub, server_sec = _create_pair(folder, "server")
    allowed = folder / "allowed_clients"
    allowed.mkdir(exist_ok=True)
    out = {"server_public": server_pub, "server_secret": server_sec, "allowed_clients": allowed}
    client = add_client(folder, "client")
    out.update(client)
    return out


def add_client(folder: str | os.PathLike, name: str) -> dict[str, Path]:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name == "server":
        raise UserError(f"bad client name {name!r}", "use letters, digits, '_', '.', '-' (and not 'server')")
    folder = Path(folder)
    allowed = folder / "allowed_clients"
    allowed.mkdir(parents=True, exist_ok=True)
    if (folder / f"{name}.key_secret").exists():
        raise UserError(f"client {name!r} already has keys in {folder}", "pick another name")
    pub, sec = _create_pair(folder, name)
    shutil.copyfile(pub, allowed / pub.name)
    return {"client_public": pub, "client_secret": sec}


class CurveSetup:
    """Makes a socket a CURVE server that accepts only the keys in ``allowed_clients``."""

    def __init__(self, secret_file: str | os.PathLike, allowed_clients: str | os.PathLike) -> None:
        import zmq.auth

        secret_file, allowed = Path(secret_file), Path(allowed_clients)
        if not secret_file.is_file():
            raise UserError(f"--curve-secret {secret_file}: no such file",
                            "pass the server.key_secret written by `image-dynamics keys generate DIR`")
        try:
            public, secret = zmq.auth.load_certificate(str(secret_file))
        except Exception as exc:  # malformed file
            raise UserError(f"cannot read CURVE key file {secret_file}: {exc}", "regenerate it with image-dynamics keys generate") from None
        if not secret:
            raise UserError(f"{secret_file} holds no secret key", "pass the .key_secret file, not the public .key")
        if not allowed.is_dir() or not any(allowed.glob("*.key")):
            raise UserError(f"--allowed-clients {allowed}: no client public keys (*.key) there",
                            "copy each client's public .key file into that folder (image-dynamics keys add-client)")
        self.public_key = public
        self._secret = secret
        self.allowed = allowed
        self._auth = None

    def apply(self, ctx, socket) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        self._auth = ThreadAuthenticator(ctx, log=logging.getLogger("image_dynamics.service.auth"))
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(self.allowed))
        socket.curve_secretkey = self._secret
        socket.curve_publickey = self.public_key
        socket.curve_server = True

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
