"""`voicebot serve`, `voicebot agents add` and `voicebot reload` (registered by voicebot.cli)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import urllib.error
import urllib.request

from pydantic import ValidationError

from voicebot.config import Config, ServerConfig
from voicebot.errors import VoicebotError
from voicebot.server.auth import ROLES, make_account

# `voicebot serve` options: the `server:` setting each one overrides, its type and what it means.
SERVE_OPTIONS = {
    "--host": ("host", str, "address to listen on"),
    "--port": ("port", int, "TCP port"),
    "--offer-timeout": ("offer_timeout_s", float, "seconds before an unanswered offer moves on"),
    "--announce-interval": ("announce_interval_s", float, "seconds between queue position announcements"),
}


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser("serve", help="run the contact-centre server (media WebSocket, desks)")
    defaults = ServerConfig()
    for option, (setting, kind, meaning) in SERVE_OPTIONS.items():
        # No argparse default: an option that is not given leaves the settings file's value.
        serve.add_argument(
            option,
            dest=setting,
            type=kind,
            help=f"{meaning} (default: server.{setting} in the settings, else {getattr(defaults, setting)})",
        )
    serve.add_argument(
        "--no-sip",
        action="store_true",
        help="take no SIP calls this run (default: telephony.sip.enabled)",
    )
    serve.add_argument(
        "--no-audiosocket",
        action="store_true",
        help="take no Asterisk AudioSocket calls this run (default: telephony.audiosocket.enabled)",
    )
    serve.set_defaults(handler=cmd_serve)

    agents = subparsers.add_parser("agents", help="agent desk accounts")
    agent_commands = agents.add_subparsers(dest="action", required=True)
    add = agent_commands.add_parser(
        "add", help="create or update an account (password from $VOICEBOT_PASSWORD or a prompt)"
    )
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, default="agent")
    add.add_argument(
        "--languages",
        type=comma_list,
        default=["en"],
        help="the callers' languages the agent speaks, comma-separated, of the settings' languages"
        " (default: en)",
    )
    add.add_argument(
        "--queues",
        type=comma_list,
        default=[],
        help="the queues the agent serves, comma-separated (default: every queue)",
    )
    add.add_argument("--ui-language", default="en", help="the language of the desk's labels (default: en)")
    add.add_argument(
        "--time-zone",
        help="the time zone the desk shows times in, e.g. Europe/Madrid (default: the browser's)",
    )
    add.set_defaults(handler=cmd_agents_add)

    calls = subparsers.add_parser("calls", help="the stored calls")
    call_commands = calls.add_subparsers(dest="action", required=True)
    forget = call_commands.add_parser(
        "forget", help="delete everything kept about one caller's calls (a caller's request to be forgotten)"
    )
    forget.add_argument("caller_id", help="the caller id as stored (the number, as the line gave it)")
    forget.set_defaults(handler=cmd_calls_forget)

    reload = subparsers.add_parser("reload", help="make a running server reload NLU model, flow and prompts")
    reload.add_argument(
        "--url", help="the running server (default: server.host and server.port in the settings)"
    )
    reload.set_defaults(handler=cmd_reload)


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def agent_profile_problems(args: argparse.Namespace, config: Config) -> list[str]:
    """What is wrong with the languages and queues `agents add` was given (none: nothing)."""
    served = ", ".join(config.languages)
    problems = [
        f"language '{language}' is not one of the languages served ({served})"
        for language in args.languages
        if language not in config.languages
    ]
    if not args.languages:
        problems.append(f"--languages needs at least one of the languages served ({served})")
    if args.ui_language not in config.languages:
        problems.append(f"--ui-language '{args.ui_language}' is not one of the languages served ({served})")
    if args.queues:
        from voicebot.dialogue.flow import load_flow

        flow = load_flow(config.path(config.flow_dir), check_prompts=False)
        known = sorted({flow.default_queue, *flow.queues.values()})
        problems += [
            f"queue '{queue}' is not a queue of the flow ({', '.join(known)})"
            for queue in args.queues
            if queue not in known
        ]
    return problems


def server_settings(args: argparse.Namespace, config: Config) -> ServerConfig:
    """The settings' ``server`` section with the `voicebot serve` options that were given."""
    given = {
        setting: value
        for setting, _, _ in SERVE_OPTIONS.values()
        if (value := getattr(args, setting)) is not None
    }
    try:
        return config.server.replace(**given)
    except ValidationError as exc:
        options = {setting: option for option, (setting, _, _) in SERVE_OPTIONS.items()}
        raise VoicebotError(
            "; ".join(f"{options[str(error['loc'][0])]}: {error['msg']}" for error in exc.errors())
        ) from None


def serve_config(args: argparse.Namespace, config: Config) -> Config:
    """The settings with the telephone lines that `voicebot serve --no-...` turns off for this run."""
    telephony = config.telephony
    if args.no_sip:
        telephony = telephony.replace(sip=telephony.sip.replace(enabled=False))
    if args.no_audiosocket:
        telephony = telephony.replace(audiosocket=telephony.audiosocket.replace(enabled=False))
    return config.replace(telephony=telephony)


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from aiohttp import web

    from voicebot.engines import load_engines
    from voicebot.server.app import VoicebotServer, handoff_token_path

    settings = server_settings(args, config)
    config = serve_config(args, config)
    server = VoicebotServer(load_engines(config), settings)
    base = f"http://{settings.host}:{settings.port}"
    print(f"softphone  {base}/\nagent desk {base}/agent\ndashboard  {base}/dashboard", flush=True)
    print(f"media      ws://{settings.host}:{settings.port}/media\nmetrics    {base}/metrics", flush=True)
    token_file = handoff_token_path(config)
    print(f"handoffs   {base}/api/handoffs/CALL_ID (bearer token in {token_file})", flush=True)
    app = server.app()

    async def print_telephone_lines(_: web.Application) -> None:
        # After the server's own start-up, when a port 0 has become the one the system chose.
        if server.sip is not None:
            host, port = config.telephony.sip.host, server.sip.port
            print(f"sip        sip:ivr@{host}:{port} (UDP and TCP)", flush=True)
        if server.audiosocket is not None:
            host, port = config.telephony.audiosocket.host, server.audiosocket.port
            print(f"audiosocket tcp://{host}:{port}", flush=True)

    app.on_startup.append(print_telephone_lines)
    web.run_app(app, host=settings.host, port=settings.port, print=None)
    return 0


def cmd_agents_add(args: argparse.Namespace, config: Config) -> int:
    from voicebot.server.app import storage_path
    from voicebot.storage import SqliteStorage

    problems = agent_profile_problems(args, config)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    password = os.environ.get("VOICEBOT_PASSWORD") or getpass.getpass(f"password for {args.username}: ")
    try:
        account = make_account(
            args.username,
            password,
            args.role,
            languages=args.languages,
            queues=args.queues,
            ui_language=args.ui_language,
            time_zone=args.time_zone,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    storage = SqliteStorage(storage_path(config))
    storage.save_agent(account)
    storage.close()
    queues = ", ".join(account.queues) or "every queue"
    print(
        f"{args.role} {args.username} saved: speaks {', '.join(account.languages)}; serves {queues};"
        f" desk in {account.ui_language}"
    )
    return 0


def cmd_calls_forget(args: argparse.Namespace, config: Config) -> int:
    from voicebot.handoff.record import CallStore
    from voicebot.server.app import storage_path
    from voicebot.storage import SqliteStorage

    # The server's store (a running server shares it safely: SQLite in WAL mode) and the JSON
    # records of calls placed from the command line.
    storage = SqliteStorage(storage_path(config))
    try:
        calls = storage.forget_caller(args.caller_id)
    finally:
        storage.close()
    records = CallStore(config.path(config.data_dir) / "calls").forget_caller(args.caller_id)
    print(
        f"{args.caller_id}: deleted {calls} stored calls (trace, handoff, queue, disposition, callbacks)"
        f" and {records} command-line handoff records; calls still on or in wrap-up are kept"
    )
    return 0


def cmd_reload(args: argparse.Namespace, config: Config) -> int:
    from voicebot.server.app import admin_token_path

    token = admin_token_path(config).read_text(encoding="utf-8").strip()
    url = args.url or f"http://{config.server.host}:{config.server.port}"
    request = urllib.request.Request(
        f"{url.rstrip('/')}/admin/reload", method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            print(json.loads(response.read()))
            return 0
    except urllib.error.HTTPError as exc:
        print(f"error: reload failed: {exc.code} {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
