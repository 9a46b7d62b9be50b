"""`voicebot serve`, `voicebot agents add` and `voicebot reload` (registered by voicebot.cli)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import urllib.error
import urllib.request

from voicebot.config import Config
from voicebot.server.auth import ROLES, make_account


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser("serve", help="run the contact-centre server (media WebSocket, desks)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--offer-timeout", type=float, default=20.0, help="seconds before an offer moves on")
    serve.add_argument(
        "--announce-interval", type=float, default=30.0, help="seconds between position announcements"
    )
    serve.set_defaults(handler=cmd_serve)

    agents = subparsers.add_parser("agents", help="agent desk accounts")
    agent_commands = agents.add_subparsers(dest="action", required=True)
    add = agent_commands.add_parser(
        "add", help="create or update an account (password from $VOICEBOT_PASSWORD or a prompt)"
    )
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, default="agent")
    add.set_defaults(handler=cmd_agents_add)

    reload = subparsers.add_parser("reload", help="make a running server reload NLU model, flow and prompts")
    reload.add_argument("--url", default="http://127.0.0.1:8080")
    reload.set_defaults(handler=cmd_reload)


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from aiohttp import web

    from voicebot.engines import load_engines
    from voicebot.server.app import ServerSettings, VoicebotServer

    settings = ServerSettings(args.host, args.port, args.offer_timeout, args.announce_interval)
    server = VoicebotServer(load_engines(config), settings)
    base = f"http://{args.host}:{args.port}"
    print(f"softphone  {base}/\nagent desk {base}/agent\ndashboard  {base}/dashboard", flush=True)
    print(f"media      ws://{args.host}:{args.port}/media\nmetrics    {base}/metrics", flush=True)
    web.run_app(server.app(), host=args.host, port=args.port, print=None)
    return 0


def cmd_agents_add(args: argparse.Namespace, config: Config) -> int:
    from voicebot.server.app import storage_path
    from voicebot.storage import SqliteStorage

    password = os.environ.get("VOICEBOT_PASSWORD") or getpass.getpass(f"password for {args.username}: ")
    try:
        account = make_account(args.username, password, args.role)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    storage = SqliteStorage(storage_path(config))
    storage.save_agent(account)
    storage.close()
    print(f"{args.role} {args.username} saved")
    return 0


def cmd_reload(args: argparse.Namespace, config: Config) -> int:
    from voicebot.server.app import admin_token_path

    token = admin_token_path(config).read_text(encoding="utf-8").strip()
    request = urllib.request.Request(
        f"{args.url.rstrip('/')}/admin/reload", method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            print(json.loads(response.read()))
            return 0
    except urllib.error.HTTPError as exc:
        print(f"error: reload failed: {exc.code} {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
