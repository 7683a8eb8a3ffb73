"""``image-dynamics keys``: CurveZMQ key files for a backend reachable from other machines.

    image-dynamics keys generate DIR          server pair, one client pair, allow-list folder
    image-dynamics keys add-client DIR NAME   another client pair, its public key allowed

Then: ``image-dynamics serve --bind tcp://0.0.0.0:5555 --curve-secret DIR/server.key_secret
--allowed-clients DIR/allowed_clients``; give each client its NAME.key_secret and server.key.
Key files are pyzmq's plain-text certificates; keep the *.key_secret files private.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="make CurveZMQ keys for a backend reachable from other machines",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    g = ks.add_parser("generate", help="server pair, one client pair and the allowed_clients folder")
    g.add_argument("dir", metavar="DIR")
    g.add_argument("--force", action="store_true", help="overwrite existing server keys")
    a = ks.add_parser("add-client", help="another client pair whose public key the server allows")
    a.add_argument("dir", metavar="DIR")
    a.add_argument("name", metavar="NAME")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..service.security import add_client, generate_keys

    if args.keys_command == "generate":
        paths = generate_keys(args.dir, force=args.force)
        print(f"server keys:      {paths['server_public']} (public), {paths['server_secret']} (secret)")
        print(f"client keys:      {paths['client_public']} (public), {paths['client_secret']} (secret)")
        print(f"allowed clients:  {paths['allowed_clients']}")
        print("serve with:       image-dynamics serve --bind tcp://0.0.0.0:5555 "
              f"--curve-secret {paths['server_secret']} --allowed-clients {paths['allowed_clients']}")
        print(f"give the client:  {paths['server_public']} and {paths['client_secret']}")
    else:
        paths = add_client(args.dir, args.name)
        print(f"client keys: {paths['client_public']} (public, now allowed), {paths['client_secret']} (secret)")
    return 0
