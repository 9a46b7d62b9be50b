"""Understanding: NLU and the dialogue turn each caller input into what the bot says and does.

Inputs (an utterance, a key, a no-input timeout, a stage failure) are handled one at a time, in the
order they happened, in a chain of tasks, so the 20 ms tick never waits for them. The dialogue runs
in a thread because its actions may block (the demo bank's PIN check hashes for ~36 ms); its events
are buffered there and emitted on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from voicebot.asr.base import Transcript
from voicebot.call.faults import Fault, check_faults
from voicebot.call.listener import CallerUtterance
from voicebot.call.threads import DIALOGUE, run_in
from voicebot.dialogue.flow import BACKCHANNEL_GRAMMAR, YES_NO_GRAMMAR, phrase_words
from voicebot.dialogue.manager import DialogueManager, Output, Say
from voicebot.dialogue.policy import Decision, best_understood, decide
from voicebot.events import AsrFinal, CallEvent, DtmfReceived, NluParsed, StageError
from voicebot.nlu.base import NluEngine, NluResult

log = logging.getLogger("voicebot.call")
MAX_HYPOTHESES_PARSED = 4  # alternatives parsed when the best is not understood (~5 ms each)
NOISE_MS = 600  # an empty transcript of less speech than this was a noise the VAD took for speech


class Understanding:
    def __init__(
        self,
        make_dialogue: Callable[[Callable[[CallEvent], None]], DialogueManager],
        nlu_for: Callable[[str], NluEngine],
        *,
        asr_name: str,
        faults: tuple[Fault, ...],
        emit: Callable[[CallEvent], None],
        deliver: Callable[[list[Output], int], None],
        interrupt: Callable[[], None],
        prompt_paused: Callable[[], bool],
        barge_in_heard: Callable[[str | None], None],
    ) -> None:
        self._dialogue_events: list[CallEvent] = []
        self.dialogue = make_dialogue(self._dialogue_events.append)
        self._nlu_for = nlu_for  # each language's NLU
        self._language = self.dialogue.language  # the NLU's language
        self._asr_name = asr_name
        self._faults = faults
        self._emit = emit
        self._deliver = deliver  # the dialogue's outputs for one caller turn
        self._interrupt = interrupt  # stops the bot's speech when a stage failed
        # A barge-in by speech paused the bot's prompt; the utterances said over it are told, once
        # recognised, as a false interruption (the reason) or None (a real one).
        self._prompt_paused = prompt_paused
        self._barge_in_heard = barge_in_heard
        self._barge_ins_to_judge = 0
        self._chain: asyncio.Task[None] | None = None
        # Inputs are numbered as they come; the interruptible speech of those numbered below
        # _cut_below is not delivered: a key came after them (see key).
        self._submitted = 0
        self._handling = 0  # the number of the input being handled
        self._cut_below = 0
        # Speculative parses, by the language and the text parsed.
        self._guesses: dict[tuple[str, str], asyncio.Task[tuple[NluResult, float]]] = {}

    @property
    def busy(self) -> bool:
        return self._chain is not None and not self._chain.done()

    @property
    def judging_barge_in(self) -> bool:
        """Utterances said over the paused prompt are still being recognised."""
        return self._barge_ins_to_judge > 0

    def pending(self) -> list[asyncio.Task[object]]:
        tasks: list[asyncio.Task[object]] = [t for t in self._guesses.values() if not t.done()]
        if self.busy:
            assert self._chain is not None
            tasks.append(self._chain)
        return tasks

    # ----- inputs, in the order they happened ----------------------------------------------------

    def start(self) -> None:
        self._submit(lambda: self._run("dialogue", 0, self.dialogue.start))

    def utterance(self, utterance: CallerUtterance, turn: int) -> None:
        over_paused_prompt = self._prompt_paused()
        if over_paused_prompt:
            self._barge_ins_to_judge += 1
        self._submit(lambda: self._understand(utterance, turn, over_paused_prompt))

    def key(self, key: str, turn: int, accepted: bool) -> None:
        if accepted:
            # A key stops the bot's speech for good (the session stops what plays), including what
            # earlier inputs are still to say: a caller who presses 0 during the greeting's first
            # frames, before it reached the playout, must not hear the whole greeting first.
            self._cut_below = self._submitted
        self._submit(lambda: self._key(key, turn, accepted))

    def no_input(self) -> None:
        self._submit(lambda: self._run("dialogue", 0, self.dialogue.on_no_input))

    def failed(self, stage: str, error: BaseException) -> None:
        self._submit(lambda: self._fail(stage, error))

    def guess(self, text: str, language: str | None = None) -> asyncio.Task[tuple[NluResult, float]]:
        """A speculative transcript (in ``language``, if not the call's): parse it now, so the intent
        is ready if it is the final one."""
        key = (language or self._language, text)
        if key not in self._guesses:
            self._guesses[key] = asyncio.create_task(self._parse_timed(text, key[0]))
        return self._guesses[key]

    def use_language(self, language: str) -> None:
        """The call goes on in ``language``: its NLU from here on."""
        self._language = language

    # ----- the work ----------------------------------------------------------------------------

    def _submit(self, work: Callable[[], Awaitable[None]]) -> None:
        previous = self._chain
        number = self._submitted
        self._submitted += 1

        async def after_previous() -> None:
            if previous is not None:
                await asyncio.wait([previous])  # whatever became of it, this input still counts
            self._handling = number
            try:
                await work()
            except Exception as exc:  # a fault outside the stages (an event listener, say)
                await self._fail("call", exc)

        self._chain = asyncio.create_task(after_previous())

    async def _key(self, key: str, turn: int, accepted: bool) -> None:
        # Emitted once the inputs before this key are handled, so it is masked (CallSession.emit)
        # by what the dialogue is collecting when the key arrives.
        self._emit(DtmfReceived(digits=key))
        if accepted:
            await self._run("dialogue", turn, lambda: self.dialogue.on_dtmf(key))

    async def _understand(self, utterance: CallerUtterance, turn: int, over_paused_prompt: bool) -> None:
        try:
            check_faults(self._faults, "asr", turn)
            heard = await utterance.recognition
        except Exception as exc:
            utterance.recognition.cancel()
            if over_paused_prompt:
                self._judged_barge_in(None)  # what the caller said is unknown: take it as meant
            await self._fail("asr", exc)
            return
        transcript = heard.transcript
        # The caller's words as heard; CallSession.emit masks what the dialogue is collecting.
        self._emit(
            AsrFinal(
                text=transcript.text,
                confidence=round(transcript.confidence, 3),
                words=[w.__dict__ for w in transcript.words],
                alternatives=list(transcript.alternatives),
                engine=self._asr_name,
                compute_ms=round(heard.asr_ms, 1),
                audio_duration_ms=utterance.audio_ms,
                speculative=heard.speculative,
            )
        )
        if over_paused_prompt and (unheard := self._unheard(transcript)):
            self._judged_barge_in(unheard)
            self._forget_guesses()
            return  # no turn for the dialogue: no answer, no retry counted
        if not transcript.text.strip() and utterance.speech_ms < NOISE_MS:
            self._forget_guesses()
            return
        # The caller's first request may be in another of the call's languages (RecognitionHints.
        # languages): recognised in it when the recogniser was sure enough, else offered.
        switch_to = transcript.text_language if transcript.text_language != self.dialogue.language else None
        offer = transcript.language if transcript.language not in (None, transcript.text_language) else None
        if switch_to is not None:
            self.use_language(switch_to)
        try:
            check_faults(self._faults, "nlu", turn)
            result, nlu_ms = await self._parse(transcript.text)
            text, alternatives = transcript.text, transcript.alternatives
            if self.dialogue.takes_request and alternatives:
                text, result, alternatives, extra_ms = await self._understood_hypothesis(transcript, result)
                nlu_ms += extra_ms
        except Exception as exc:
            if over_paused_prompt:
                self._judged_barge_in(None)
            await self._fail("nlu", exc)
            return
        self._emit(
            NluParsed(
                text=result.text,
                intent=result.intent.name,
                confidence=round(result.intent.confidence, 3),
                ranking=[{"name": r.name, "confidence": round(r.confidence, 3)} for r in result.ranking[:5]],
                entities=[{"entity": e.entity, "value": e.value} for e in result.entities],
                compute_ms=round(nlu_ms, 2),
                from_n_best=text != transcript.text,
            )
        )
        if over_paused_prompt and self._judged_barge_in(self._doubtful(transcript, result)):
            return

        def answer() -> list[Output]:
            outputs = self.dialogue.on_utterance(text, result, alternatives, language=switch_to)
            return outputs + (self.dialogue.offer_language(offer) if offer else [])

        await self._run("dialogue", turn, answer)

    async def _understood_hypothesis(
        self, transcript: Transcript, best: NluResult
    ) -> tuple[str, NluResult, tuple[str, ...], float]:
        """The hypothesis to act on (see dialogue.policy.best_understood), with the others as its
        alternatives; the recogniser's best is kept unless it is not understood and another is."""
        if decide(best, self.dialogue.policy) is Decision.ACCEPT:
            return transcript.text, best, transcript.alternatives, 0.0
        started = time.monotonic()
        hypotheses = [transcript.text, *transcript.alternatives[:MAX_HYPOTHESES_PARSED]]
        nlu = self._nlu_for(self._language)
        parsed = [best, *[await nlu.parse(text) for text in hypotheses[1:]]]
        chosen = best_understood(parsed, self.dialogue.policy)
        others = tuple(
            text for i, text in enumerate([transcript.text, *transcript.alternatives]) if i != chosen
        )
        return hypotheses[chosen], parsed[chosen], others, (time.monotonic() - started) * 1000

    def _judged_barge_in(self, false_interruption: str | None) -> str | None:
        self._barge_ins_to_judge -= 1
        self._barge_in_heard(false_interruption)
        return false_interruption

    def _unheard(self, transcript: Transcript) -> str | None:
        """Why the caller's words over a paused prompt were no interruption, before the NLU: nothing
        recognised, or only backchannel ("uh-huh", "okay") while no yes/no answer is expected."""
        if not transcript.text.strip():
            return "empty"
        backchannel = self.dialogue.prompts.grammars.get(BACKCHANNEL_GRAMMAR, ())
        if only_backchannel(transcript.text, backchannel) and not self._expects_yes_no():
            return "backchannel"
        return None

    def _doubtful(self, transcript: Transcript, result: NluResult) -> str | None:
        """ "low_confidence" when neither the recogniser (below the policy's reject threshold) nor
        the NLU (below its accept threshold) is sure: noise that came out as words. Whisper is
        unsure of short words, so a clear "agent" at ASR confidence 0.3 still interrupts."""
        policy = self.dialogue.policy
        unsure = (
            transcript.confidence < policy.reject_threshold
            and result.intent.confidence < policy.accept_threshold
        )
        return "low_confidence" if unsure else None

    def _expects_yes_no(self) -> bool:
        """A confirmation (its yes/no grammar is on), or a node that routes yes and no ("Is there
        anything else?"), where "okay" or "yeah" is an answer."""
        yes_no = self.dialogue.prompts.grammars.get(YES_NO_GRAMMAR)
        confirming = yes_no is not None and self.dialogue.hints().grammar == yes_no
        return confirming or not {"affirm", "deny"}.isdisjoint(self.dialogue.node.routes)

    async def _parse(self, text: str) -> tuple[NluResult, float]:
        guess = self._guesses.pop((self._language, text), None)
        self._forget_guesses()
        if guess is not None:
            try:
                return await guess
            except Exception:
                log.warning("speculative parse failed; parsing again", exc_info=True)
        return await self._parse_timed(text)

    async def _parse_timed(self, text: str, language: str | None = None) -> tuple[NluResult, float]:
        started = time.monotonic()
        result = await self._nlu_for(language or self._language).parse(text)
        return result, (time.monotonic() - started) * 1000

    def _forget_guesses(self) -> None:
        for task in self._guesses.values():
            task.cancel()
        self._guesses.clear()

    async def _run(self, stage: str, turn: int, produce: Callable[[], list[Output]]) -> None:
        try:
            check_faults(self._faults, stage, turn)
            outputs = await run_in(DIALOGUE, produce)
        except Exception as exc:
            self._flush_dialogue_events()
            await self._fail(stage, exc)
            return
        self._flush_dialogue_events()
        self._deliver(self._not_cut(outputs), turn)

    async def _fail(self, stage: str, error: BaseException) -> None:
        """Any stage fault: the caller hears that something went wrong and goes to an agent."""
        log.error("%s failed", stage, exc_info=error)
        self._emit(StageError(stage=stage, error=repr(error)))
        self._interrupt()
        ended = self.dialogue.ended
        if ended is not None:
            self._deliver([ended], 0)  # already leaving (e.g. the transfer prompt failed)
            return
        outputs = self.dialogue.on_error(stage, error)
        self._flush_dialogue_events()
        self._deliver(self._not_cut(outputs), 0)

    def _not_cut(self, outputs: list[Output]) -> list[Output]:
        """The outputs of the input being handled, less its interruptible speech if a key came
        after it (see key); what is not speech (a handoff, a hang-up, a language switch) stays."""
        if self._handling >= self._cut_below:
            return outputs
        return [o for o in outputs if not (isinstance(o, Say) and o.interruptible)]

    def _flush_dialogue_events(self) -> None:
        events, self._dialogue_events[:] = list(self._dialogue_events), []
        for event in events:
            self._emit(event)


def only_backchannel(text: str, phrases: Iterable[str]) -> bool:
    """Whether ``text`` is nothing but backchannel phrases, one or several ("okay, uh-huh")."""
    known = set(map(phrase_words, phrases))
    words = phrase_words(text)
    # covered[i]: the first i words are backchannel phrases one after another
    covered = [True] + [False] * len(words)
    for end in range(1, len(words) + 1):
        covered[end] = any(covered[start] and words[start:end] in known for start in range(end))
    return bool(words) and covered[-1]
