"""Reference media of a cameo: the sharpest frontal frames of the subject and a clean stretch of their voice.

Frames. Every candidate frame (at most MAX_CANDIDATE_FRAMES, evenly spread over the recording) is searched for
a frontal face with OpenCV's frontal-face Haar cascade (shipped inside the opencv-python wheels up to 4.x;
a cascade trained on frontal faces does not fire on profiles, which is what "frontal" means here). When no
frame holds a face, as for the toy world's drawn character or any non-photographic subject, the fallback
looks for a centred, high-contrast subject: pixels far from the colour of the frame's border, the largest
connected blob, accepted only if its centre lies in the middle half of the frame. Among the frames with a
face (or, failing that, a subject), the sharpest win: sharpness is the variance of the Laplacian of the
subject's box, resampled to a fixed size so that frames are compared on equal terms. Picks are kept
MIN_PICK_GAP_S apart so that several references show different moments.

Voice. The recording's sound is mixed to mono at 16 kHz (the audio VAE's rate). Frame energies (20 ms, hop
10 ms) above a threshold set between the noise floor and the peak mark voiced frames; pauses shorter than
MAX_PAUSE_S are bridged, and the longest voiced run, cut to at most `max_seconds` (its most voiced window)
and padded by EDGE_PAD_S on each side, is the voice segment. Silence around it is dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from ..audio.finishing import resample
from ..errors import CheckpointFileError, InputShapeError, InputValueError

log = logging.getLogger(__name__)

VOICE_RATE = 16_000  # the audio VAE's sample rate
MAX_CANDIDATE_FRAMES = 48
MIN_PICK_GAP_S = 0.5
SHARPNESS_SIZE = 96  # subject boxes are resampled to this square before the Laplacian
FACE_CASCADE = "haarcascade_frontalface_default.xml"
# Fallback subject: a pixel belongs to it when some channel differs from the border colour by this much.
SUBJECT_CONTRAST = 60
SUBJECT_MIN_AREA = 0.02  # of the frame
VAD_FRAME_S, VAD_HOP_S = 0.020, 0.010
VAD_RANGE_DB = 35.0  # voiced: within this much of the loudest frame ...
VAD_ABOVE_FLOOR_DB = 10.0  # ... and this much above the noise floor (10th percentile)
SILENT_PEAK_DBFS = -55.0  # a loudest frame below this means there is no voice at all
MAX_PAUSE_S = 0.4
MIN_VOICED_S = 0.2
EDGE_PAD_S = 0.05

Box = tuple[int, int, int, int]  # x, y, width, height in pixels


@dataclass(frozen=True)
class Recording:
    """Candidate frames of a recording and its sound, ready for selection."""

    frames: np.ndarray  # uint8 [T, H, W, 3] RGB
    times: np.ndarray  # float64 [T] seconds
    voice: np.ndarray | None  # float32 [S] mono at VOICE_RATE, or None when the file has no sound


@dataclass(frozen=True)
class FramePick:
    """One chosen reference frame."""

    index: int  # into Recording.frames
    time_s: float
    sharpness: float
    box: Box  # the face or subject
    detector: str  # "face" or "subject"


@dataclass(frozen=True)
class VoiceSegment:
    start: int  # samples at VOICE_RATE, inclusive
    end: int  # exclusive
    waveform: np.ndarray  # float32 [end - start]

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / VOICE_RATE


# --------------------------------------------------------------------------------------------- reading

def read_recording(path: str | Path, max_frames: int = MAX_CANDIDATE_FRAMES) -> Recording:
    """Decode a video file with PyAV: at most ~max_frames evenly spread RGB frames, and its sound (mono, 16 kHz).

    Frames are thinned while decoding (keep every n-th, n doubling whenever 2·max_frames are held), so memory
    stays bounded for long recordings.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointFileError(f"recording {path}: no such file")
    try:
        frames, times = _read_frames(path, max_frames)
        voice = _read_voice(path)
    except av.FFmpegError as e:
        raise CheckpointFileError(f"recording {path}: cannot be decoded as a video file ({e})") from e
    if not frames:
        raise InputValueError(f"recording {path}: the video stream has no frames")
    keep = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), max_frames)).round().astype(int))
    return Recording(frames=np.stack([frames[i] for i in keep]), times=np.asarray([times[i] for i in keep]),
                     voice=voice)


def _read_frames(path: Path, max_frames: int) -> tuple[list[np.ndarray], list[float]]:
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise InputValueError(f"recording {path}: has no video stream; expected a video with sound "
                                  f"(or pass an image and a voice clip)")
        stream = container.streams.video[0]
        frames, times, stride = [], [], 1
        for i, frame in enumerate(container.decode(stream)):
            if i % stride:
                continue
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.time) if frame.time is not None else i / float(stream.average_rate or 1))
            if len(frames) >= 2 * max_frames:
                frames, times, stride = frames[::2], times[::2], stride * 2
    return frames, times


def _read_voice(path: Path) -> np.ndarray | None:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=VOICE_RATE)
        chunks = []
        for frame in container.decode(container.streams.audio[0]):
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    return np.concatenate(chunks).astype(np.float32) if chunks else None


def load_voice(voice, what: str = "voice") -> np.ndarray:
    """A voice clip as mono float32 at VOICE_RATE: a sound or video file (decoded with PyAV), or a ComfyUI AUDIO
    dict `{"waveform": [B, C, S], "sample_rate": sr}` (its first clip)."""
    if isinstance(voice, (str, Path)):
        path = Path(voice)
        if not path.is_file():
            raise CheckpointFileError(f"{what} {path}: no such file")
        try:
            waveform = _read_voice(path)
        except av.FFmpegError as e:
            raise CheckpointFileError(f"{what} {path}: cannot be decoded as sound ({e})") from e
        if waveform is None:
            raise InputValueError(f"{what} {path}: has no audio stream")
        return waveform
    if not isinstance(voice, dict) or "waveform" not in voice or "sample_rate" not in voice:
        raise InputValueError(f"{what}: got {type(voice).__name__}, expected a file path or an AUDIO dict "
                              f"{{'waveform': [B, C, S], 'sample_rate': int}}")
    waveform = torch.as_tensor(voice["waveform"], dtype=torch.float32)
    if waveform.ndim != 3 or waveform.shape[-1] == 0:
        raise InputShapeError(f"{what}: waveform of shape {tuple(waveform.shape)}, expected [B, C, S] with S > 0")
    mono = waveform[:1].mean(dim=1, keepdim=True)
    return resample(mono, int(voice["sample_rate"]), VOICE_RATE)[0, 0].numpy()


# --------------------------------------------------------------------------------------------- frames

_CASCADE: list = []  # the loaded face cascade (or None when this OpenCV ships none), loaded once


def _face_cascade():
    if not _CASCADE:
        data = getattr(cv2, "data", None)
        path = Path(data.haarcascades) / FACE_CASCADE if data is not None else None
        cascade = cv2.CascadeClassifier(str(path)) if path is not None and path.is_file() else None
        if cascade is None or cascade.empty():
            log.warning("OpenCV %s ships no %s; cameo frames are chosen by the subject fallback only "
                        "(install opencv-python-headless < 5)", cv2.__version__, FACE_CASCADE)
            cascade = None
        _CASCADE.append(cascade)
    return _CASCADE[0]


def detect_faces(frame: np.ndarray) -> list[Box]:
    """Frontal faces in an RGB frame, largest first (empty when none, or when OpenCV has no cascade)."""
    cascade = _face_cascade()
    if cascade is None:
        return []
    gray = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
    side = max(24, int(0.1 * min(gray.shape)))
    found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    boxes = [tuple(int(v) for v in b) for b in (found if len(found) else [])]
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


def subject_box(frame: np.ndarray) -> Box | None:
    """The centred, high-contrast subject of a non-photographic frame (see the module docstring), or None."""
    h, w = frame.shape[:2]
    border = np.concatenate([frame[:2].reshape(-1, 3), frame[-2:].reshape(-1, 3),
                             frame[:, :2].reshape(-1, 3), frame[:, -2:].reshape(-1, 3)])
    background = np.median(border, axis=0)
    diff = np.abs(frame.astype(np.int16) - background.astype(np.int16)).max(axis=2)
    mask = cv2.morphologyEx((diff >= SUBJECT_CONTRAST).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, _, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, bw, bh, area = (int(v) for v in stats[best])
    cx, cy = centroids[best]
    if area < SUBJECT_MIN_AREA * h * w or not (w / 4 <= cx <= 3 * w / 4 and h / 4 <= cy <= 3 * h / 4):
        return None
    return x, y, bw, bh


def sharpness(frame: np.ndarray, box: Box) -> float:
    """Variance of the Laplacian of the box's grey levels, resampled to SHARPNESS_SIZE² (higher is sharper)."""
    x, y, bw, bh = box
    gray = cv2.cvtColor(np.ascontiguousarray(frame[y:y + bh, x:x + bw]), cv2.COLOR_RGB2GRAY)
    gray = cv2.resize(gray, (SHARPNESS_SIZE, SHARPNESS_SIZE), interpolation=cv2.INTER_AREA
                      if min(bw, bh) > SHARPNESS_SIZE else cv2.INTER_LINEAR)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def pick_frames(frames: np.ndarray, times: np.ndarray, count: int, detector=detect_faces) -> list[FramePick]:
    """Up to `count` reference frames, sharpest first: frontal-face frames if any frame has a face, else frames
    with a centred subject; picks at least MIN_PICK_GAP_S apart. `detector(frame) -> [box, ...]` (largest first)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InputValueError(f"max_frames={count!r}: expected an integer >= 1")
    faces = [detector(f) for f in frames]
    if any(faces):
        candidates = [(i, b[0], "face") for i, b in enumerate(faces) if b]
    else:
        boxes = [subject_box(f) for f in frames]
        candidates = [(i, b, "subject") for i, b in enumerate(boxes) if b is not None]
        if candidates:
            log.warning("reference frames: no frontal face in %d frames; choosing by the centred-subject fallback "
                        "(meant for drawn, non-photographic subjects)", len(frames))
    if not candidates:
        raise InputValueError(
            f"reference frames: none of the {len(frames)} frames shows a frontal face or a centred, high-contrast "
            f"subject; expected the person facing the camera, well lit, in the middle of the picture")
    scored = sorted(((sharpness(frames[i], box), i, box, kind) for i, box, kind in candidates), reverse=True)
    picks: list[FramePick] = []
    for score, i, box, kind in scored:
        if all(abs(times[i] - p.time_s) >= MIN_PICK_GAP_S for p in picks):
            picks.append(FramePick(index=i, time_s=float(times[i]), sharpness=score, box=box, detector=kind))
        if len(picks) == count:
            break
    return picks


def crop_side(shape: tuple[int, ...], box: Box, margin: float = 2.0) -> int:
    """Side in pixels of the square that `square_crop` cuts from a frame of `shape` around `box`."""
    return int(min(max(box[2], box[3]) * margin, shape[0], shape[1]))


def square_crop(frame: np.ndarray, box: Box, size: int, margin: float = 2.0) -> np.ndarray:
    """A `size`² RGB crop centred on `box`, `margin` times its larger side (head and shoulders for a face),
    shifted to stay inside the frame."""
    h, w = frame.shape[:2]
    x, y, bw, bh = box
    side = crop_side(frame.shape, box, margin)
    left = int(np.clip(x + bw / 2 - side / 2, 0, w - side))
    top = int(np.clip(y + bh / 2 - side / 2, 0, h - side))
    crop = np.ascontiguousarray(frame[top:top + side, left:left + side])
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)


def fit_frame(frame: np.ndarray, height: int, width: int, centre: tuple[float, float] | None = None) -> np.ndarray:
    """The largest `height:width` crop of `frame` around `centre` (x, y; default the middle), resized to it."""
    h, w = frame.shape[:2]
    scale = min(h / height, w / width)
    ch, cw = min(h, round(height * scale)), min(w, round(width * scale))
    cx, cy = centre if centre is not None else (w / 2, h / 2)
    left = int(np.clip(round(cx - cw / 2), 0, w - cw))
    top = int(np.clip(round(cy - ch / 2), 0, h - ch))
    crop = np.ascontiguousarray(frame[top:top + ch, left:left + cw])
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA if ch > height else cv2.INTER_CUBIC)


def limit_side(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The frame scaled down so its longer side is at most `max_side`, and the scale applied."""
    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return frame, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), scale


def as_rgb_uint8(image, what: str) -> np.ndarray:
    """A picture as uint8 RGB `[H, W, 3]`: a file path, a uint8 array, or a float array/tensor in 0..1 (a ComfyUI
    IMAGE `[1, H, W, 3]` included)."""
    if isinstance(image, (str, Path)):
        data = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if data is None:
            raise CheckpointFileError(f"{what} {image}: cannot be read as an image")
        return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 16:
        raise InputShapeError(f"{what}: shape {tuple(array.shape)}, expected an RGB picture [H, W, 3] (or [1, H, W, 3]) "
                              f"of at least 16x16")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    return np.clip(np.rint(array.astype(np.float32) * 255), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------- voice

def _frame_db(voice: np.ndarray) -> np.ndarray:
    frame, hop = round(VAD_FRAME_S * VOICE_RATE), round(VAD_HOP_S * VOICE_RATE)
    count = max(1, 1 + (len(voice) - frame) // hop)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(voice, (0, max(0, frame - len(voice)))), frame)[::hop]
    rms = np.sqrt(np.mean(np.square(windows[:count], dtype=np.float64), axis=1))
    return 20 * np.log10(rms + 1e-10)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index runs of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def voiced_segment(voice: np.ndarray, min_seconds: float = 1.0, max_seconds: float = 3.0) -> VoiceSegment:
    """The longest voiced run of a mono 16 kHz waveform (see the module docstring), at most `max_seconds`."""
    if not 0 < min_seconds <= max_seconds:
        raise InputValueError(f"voice seconds ({min_seconds}, {max_seconds}): expected 0 < min <= max")
    voice = np.asarray(voice, dtype=np.float32).reshape(-1)
    if not np.isfinite(voice).all():
        raise InputValueError("voice: the waveform holds NaN or inf values")
    db = _frame_db(voice)
    peak, floor = float(db.max()), float(np.percentile(db, 10))
    if peak < SILENT_PEAK_DBFS:
        raise InputValueError(f"voice: the loudest 20 ms reach only {peak:.1f} dBFS; expected speech louder "
                              f"than {SILENT_PEAK_DBFS:.0f} dBFS")
    voiced = db >= max(peak - VAD_RANGE_DB, floor + VAD_ABOVE_FLOOR_DB)
    if not voiced.any():  # no contrast between floor and peak: a recording that is all voice (or all noise)
        voiced[:] = True
    hop = round(VAD_HOP_S * VOICE_RATE)
    pause = round(MAX_PAUSE_S / VAD_HOP_S)
    for start, end in _runs(~voiced):
        if 0 < start and end < len(voiced) and end - start <= pause:
            voiced[start:end] = True  # bridge short pauses between syllables and words
    runs = [(a, b) for a, b in _runs(voiced) if (b - a) * VAD_HOP_S >= MIN_VOICED_S]
    if not runs:
        raise InputValueError(f"voice: no voiced stretch of at least {MIN_VOICED_S} s found in "
                              f"{len(voice) / VOICE_RATE:.2f} s of sound")
    a, b = max(runs, key=lambda r: (r[1] - r[0], float(db[r[0]:r[1]].mean())))
    longest = round(max_seconds / VAD_HOP_S)
    if b - a > longest:  # keep the loudest window of max_seconds
        energy = np.convolve(10 ** (db[a:b] / 10), np.ones(longest), mode="valid")
        a += int(np.argmax(energy))
        b = a + longest
    pad = round(EDGE_PAD_S * VOICE_RATE)
    start = max(0, a * hop - pad)
    end = min(len(voice), b * hop + round(VAD_FRAME_S * VOICE_RATE) - hop + pad)
    end = min(end, start + round(max_seconds * VOICE_RATE))
    segment = VoiceSegment(start=start, end=end, waveform=voice[start:end].copy())
    if segment.seconds < min_seconds:
        log.warning("voice: the longest voiced stretch is %.2f s, shorter than the %.2f s wanted; a longer, "
                    "continuous recording gives a better voice reference", segment.seconds, min_seconds)
    return segment
