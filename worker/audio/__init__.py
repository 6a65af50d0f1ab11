"""Audio in: streaming decode of any supported input to fixed-size frames in the session's wire format."""

from worker.audio.convert import Channel, Converter, g711_to_pcm16, pcm16_to_g711
from worker.audio.decode import FrameStream, open_frames
from worker.audio.formats import AudioFormat, Encoding, InputFacts
from worker.audio.wav import WavWriter, read_wav, wav_header

__all__ = [
    "AudioFormat",
    "Channel",
    "Converter",
    "Encoding",
    "FrameStream",
    "InputFacts",
    "WavWriter",
    "g711_to_pcm16",
    "open_frames",
    "pcm16_to_g711",
    "read_wav",
    "wav_header",
]
