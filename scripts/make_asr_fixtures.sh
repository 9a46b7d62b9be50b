#!/usr/bin/env bash
# Dev-only: regenerates the Korean speech fixtures in tests/data/asr/ used by tests/test_asr.py.
# The WAVs are committed so that tests and CI need no espeak-ng; run this only to change them.
# Needs espeak-ng (apt-get install espeak-ng) and the project's .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=tests/data/asr
SPEED_WPM=160  # espeak-ng's default 175 clips the short Korean words the small Vosk model must hear
mkdir -p "$OUT"

# file stem -> Korean text
declare -A PHRASES=(
  [ko_ne]="네"
  [ko_aniyo]="아니요"
  [ko_hana_dul_set]="하나 둘 셋"
  [ko_annyeonghaseyo]="안녕하세요"
)

for stem in "${!PHRASES[@]}"; do
  espeak-ng -v ko -s "$SPEED_WPM" --stdout "${PHRASES[$stem]}" |
    PYTHONPATH=. .venv/bin/python -c '
import io, sys
import numpy as np
import soundfile as sf
from voicebot.audio import SAMPLE_RATE
from voicebot.audio.codecs import resample

samples, rate = sf.read(io.BytesIO(sys.stdin.buffer.read()), dtype="int16")
padding = np.zeros(int(0.3 * rate), dtype=np.int16)  # the endpointer keeps ~300 ms around speech
pcm = resample(np.concatenate([padding, samples, padding]).tobytes(), rate, SAMPLE_RATE)
sf.write(sys.argv[1], np.frombuffer(pcm, dtype=np.int16), SAMPLE_RATE, subtype="PCM_16")
' "$OUT/$stem.wav"
  echo "wrote $OUT/$stem.wav (${PHRASES[$stem]})"
done
