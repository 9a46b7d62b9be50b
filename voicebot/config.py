"""Settings: one typed schema (pydantic 1.10, the version Rasa 3.6 needs) with defaults in code,
overridden by ``voicebot.yml`` in the project root (or ``--config``).

Relative paths resolve from the settings file's directory (the project root when there is none), so
they mean the same whatever the current directory. The models are immutable: ``replace()`` gives a
validated copy with changes.
"""

from __future__ import annotations

import ipaddress
import os
import re
from inspect import isclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    Extra,
    Field,
    PrivateAttr,
    ValidationError,
    confloat,
    conint,
    constr,
    validator,
)

from voicebot.errors import DataFileError, DataFileErrors

PROJECT_ROOT = Path(os.environ.get("VOICEBOT_HOME", Path(__file__).parent.parent)).resolve()
DEFAULT_FILE = PROJECT_ROOT / "voicebot.yml"

# Integers are strict: YAML already types numbers, and 3.7 quietly becoming 3 would hide a typo.
Milliseconds = conint(strict=True, gt=0)
OptionalMilliseconds = conint(strict=True, ge=0)  # 0 turns the feature off
Count = conint(strict=True, ge=1)
Fraction = confloat(ge=0.0, le=1.0)
Seconds = confloat(gt=0.0)
NonEmpty = constr(min_length=1)

_SettingsT = TypeVar("_SettingsT", bound="Settings")


class Settings(BaseModel, extra=Extra.forbid, allow_mutation=False):
    """A section of the settings: unknown keys are errors, and fields cannot be assigned."""

    def replace(self: _SettingsT, **changes: Any) -> _SettingsT:
        """A copy with ``changes`` applied, validated like the settings file."""
        copy = type(self)(**{**self.dict(), **changes})
        for name in self.__private_attributes__:
            object.__setattr__(copy, name, getattr(self, name))
        return copy


class EndpointConfig(Settings):
    # Defaults measured with scripts/bench_vad.py (see README): mode 3 rejects noise best.
    vad: Literal["webrtc", "silero"] = "webrtc"  # the frame classifier: webrtcvad or Silero VAD
    vad_mode: conint(strict=True, ge=0, le=3) = 3  # webrtcvad's aggressiveness, 3 the most
    speech_start_ms: Milliseconds = 200  # voiced audio needed (within the window) to open an utterance
    speech_start_window_ms: Milliseconds = 300
    end_silence_ms: Milliseconds = 600  # trailing silence that closes an utterance
    max_utterance_ms: Milliseconds = 15_000
    no_input_timeout_ms: Milliseconds = 6_000
    # Audio kept from before speech start, so that ASR hears the first syllable.
    pre_roll_ms: OptionalMilliseconds = 300
    barge_in_min_speech_ms: OptionalMilliseconds = 300  # a cough or click is shorter than this
    # Start recognising (speculatively) after this much trailing silence, before the endpoint
    # fires; the result is used only if the caller stayed silent. Started before the first
    # end-of-turn check (turn_check_ms), the transcript is there when the check is: measured with
    # scripts/bench_latency.py, 100 ms took ~140 ms off one caller's endpoint wait and ~40 ms at
    # 10 callers against 200 ms, for no measurable CPU.
    speculate_after_ms: OptionalMilliseconds = 100
    # End of turn. "smart_turn": at a pause of turn_check_ms the Smart Turn model says how likely
    # the turn is complete and the NLU parses the speculative transcript; the turn ends there when
    # the model gives at least turn_complete_threshold (1.0: never on the model alone), or when
    # the NLU understood the words with turn_understood_confidence and the model gives at least
    # turn_understood_threshold, or, whatever the model says, when the NLU understood them with
    # turn_sure_confidence and the pause is turn_sure_silence_ms long; otherwise after
    # turn_max_silence_ms. Out-of-scope and fallback parses never count as understood. While the
    # caller reads a digit string, a pause ends the turn early only when all expected digits were
    # heard, else after digits_pause_ms. "silence": end_silence_ms of silence, nothing else.
    # Defaults measured with scripts/bench_eot.py (see README).
    end_of_turn: Literal["smart_turn", "silence"] = "smart_turn"
    turn_model: NonEmpty = "models/turn/smart-turn-v3.2-cpu.onnx"
    turn_check_ms: Milliseconds = 200
    turn_complete_threshold: Fraction = 1.0
    turn_understood_confidence: Fraction = 0.85
    turn_understood_threshold: Fraction = 0.5
    turn_sure_confidence: Fraction = 0.95
    turn_sure_silence_ms: Milliseconds = 500
    turn_max_silence_ms: Milliseconds = 800
    digits_pause_ms: Milliseconds = 2000


class AsrConfig(Settings):
    engine: Literal["auto", "vosk", "whisper"] = "auto"
    whisper_model: NonEmpty = "base"
    whisper_threads: Count = 1
    whisper_workers: Count = 2
    # Seconds of padding the Whisper encoder reads after the utterance instead of the full 30 s
    # window (null: the full window); measured with scripts/bench_asr.py (see README).
    whisper_margin_s: Seconds | None = 5.0
    whisper_models_dir: NonEmpty = "models/whisper"
    vosk_models_dir: NonEmpty = "models/vosk"


class NluConfig(Settings):
    engine: Literal["rasa", "remote"] = "rasa"  # rasa runs in-process
    remote_url: AnyHttpUrl = "http://127.0.0.1:5005"
    models_dir: NonEmpty = "models/nlu"
    data_dir: NonEmpty = "nlu_data"


class TtsConfig(Settings):
    # The Piper voice for each language the bot speaks (`voicebot models fetch piper:NAME`).
    voices: dict[NonEmpty, NonEmpty] = Field(
        default_factory=lambda: {
            "en": "en_US-joe-medium",
            "es": "es_MX-claude-high",
            "fa": "fa_IR-amir-medium",
        }
    )
    # Where a language's Piper voice is not installed: this espeak-ng voice speaks it instead
    # (formant speech: clear but robotic), said in the log and by `voicebot models`.
    espeak_voices: dict[NonEmpty, NonEmpty] = Field(
        default_factory=lambda: {"en": "en-us", "es": "es-419", "fa": "fa"}
    )
    voices_dir: NonEmpty = "models/piper"
    length_scale: Seconds = 1.0  # > 1 speaks slower
    threads: Count = 1  # per synthesis; calls synthesise in parallel, so one each shares 2 cores best
    cache_dir: NonEmpty = "models/tts-cache"


class PolicyConfig(Settings):
    accept_threshold: Fraction = 0.70
    reject_threshold: Fraction = 0.40
    # A request taken from further down the recogniser's n-best list needs this much NLU confidence.
    n_best_accept_threshold: Fraction = 0.90
    ambiguity_gap: Fraction = 0.10
    max_consecutive_failures: Count = 2  # no-match / low confidence / no-input before escalating
    max_out_of_scope: Count = 2
    max_auth_attempts: Count = 3  # failed identifications in one call before escalating
    # Across calls (voicebot/dialogue/lockout.py): after auth_lockout_failures identification attempts
    # on one account within auth_lockout_window_s, from any calls, its identification is refused, even
    # with the right PIN, for auth_lockout_s; the caller hears auth_locked and goes to an agent. The
    # actions plugin keeps the count (the demo: in its database), else the server's memory does.
    auth_lockout_failures: Count = 5
    auth_lockout_window_s: Seconds = 900.0
    auth_lockout_s: Seconds = 900.0
    # The caller's first request is checked for another of the served languages (Whisper's language
    # identification); at this probability or more the call switches to it, below it is offered.
    detect_language: bool = True
    language_switch_probability: Fraction = 0.8

    # always: a lowered accept_threshold must also be checked against the default reject_threshold.
    @validator("reject_threshold", always=True)
    def _reject_not_above_accept(cls, reject: float, values: dict[str, Any]) -> float:
        accept = values.get("accept_threshold")  # absent when it failed its own validation
        if accept is not None and reject > accept:
            raise ValueError(f"reject_threshold ({reject}) must not be above accept_threshold ({accept})")
        return reject


class QueueAlertThresholds(Settings):
    """One queue's own alert thresholds; one left out is the default (``AlertsConfig``'s)."""

    service_level_below: Fraction | None = None
    longest_wait_above_s: Seconds | None = None


class AlertsConfig(Settings):
    """When the dashboard raises an alert (voicebot/server/alerts.py)."""

    # A queue's service level over the window below this, judged once min_offered calls were offered.
    service_level_below: Fraction = 0.8
    min_offered: Count = 5
    longest_wait_above_s: Seconds = 60.0  # a caller waiting in the queue now for longer than this
    queues: dict[NonEmpty, QueueAlertThresholds] = {}

    def service_level_threshold(self, queue: str) -> float:
        own = self.queues.get(queue, QueueAlertThresholds()).service_level_below
        return self.service_level_below if own is None else own

    def longest_wait_threshold(self, queue: str) -> float:
        own = self.queues.get(queue, QueueAlertThresholds()).longest_wait_above_s
        return self.longest_wait_above_s if own is None else own


class ServerConfig(Settings):
    host: NonEmpty = "127.0.0.1"
    port: conint(strict=True, ge=1, le=65535) = 8080
    offer_timeout_s: Seconds = 20.0  # an unanswered offer moves to the next ready agent
    announce_interval_s: Seconds = 30.0  # queued callers hear their position this often
    # Who may open the media WebSocket (/media), checked before the upgrade (docs/media-websocket.md).
    # Browsers (an Origin header) only from these origins, e.g. "https://ivr.example.com"; empty: the
    # server's own origin (the one in the request's Host). They must bring a token too: the softphone
    # page holds one for media_token_ttl_s (softphone: false serves no page and issues no tokens).
    media_origins: list[NonEmpty] = []
    softphone: bool = True
    media_token_ttl_s: Seconds = 600.0
    # Gateways (no Origin header) present this token as "Authorization: Bearer ..." or "?token=...";
    # with none set, gateways are taken without a token only from media_gateway_networks.
    media_gateway_token: constr(min_length=16) | None = None
    media_gateway_networks: list[NonEmpty] = ["127.0.0.0/8", "::1/128"]
    # Media connections at once (calls and those still to start); more are refused with 503. Per
    # address counts softphone-token connections only: a gateway carries all its calls from one address.
    max_media_connections: Count = 200
    max_media_connections_per_address: Count = 10
    # A web session ends after this long unseen (an open desk keeps it seen), and this long after the
    # login in any case; sessions are stored, so a restart signs nobody out.
    session_idle_timeout_s: Seconds = 1800.0
    session_lifetime_s: Seconds = 12 * 3600.0
    # Calls (with their traces, handoffs, notes) are deleted this many days after they ended, except
    # one whose callback or wrap-up is still to be done; None keeps them until `voicebot calls forget`.
    call_retention_days: confloat(gt=0.0) | None = None
    # The desk shows a wrap-up as overdue after this long (the disposition is still required) and the
    # dashboard raises an alert.
    wrap_up_limit_s: Seconds = 120.0
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)

    @validator("media_origins", each_item=True)
    def _origin_is_scheme_and_host(cls, origin: str) -> str:
        if not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ValueError(f"'{origin}' is not an origin: scheme and host only, as https://ivr.example.com")
        return origin

    @validator("media_gateway_networks", each_item=True)
    def _network_is_a_cidr(cls, network: str) -> str:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(f"'{network}' is not an address or CIDR (10.0.0.0/8, ::1/128)") from None
        return network


Port = conint(strict=True, ge=0, le=65535)  # 0: any free port (the one chosen is printed)


class NumberRoute(Settings):
    """What a dialled number (SIP Request-URI user, or an AudioSocket gateway's mapping) selects."""

    language: NonEmpty | None = None  # None: the default language
    start: NonEmpty | None = None  # the flow node the call starts at, its home menu; None: flow's start


class SipConfig(Settings):
    enabled: bool = True  # `voicebot serve --no-sip` turns it off for one run
    host: NonEmpty = "127.0.0.1"  # the address SIP and RTP listen on
    port: Port = 5060  # UDP and TCP
    advertised_host: NonEmpty | None = None  # what Contact and SDP name (NAT); None: host
    rtp_port_min: Port = 20000
    rtp_port_max: Port = 20999
    codecs: list[Literal["PCMU", "PCMA"]] = ["PCMU", "PCMA"]  # the order we prefer in an answer
    # Only these peers may send requests (addresses or CIDRs); RTP only from the negotiated peer.
    allowed_peers: list[NonEmpty] = ["127.0.0.0/8", "::1/128"]
    # Digest authentication of INVITEs: user -> password; empty means none (peers are trusted).
    digest_users: dict[NonEmpty, NonEmpty] = {}
    realm: NonEmpty = "voicebot"
    max_dialogs: Count = 50  # calls at once; more get 503
    max_invites_per_s: Seconds = 10.0  # new INVITEs per second from all peers (token bucket); more get 503
    answer_delay_ms: OptionalMilliseconds = 0  # ring this long (180 Ringing) before answering
    no_rtp_timeout_s: Seconds = 30.0  # a caller whose RTP stops this long is hung up
    # Escalation: the contact centre keeps the call and bridges an agent ("contact_center"), or the
    # call is handed to an external ACD/PBX at transfer_uri ("transfer").
    escalation: Literal["contact_center", "transfer"] = "contact_center"
    transfer_uri: NonEmpty | None = None  # sip:queue@pbx.example:5060, where escalated callers go
    # How: REFER the caller's side there (blind transfer), or call it ourselves with the context in
    # the INVITE's headers and bridge the two (B2BUA).
    transfer_method: Literal["refer", "invite"] = "refer"
    # Where a callback is dialled, {caller_id} filled in: sip:{caller_id}@trunk.example:5060. None:
    # callbacks are stored and shown on the dashboard, not dialled.
    callback_uri: NonEmpty | None = None
    ring_timeout_s: Seconds = 45.0  # a callback not answered by then is "no_answer"

    @validator("transfer_uri", always=True)
    def _transfer_needs_a_target(cls, uri: str | None, values: dict[str, Any]) -> str | None:
        if values.get("escalation") == "transfer" and not uri:
            raise ValueError("escalation 'transfer' needs a transfer_uri (sip:...)")
        if uri is not None and not uri.startswith(("sip:", "sips:", "tel:")):
            raise ValueError("transfer_uri must be a sip:, sips: or tel: URI")
        return uri

    @validator("callback_uri")
    def _callback_uri_names_the_caller(cls, uri: str | None) -> str | None:
        if uri is not None and (not uri.startswith("sip:") or "{caller_id}" not in uri):
            raise ValueError("callback_uri must be a sip: URI with {caller_id} in it")
        return uri


class AudioSocketConfig(Settings):
    enabled: bool = True  # `voicebot serve --no-audiosocket` turns it off for one run
    host: NonEmpty = "127.0.0.1"
    port: Port = 9092
    max_calls: Count = 50  # connections at once, calls and those still to send their UUID; more are hung up
    uuid_timeout_s: Seconds = 3.0  # a connection that has not sent its call UUID by then is closed


class TelephonyConfig(Settings):
    sip: SipConfig = Field(default_factory=SipConfig)
    audiosocket: AudioSocketConfig = Field(default_factory=AudioSocketConfig)
    # Dialled number (digits, or the Request-URI's user part) -> language and start node; unknown
    # numbers get the default language and the flow's start.
    numbers: dict[NonEmpty, NumberRoute] = {}

    def route(self, number: str) -> NumberRoute:
        return self.numbers.get(number, NumberRoute())


class Config(Settings):
    language: NonEmpty = "en"  # the default: calls whose language is not chosen or not available
    # The languages calls can be served in (each needs prompts/<language>.yml, NLU data and a
    # voice); the default language is always one of them.
    languages: list[NonEmpty] = ["en", "es", "fa"]
    flow_dir: NonEmpty = "prompts"
    data_dir: NonEmpty = "var"  # call store, demo backend database, server storage
    sessions_dir: NonEmpty = "sessions"  # recorded microphone calls
    # Actions plugins: entry point names (group "voicebot.actions") or dotted module paths, each
    # exposing register(registry, config); the default is the Acme Bank demo.
    plugins: list[NonEmpty] = ["voicebot.demo"]
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)
    asr: AsrConfig = Field(default_factory=AsrConfig)
    nlu: NluConfig = Field(default_factory=NluConfig)
    tts: TtsConfig = Field(default_factory=TtsConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    telephony: TelephonyConfig = Field(default_factory=TelephonyConfig)
    _source: Path = PrivateAttr(default=DEFAULT_FILE)

    @validator("languages", always=True)
    def _default_language_served(cls, languages: list[str], values: dict[str, Any]) -> list[str]:
        default = values.get("language")
        served = list(dict.fromkeys(languages))  # in order, once each
        return served if default is None or default in served else [default, *served]

    @property
    def source(self) -> Path:
        """The settings file these came from (which need not exist: then all are defaults)."""
        return self._source

    def path(self, relative: str | Path) -> Path:
        """Resolves a configured path against the settings file's directory."""
        return self._source.parent / relative  # an absolute ``relative`` replaces the directory


def _read_yaml(source: Path) -> tuple[Any, yaml.Node | None]:
    """The document and its node tree, whose marks give each key's line."""
    loader = yaml.SafeLoader(source.read_text(encoding="utf-8"))
    try:
        node = loader.get_single_node()
        _reject_duplicate_keys(source, node)
        return (None if node is None else loader.construct_document(node)), node
    finally:
        loader.dispose()


def _reject_duplicate_keys(source: Path, node: yaml.Node | None) -> None:
    """YAML keeps the last of two equal keys silently; a setting given twice is a mistake."""
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _reject_duplicate_keys(source, item)
    if not isinstance(node, yaml.MappingNode):
        return
    first_lines: dict[str, int] = {}
    for key, value in node.value:
        line = key.start_mark.line + 1
        if key.value in first_lines:
            message = f"duplicate key '{key.value}' (first at line {first_lines[key.value]})"
            raise DataFileError(source, message, line)
        first_lines[key.value] = line
        _reject_duplicate_keys(source, value)


def _line_of(node: yaml.Node | None, location: tuple[int | str, ...]) -> int | None:
    """The line of the deepest key along ``location`` that the file spells out."""
    line = None
    for key in location:
        if not isinstance(node, yaml.MappingNode):
            break
        entry = next(((k, v) for k, v in node.value if k.value == str(key)), None)
        if entry is None:
            break
        line, node = entry[0].start_mark.line + 1, entry[1]
    return line


def _section_at(location: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The settings model at ``location``, for listing the keys it knows."""
    model: type[BaseModel] = Config
    for key in location:
        field = model.__fields__.get(str(key))
        if field is None or not (isclass(field.type_) and issubclass(field.type_, BaseModel)):
            return None
        model = field.type_
    return model


def _problem(source: Path, root: yaml.Node | None, error: dict[str, Any]) -> DataFileError:
    location = tuple(part for part in error["loc"] if part != "__root__")
    name = ".".join(map(str, location))
    section = _section_at(location[:-1])
    if error["type"] == "value_error.extra" and section is not None:
        message = f"unknown setting '{name}' (known: {', '.join(section.__fields__)})"
    else:
        message = f"{name}: {error['msg']}" if name else error["msg"]
    return DataFileError(source, message, _line_of(root, location))


def load_config(path: Path | None = None) -> Config:
    """Loads settings; a missing default file means all defaults. Every problem in the file is
    reported at once (``DataFileErrors``), each with its line."""
    source = (path or DEFAULT_FILE).resolve()
    if not source.exists():
        if path is not None:
            raise DataFileError(source, "config file not found")
        return Config()
    try:
        overrides, root = _read_yaml(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DataFileError(source, f"invalid YAML: {exc}", mark.line + 1 if mark else None) from exc
    if overrides is None:  # an empty file
        overrides = {}
    if not isinstance(overrides, dict):
        raise DataFileError(source, "top level must be a mapping", root.start_mark.line + 1 if root else None)
    try:
        config = Config.parse_obj(overrides)
    except ValidationError as exc:
        problems = [_problem(source, root, error) for error in exc.errors()]
        # In file order (problems the file cannot point at, like a missing key, last).
        raise DataFileErrors(sorted(problems, key=lambda p: p.line or 1 << 30)) from None
    config._source = source
    return config
