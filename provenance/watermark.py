"""An invisible, keyed watermark in the luma of video frames that survives an H.264 re-encode.

Scheme `jointav-wm1` (spread spectrum over a cell grid, plain numpy):
- The frame is cut into square cells (2x2 pixels below 256 pixels on the short side, 4x4 above:
  small frames need many cells, large ones survive compression better with coarser cells). From the
  key, every cell (i, j) gets a pseudo-random sign (chip) and one of 56 bit slots, by hashing its
  coordinates, so the pattern of a region does not depend on the frame size.
- The 56 bits are 16 pilot bits fixed by the key, a 32-bit payload and a CRC-8 of the payload. Every
  pixel of a cell moves by +-AMPLITUDE luma levels (bit sign x chip), the same in every frame; adding
  the same amount to R, G and B changes luma only. About 40 dB PSNR at AMPLITUDE 2.5.
- Detection needs the key, not the original: each cell's mean luma minus the median of its four
  neighbours (removes most of the picture), clipped to +-CLIP levels (edges would otherwise drown the
  pattern), is summed over all frames and correlated with each bit's chips. Normalised by the residual
  energy, each bit's score is about N(0, 1) on a frame without this key's mark, so the pilot score
  (pilot bits' scores, signed and summed over sqrt(16)) is about N(0, 1) too: present means >= 5.

Limits: no resizing, cropping from the top or left, rotation or frame-rate change (the grid must line
up; cropping at the bottom or right is fine); a strong re-encode (CRF 28 and up) or heavy texture on
small frames costs payload bits before it costs presence; a 64x64 clip holds ~18 cells per bit per
frame, so its payload leans on the CRC. The watermark is in the pictures only: audio is not marked.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputShapeError, InputValueError

SCHEME = "jointav-wm1"
PILOT_BITS, PAYLOAD_BITS, CRC_BITS = 16, 32, 8
TOTAL_BITS = PILOT_BITS + PAYLOAD_BITS + CRC_BITS
AMPLITUDE = 2.5  # luma levels out of 255
CLIP = 3.0  # residual clipping in luma levels: a little above what the pattern itself contributes
PRESENCE_THRESHOLD = 5.0  # pilot score; about N(0, 1) without the mark, so 5 sigma
LARGE_FRAME = 256  # short side (rounded up to even) from which 4x4 cells are used
MIN_CELLS_PER_BIT = 4
LUMA = (0.299, 0.587, 0.114)  # any luma weights summing to 1 see an equal RGB shift as the same luma shift


@dataclass(frozen=True)
class WatermarkKey:
    """A secret of 32 bytes; `key_id` names it in manifests without revealing it."""

    secret: bytes

    def __post_init__(self):
        if len(self.secret) < 16:
            raise InputValueError(f"watermark key: {len(self.secret)} bytes, expected at least 16")

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"jointav-wm1 key id\n" + self.secret).hexdigest()[:16]

    def _seed(self) -> np.uint64:
        return np.uint64(int.from_bytes(hashlib.sha256(b"jointav-wm1 cells\n" + self.secret).digest()[:8], "big"))

    def _pilot(self) -> np.ndarray:
        digest = hashlib.sha256(b"jointav-wm1 pilot\n" + self.secret).digest()
        return np.unpackbits(np.frombuffer(digest, np.uint8))[:PILOT_BITS]


@dataclass(frozen=True)
class WatermarkReading:
    """What detection found. `payload` is the decoded payload when the mark is present, else None."""

    present: bool
    score: float  # pilot score; >= PRESENCE_THRESHOLD means present
    payload: int | None
    payload_ok: bool  # the CRC-8 over the decoded payload matches
    bit_scores: tuple[float, ...]  # signed scores of the payload and CRC bits (sign = bit value)
    frames: int
    cell: int

    def bit_errors(self, expected_payload: int) -> int:
        """How many of the 40 payload+CRC bits read differ from those embedded for `expected_payload`."""
        read = np.asarray(self.bit_scores) > 0
        return int(np.count_nonzero(read != _payload_bits(expected_payload).astype(bool)))


def cell_size(height: int, width: int) -> int:
    # odd sizes are padded by one row/column when written to yuv420p; round up so both sides agree
    short = min(height + height % 2, width + width % 2)
    return 2 if short < LARGE_FRAME else 4


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _cells(key: WatermarkKey, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(chip +-1 float32, bit slot int64) of each cell of a rows x cols grid."""
    i, j = np.meshgrid(np.arange(rows, dtype=np.uint64), np.arange(cols, dtype=np.uint64), indexing="ij")
    h = _mix64(_mix64((i << np.uint64(32)) | j) ^ key._seed())
    chip = np.where((h >> np.uint64(63)) == 1, np.float32(1), np.float32(-1))
    slot = ((h & np.uint64(0xFFFFFFFF)) % np.uint64(TOTAL_BITS)).astype(np.int64)
    return chip, slot


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _payload_bits(payload: int) -> np.ndarray:
    if not 0 <= payload < 1 << PAYLOAD_BITS:
        raise InputValueError(f"watermark payload {payload}: expected an integer in [0, 2**{PAYLOAD_BITS})")
    raw = payload.to_bytes(PAYLOAD_BITS // 8, "big")
    return np.unpackbits(np.frombuffer(raw + bytes([_crc8(raw)]), np.uint8))


def _bits(payload: int, key: WatermarkKey) -> np.ndarray:
    return np.concatenate([key._pilot(), _payload_bits(payload)])


def watermark_pattern(height: int, width: int, key: WatermarkKey, payload: int) -> np.ndarray:
    """The luma offsets `[height, width]` (float32, +-AMPLITUDE) that `embed_watermark` adds to every frame."""
    c = cell_size(height, width)
    chip, slot = _cells(key, -(-height // c), -(-width // c))
    signs = np.where(_bits(payload, key) > 0, np.float32(1), np.float32(-1))
    cells = AMPLITUDE * signs[slot] * chip
    return np.repeat(np.repeat(cells, c, axis=0), c, axis=1)[:height, :width]


def embed_watermark(frames, key: WatermarkKey, payload: int):
    """`frames` with the watermark added; same type, dtype, device and shape `[T, H, W, 3]`.

    Accepts a torch tensor or numpy array, float in 0..1 (ComfyUI IMAGE) or uint8 in 0..255. Call it
    on the final frames just before encoding: the mark survives H.264, not resizing.
    """
    if tuple(frames.shape[-1:]) != (3,) or len(frames.shape) != 4:
        raise InputShapeError(f"embed_watermark frames: expected [T, H, W, 3], found {list(frames.shape)}")
    height, width = frames.shape[1], frames.shape[2]
    pattern = watermark_pattern(height, width, key, payload)[None, :, :, None]
    integer = frames.dtype in (torch.uint8, np.uint8)
    if integer:
        # +-2.5 on whole levels would round every pixel of a cell the same way (half to even); a
        # checkerboard of +-0.25 makes half the pixels move by 2 and half by 3, on average 2.5
        checker = (np.add.outer(np.arange(height), np.arange(width)) % 2 * 0.5 - 0.25).astype(np.float32)
        pattern = pattern + checker[None, :, :, None]
    else:
        pattern = pattern / np.float32(255.0)
    if isinstance(frames, torch.Tensor):
        delta = torch.from_numpy(pattern).to(frames.device)
        if integer:
            return (frames.to(torch.float32) + delta).round_().clamp_(0, 255).to(torch.uint8)
        return (frames + delta.to(frames.dtype)).clamp_(0, 1)
    frames = np.asarray(frames)
    if integer:
        return np.clip(np.rint(frames.astype(np.float32) + pattern), 0, 255).astype(np.uint8)
    return np.clip(frames + pattern.astype(frames.dtype), 0, 1)


def _luma(frames) -> np.ndarray:
    """[T, H, W] float32 luma in 0..255 of uint8 or 0..1 float frames (numpy or torch)."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().to("cpu")
        frames = frames.numpy() if frames.dtype == torch.uint8 else frames.to(torch.float32).numpy()
    frames = np.asarray(frames)
    scale = 1.0 if frames.dtype == np.uint8 else 255.0
    w = np.asarray(LUMA, np.float32) * np.float32(scale)
    return frames.astype(np.float32) @ w


class WatermarkDetector:
    """Accumulates frames (in chunks, so a long clip need not be in memory) and reads the mark once."""

    def __init__(self, key: WatermarkKey):
        self.key = key
        self._sum: np.ndarray | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def add(self, frames) -> None:
        """Add frames `[T, H, W, 3]` (uint8 or 0..1 float, numpy or torch); all must have one size."""
        if len(frames.shape) != 4 or frames.shape[-1] != 3:
            raise InputShapeError(f"watermark detection frames: expected [T, H, W, 3], found {list(frames.shape)}")
        size = (frames.shape[1], frames.shape[2])
        if self._size is not None and size != self._size:
            raise InputShapeError(f"watermark detection frames: {size[0]}x{size[1]} after "
                                  f"{self._size[0]}x{self._size[1]}; expected one frame size per clip")
        self._size = size
        c = cell_size(*size)
        rows, cols = size[0] // c, size[1] // c
        y = _luma(frames)[:, :rows * c, :cols * c]
        means = y.reshape(len(y), rows, c, cols, c).mean(axis=(2, 4))
        p = np.pad(means, ((0, 0), (1, 1), (1, 1)), mode="edge")
        neighbours = np.stack([p[:, :-2, 1:-1], p[:, 2:, 1:-1], p[:, 1:-1, :-2], p[:, 1:-1, 2:]])
        residual = np.clip(means - np.median(neighbours, axis=0), -CLIP, CLIP).sum(axis=0)
        self._sum = residual if self._sum is None else self._sum + residual
        self.frames += len(y)

    def result(self) -> WatermarkReading:
        if self._sum is None:
            raise InputValueError("watermark detection: no frames were added")
        c = cell_size(*self._size)
        if self._sum.size < MIN_CELLS_PER_BIT * TOTAL_BITS:
            raise InputShapeError(f"watermark detection: {self._size[0]}x{self._size[1]} frames hold {self._sum.size} "
                                  f"cells of {c}x{c}; expected at least {MIN_CELLS_PER_BIT * TOTAL_BITS}")
        chip, slot = _cells(self.key, *self._sum.shape)
        num = np.bincount(slot.ravel(), (chip * self._sum).ravel().astype(np.float64), TOTAL_BITS)
        den = np.bincount(slot.ravel(), (self._sum.astype(np.float64) ** 2).ravel(), TOTAL_BITS)
        z = num / np.sqrt(np.maximum(den, 1e-12))
        pilot_signs = np.where(self.key._pilot() > 0, 1.0, -1.0)
        score = float(np.dot(pilot_signs, z[:PILOT_BITS]) / np.sqrt(PILOT_BITS))
        data = z[PILOT_BITS:]
        raw = np.packbits(data > 0).tobytes()
        present = score >= PRESENCE_THRESHOLD
        payload_ok = present and _crc8(raw[:PAYLOAD_BITS // 8]) == raw[-1]
        return WatermarkReading(present=present, score=score,
                                payload=int.from_bytes(raw[:PAYLOAD_BITS // 8], "big") if present else None,
                                payload_ok=payload_ok, bit_scores=tuple(float(v) for v in data),
                                frames=self.frames, cell=c)


def detect_watermark(frames, key: WatermarkKey) -> WatermarkReading:
    """Read the mark of `key` from frames `[T, H, W, 3]` held in memory."""
    detector = WatermarkDetector(key)
    detector.add(frames)
    return detector.result()


def detect_watermark_file(path: str | os.PathLike, key: WatermarkKey, *, chunk: int = 16) -> WatermarkReading:
    """Read the mark of `key` from the first video stream of a media file, decoding `chunk` frames at a time."""
    import av

    detector = WatermarkDetector(key)
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise InputValueError(f"watermark detection: {path} has no video stream")
        batch = []
        for frame in container.decode(container.streams.video[0]):
            batch.append(frame.to_ndarray(format="rgb24"))
            if len(batch) == chunk:
                detector.add(np.stack(batch))
                batch = []
        if batch:
            detector.add(np.stack(batch))
    return detector.result()


def new_payload() -> int:
    """A random 32-bit clip id to carry as the payload."""
    return int.from_bytes(os.urandom(PAYLOAD_BITS // 8), "big")
