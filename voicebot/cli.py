"""The `voicebot` command line."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voicebot.config import PROJECT_ROOT, Config, load_config
from voicebot.console import ConversationPrinter, quiet_console
from voicebot.designer.commands import add_commands as add_designer_commands
from voicebot.errors import VoicebotError
from voicebot.events import BotSaid, CallEnded, CallEvent, NluParsed, TraceWriter
from voicebot.handoff.redact import redact_logs
from voicebot.nlu.numbers import spoken_digits
from voicebot.server.commands import add_commands as add_server_commands
from voicebot.tester_commands import add_commands as add_tester_commands
from voicebot.tester_commands import add_from_session

log = logging.getLogger("voicebot")
DEMO_SCENARIO = PROJECT_ROOT / "prompts" / "demo" / "demo_call.yml"


# ----- commands -----------------------------------------------------------------------------------


def cmd_call(args: argparse.Namespace, config: Config) -> int:
    from voicebot.audio.wav import load_wav, write_wav
    from voicebot.call import CallSession
    from voicebot.engines import load_engines
    from voicebot.transports.simulated import CallerTurn, run_simulated_call

    turns = [CallerTurn(audio=load_wav(Path(p))) for p in args.audio]
    engines = load_engines(config)
    trace = TraceWriter(Path(args.trace)) if args.trace else None
    listeners: list[Callable[[CallEvent], None]] = [ConversationPrinter()]
    if trace:
        listeners.append(trace)
    session = CallSession(
        engines, caller_id=args.caller_id, listeners=listeners, on_handoff=engines.call_store.save_handoff
    )
    call = asyncio.run(run_simulated_call(session, turns, paced=args.paced))
    if trace:
        trace.close()
    if args.out:
        write_wav(Path(args.out), bytes(call.bot_audio))
    print(f"outcome: {session.outcome}")
    return 0


def cmd_chat(args: argparse.Namespace, config: Config) -> int:
    from voicebot.dialogue.manager import DialogueManager, Hangup, Output, Say
    from voicebot.engines import load_actions, load_flow_checked, load_nlu

    actions = load_actions(config)
    flow = load_flow_checked(config, actions)
    nlu = load_nlu(config, config.language)
    # A text chat has no audio clock; where the dialogue went and the runner-up intents are what a
    # designer trying the flow looks for.
    show = ConversationPrinter(detail=True, clock=False)
    call_id = uuid.uuid4().hex[:12]
    dialogue = DialogueManager(
        flow, config.language, actions, config.policy, call_id=call_id, caller_id="chat", emit=show
    )

    def say(outputs: list[Output]) -> bool:
        """Shows the outputs as the events a call would emit for them; False once the bot hung up.
        A Handoff needs nothing: the dialogue's escalation event already showed its record."""
        for output in outputs:
            if isinstance(output, Say):
                show(BotSaid(call_id=call_id, text=output.text, prompt_id=output.prompt_id))
            elif isinstance(output, Hangup):
                show(CallEnded(call_id=call_id, outcome=output.outcome, reason="bot_hangup"))
                return False
        return True

    print(
        "Type what the caller says. #1234 sends keys, an empty line is silence (no input), Ctrl-D hangs up."
    )
    going = say(dialogue.start())
    while going:
        try:
            line = input("You: ").strip()
        except EOFError:
            show(CallEnded(call_id=call_id, outcome=dialogue.on_hangup().outcome, reason="caller_hangup"))
            break
        if not line:
            going = say(dialogue.on_no_input())
        elif line.startswith("#"):
            for key in line[1:]:
                going = say(dialogue.on_dtmf(key)) and going
        else:
            result = asyncio.run(nlu.parse(line))
            ranking = [{"name": score.name, "confidence": score.confidence} for score in result.ranking]
            show(
                NluParsed(
                    call_id=call_id,
                    text=line,
                    intent=result.intent.name,
                    confidence=result.intent.confidence,
                    ranking=ranking,
                )
            )
            going = say(dialogue.on_utterance(line, result))
    return 0


PIPER_PREFIX = "piper:"  # `voicebot models fetch piper:NAME` fetches a Piper voice, a plain name a Vosk model


def _missing_voices(config: Config) -> list[str]:
    """The configured Piper voices (tts.voices) not installed in tts.voices_dir nor as packages."""
    from voicebot.errors import ModelNotFoundError
    from voicebot.tts.piper_engine import find_voice

    missing = []
    for voice in dict.fromkeys(config.tts.voices.values()):
        try:
            find_voice(voice, [config.path(config.tts.voices_dir)])
        except ModelNotFoundError:
            missing.append(voice)
    return missing


def cmd_models(args: argparse.Namespace, config: Config) -> int:
    from voicebot.asr.catalog import (
        choose_engine,
        fetch_vosk_model,
        installed_models,
        provision_whisper_base,
    )
    from voicebot.downloads import ModelFetchError
    from voicebot.tts.voices import fetch_piper_voice
    from voicebot.turn.smart_turn import TurnModelFetchError, provision_smart_turn

    turn_model = config.path(config.endpoint.turn_model)
    voices_dir = config.path(config.tts.voices_dir)
    if args.action == "provision":
        # Everything the defaults use; what cannot be had offline is said, and the bot falls back.
        steps = [
            lambda: provision_whisper_base(config.path(config.asr.whisper_models_dir)),
            lambda: provision_smart_turn(turn_model.parent),
            lambda: fetch_vosk_model(args.name, config.path(config.asr.vosk_models_dir)),
            *(lambda voice=voice: fetch_piper_voice(voice, voices_dir) for voice in _missing_voices(config)),
        ]
        for step in steps:
            try:
                print(f"installed {step()}")
            except (ModelFetchError, TurnModelFetchError) as exc:
                print(f"warning: {exc}", file=sys.stderr)
        return 0
    if args.action == "fetch":
        try:
            if args.name.startswith(PIPER_PREFIX):
                print(f"installed {fetch_piper_voice(args.name[len(PIPER_PREFIX) :], voices_dir)}")
            else:
                vosk_dir = config.path(config.asr.vosk_models_dir)
                print(f"installed {fetch_vosk_model(args.name, vosk_dir, sha256=args.sha256)}")
        except ModelFetchError as exc:
            print(f"warning: {exc}", file=sys.stderr)
            return 1
        return 0
    from voicebot.engines import synthesis_engine, voice_search_dirs
    from voicebot.nlu.rasa_engine import languages, latest_model
    from voicebot.tts.piper_engine import available_voices

    print("Installed models:")
    for model in installed_models(config):
        print(f"  asr  {model.engine:8} {model.language:4} {model.name:34} {model.source}: {model.path}")
    for name, path in available_voices(voice_search_dirs(config)):
        print(f"  tts  piper    {'':4} {name:34} {path}")
    nlu_dir = config.path(config.nlu.models_dir)
    for language in languages(config.path(config.nlu.data_dir)):
        try:
            print(f"  nlu  rasa     {language:4} {latest_model(language, nlu_dir).name}")
        except VoicebotError as exc:
            print(f"  nlu  rasa     {language:4} (none: {exc})")
    if config.endpoint.end_of_turn == "silence":
        end_of_turn = f"silence ({config.endpoint.end_silence_ms} ms)"
    elif turn_model.is_file():
        end_of_turn = f"smart-turn ({turn_model.name})"
        print(f"  turn smart-turn {'':4} {turn_model.name:34} {turn_model}")
    else:
        end_of_turn = f"silence ({config.endpoint.end_silence_ms} ms): {turn_model} is missing"
    print("Engine per language (served: " + ", ".join(config.languages) + f"; default {config.language}):")
    for language in config.languages:
        tts = synthesis_engine(config, language)
        try:
            engine, model = choose_engine(config, language)
            print(f"  {language}: asr {engine} ({model.name}), end of turn {end_of_turn}, tts {tts}")
        except VoicebotError as exc:
            print(f"  {language}: {exc}; tts {tts}")
    return 0


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    if args.action == "seed":
        from voicebot.demo import database_path
        from voicebot.demo.bank import seed

        db = database_path(config)
        seed(db, reset=args.reset)
        print(f"demo bank ready: {db}")
        return 0
    args.dir = str(DEMO_SCENARIO)
    args.json = False
    args.verbose = True
    return cmd_scenarios(args, config)


def cmd_scenarios(args: argparse.Namespace, config: Config) -> int:
    from tabulate import tabulate

    from voicebot.engines import load_engines, load_synthesizer
    from voicebot.scenarios import load_scenario, load_scenarios, run_scenario

    target = Path(args.dir)
    scenarios = [load_scenario(target)] if target.is_file() else load_scenarios(target)
    engines = load_engines(config)
    # The caller speaks a little slower than the bot, so the two are not the same signal.
    caller_voice = load_synthesizer(config, config.language, length_scale=1.1)
    listeners: list[Callable[[CallEvent], None]] = [ConversationPrinter()] if args.verbose else []

    async def run_all() -> list[Any]:
        return [
            await run_scenario(
                engines, s, caller_voice, noise_db=args.noise_db, telephone=args.telephone,
                paced=args.paced, listeners=listeners,
            )
            for s in scenarios
        ]  # fmt: skip

    results = asyncio.run(run_all())
    if args.json:
        for result in results:
            print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        rows = [
            [
                ("PASS" if r.passed else "FAIL"),
                r.name,
                r.outcome,
                r.reason or "-",
                "; ".join(r.failures)[:100],
            ]
            for r in results
        ]
        print(tabulate(rows, headers=["result", "scenario", "outcome", "reason", "failures"]))
        print(f"{sum(r.passed for r in results)} passed, {sum(not r.passed for r in results)} failed")
    return 0 if all(r.passed for r in results) else 1


# ----- parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebot", description="An offline conversational IVR.")
    parser.add_argument(
        "--config",
        type=Path,
        help="settings file (default: voicebot.yml in the project); its relative paths start from its folder",
    )
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        dest="library_output",  # `scenarios run --verbose` (print the calls) keeps its own `verbose`
        help="show third-party warnings and log lines (hidden by default)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_designer_commands(commands)

    call = commands.add_parser("call", help="play recorded caller audio into a simulated call")
    call.add_argument(
        "--audio", action="append", required=True, help="caller WAV (any rate); repeat for turns"
    )
    call.add_argument("--trace", help="write the call trace (JSON lines) here")
    call.add_argument("--out", help="write what the bot said (16 kHz WAV) here")
    call.add_argument("--caller-id", default="+15550100")
    call.add_argument("--paced", action="store_true", help="run in real time (default: as fast as possible)")
    call.set_defaults(handler=cmd_call)

    commands.add_parser("chat", help="the same dialogue in text").set_defaults(handler=cmd_chat)

    models = commands.add_parser("models", help="list, fetch or provision models")
    models.add_argument("action", nargs="?", choices=["list", "fetch", "provision"], default="list")
    models.add_argument(
        "name",
        nargs="?",
        default="vosk-model-small-en-us-0.15",
        help="a Vosk model, or piper:NAME for a Piper voice",
    )
    models.add_argument(
        "--sha256",
        help="the archive's SHA-256, for a Vosk model with no pinned digest (e.g. vosk-model-small-fa-0.42)",
    )
    models.set_defaults(handler=cmd_models)

    demo = commands.add_parser("demo", help="the demo bank: seed its database or run a demo call")
    demo.add_argument("action", choices=["seed", "call"])
    demo.add_argument("--reset", action="store_true", help="seed: start from fresh demo data")
    demo.add_argument("--paced", action="store_true")
    demo.set_defaults(handler=cmd_demo, noise_db=None, telephone=False)

    scenarios = commands.add_parser("scenarios", help="scripted callers")
    scenario_commands = scenarios.add_subparsers(dest="action", required=True)
    run = scenario_commands.add_parser("run", help="run every *.yml in DIR (or one file)")
    run.add_argument("dir")
    run.add_argument("--json", action="store_true", help="one result object per scenario")
    run.add_argument("--noise-db", type=float, help="add white noise at this SNR to the caller")
    run.add_argument("--telephone", action="store_true", help="pass the caller through 8 kHz G.711")
    run.add_argument("--paced", action="store_true")
    run.add_argument("--verbose", action="store_true", help="print each conversation")
    run.set_defaults(handler=cmd_scenarios)
    add_from_session(scenario_commands)
    add_server_commands(commands)
    add_tester_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_console(args.library_output)  # before any handler imports Rasa, Whisper or Piper
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    redact_logs(functools.partial(spoken_digits, language="en"))  # no log line holds a card number
    try:
        config = load_config(args.config)
        return int(args.handler(args, config))
    except VoicebotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
