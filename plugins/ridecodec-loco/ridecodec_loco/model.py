"""`loco`: an adaptive predictive density model in the spirit of LOCO-I (JPEG-LS) and CALIC.

For each pixel x (one channel of it) the model

1. predicts it from its causal neighbours with CALIC's gradient-adjusted predictor (GAP), in
   integer arithmetic at 1/8-pixel resolution::

         NN NNE            dh = |W-WW| + |N-NW| + |N-NE|      (horizontal gradient energy)
      NW N  NE             dv = |W-NW| + |N-NN| + |NE-NNE|    (vertical gradient energy)
   WW W  x                 sharp edges: predict W or N; otherwise (W+N)/2 + (NE-NW)/4,
                           pulled toward W or N by how much dv and dh differ;

   in colour images, channels 1 and 2 (G, B) add the previous channel's GAP error at the same
   pixel (residuals of neighbouring channels are strongly correlated);

2. measures the local activity E = dh + dv + 2|e_W|, where e_W is the prediction error at the
   left neighbour (for G and B: (dh + dv)/4 + |e_prev channel|/2 + 2|e_W|, as the previous
   channel's error already says most about the local activity), and quantises it into one of 27
   contexts, a separate set of 27 for G and B;

3. gives x a discretized logistic distribution centred on the prediction, with the scale of its
   context: P(x = k) = F(k + 1/2) - F(k - 1/2), the edge values 0 and 255 taking the tails, mixed
   with a uniform floor of 2^-13 so that no value costs more than about 21 bits.

The per-context scales were calibrated once on BSDS500 train and test images, gray for the first
set of contexts and colour (G and B) for the second (see calibrate.py); nothing is learned by
gradient descent.

Exact on every device by construction: the prediction and context are integer arithmetic, the
logistic CDF is a float64 table shipped as data (tails.npy), and every probability is derived from
its entries with single IEEE operations (subtract, multiply, add) that are correctly rounded on any
hardware. So a file encoded on a GPU decodes on a CPU, and on any other machine.
"""

from __future__ import annotations

import functools
import threading
from importlib import resources

import numpy as np
import torch

from ridecodec.models import ALPHABET_SIZE, CausalReach, DensityModel

#: Context boundaries on the activity E (whole pixel units): context b holds
#: ACTIVITY_THRESHOLDS[b-1] <= E < ACTIVITY_THRESHOLDS[b].
# fmt: off
ACTIVITY_THRESHOLDS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 18, 22, 27, 33, 40, 48, 58, 70, 85,
                       103, 125, 152, 185, 225, 275, 335)
# fmt: on

#: The shipped logistic tail table, one row per context (written by calibrate.py).
TAILS_FILE = "tails.npy"

#: Contexts of each kind: unchained channels (gray, R, alpha), then chained ones (G, B).
CONTEXTS_PER_KIND = len(ACTIVITY_THRESHOLDS) + 1
CONTEXTS = 2 * CONTEXTS_PER_KIND

UNIFORM_FLOOR = 2.0**-13  # weight of the uniform component
EIGHTHS = 8  # predictions are in units of 1/8 pixel
MAX_PREDICTION = EIGHTHS * (ALPHABET_SIZE - 1)
INTER_CHANNEL = (1, 2)  # channels that add the previous channel's error (G and B, not alpha)
_TABLE_LOCK = threading.Lock()  # a model's table is built once, by whichever thread asks first


# Every neighbour the model reads, as (row, column) offsets: those of the pixel itself, and those of
# its left neighbour W, whose prediction error enters the context.
_OWN = {"n": (-1, 0), "w": (0, -1), "nw": (-1, -1), "ne": (-1, 1), "nn": (-2, 0), "ww": (0, -2), "nne": (-2, 1)}
_OFFSETS = sorted({offset for d_row, d_col in _OWN.values() for offset in ((d_row, d_col), (d_row, d_col - 1))})
_COLUMN = {offset: i for i, offset in enumerate(_OFFSETS)}


@functools.cache
def _offsets_on(device: torch.device) -> torch.Tensor:
    """_OFFSETS as a tensor, made once per device (not a host-to-device copy at every step)."""
    return torch.tensor(_OFFSETS, device=device)


def _neighbours(
    image: torch.Tensor, chain: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The causal neighbours of each position and of its left neighbour, in one gather.

    ``image`` is (C, H, W), ``chain`` the K channels wanted; returns int32 tensors of shape
    (K, 2, N): [:, 0] for the pixels at (rows, cols), [:, 1] for their left neighbours.
    Neighbours outside the image are replaced by the nearest known ones (N by W and vice versa,
    NW and NE by N, NN by N, WW by W, NNE by NE; a pixel with neither N nor W sees 128).
    """
    _, height, width = image.shape
    offsets = _offsets_on(rows.device)
    r = rows[:, None] + offsets[:, 0]  # (N, offsets)
    c = cols[:, None] + offsets[:, 1]
    inside = (r >= 0) & (c >= 0) & (c < width)
    # Index the flat image: indexing image[chain] first would copy whole planes at every step.
    position = r.clamp(0, height - 1) * width + c.clamp(0, width - 1)
    values = image.reshape(-1)[chain[:, None, None] * (height * width) + position].to(torch.int32)  # (K, N, offsets)

    def at(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        d_row, d_col = _OWN[name]
        own, left = _COLUMN[(d_row, d_col)], _COLUMN[(d_row, d_col - 1)]
        pair = torch.stack((values[:, :, own], values[:, :, left]), dim=1)
        return pair, torch.stack((inside[:, own], inside[:, left]))

    n, n_in = at("n")
    w, w_in = at("w")
    mid_grey = torch.full_like(n, 128)
    n, w = torch.where(n_in, n, torch.where(w_in, w, mid_grey)), torch.where(w_in, w, torch.where(n_in, n, mid_grey))
    nw, nw_in = at("nw")
    ne, ne_in = at("ne")
    nn, nn_in = at("nn")
    ww, ww_in = at("ww")
    nne, nne_in = at("nne")
    ne = torch.where(ne_in, ne, n)
    return {
        "n": n,
        "w": w,
        "ne": ne,
        "nw": torch.where(nw_in, nw, n),
        "nn": torch.where(nn_in, nn, n),
        "ww": torch.where(ww_in, ww, w),
        "nne": torch.where(nne_in, nne, ne),
    }


def _gradient_adjusted_prediction(p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """CALIC's GAP in eighths of a pixel, and the activity dh + dv."""
    n, w, ne, nw, nn, ww, nne = (p[k] for k in ("n", "w", "ne", "nw", "nn", "ww", "nne"))
    dh = (w - ww).abs() + (n - nw).abs() + (n - ne).abs()
    dv = (w - nw).abs() + (n - nn).abs() + (ne - nne).abs()
    d = dv - dh  # > 0: strong vertical change, so the row neighbour W predicts better
    smooth = 4 * (w + n) + 2 * (ne - nw)
    w8, n8 = EIGHTHS * w, EIGHTHS * n
    prediction = smooth
    prediction = torch.where(d > 8, (3 * smooth + w8) // 4, prediction)
    prediction = torch.where(d > 32, (smooth + w8) // 2, prediction)
    prediction = torch.where(d > 80, w8, prediction)
    prediction = torch.where(d < -8, (3 * smooth + n8) // 4, prediction)
    prediction = torch.where(d < -32, (smooth + n8) // 2, prediction)
    prediction = torch.where(d < -80, n8, prediction)
    return prediction, dh + dv


def _rounded_pixels(eighths: torch.Tensor) -> torch.Tensor:
    return (eighths.abs() + EIGHTHS // 2) // EIGHTHS


def prediction_and_context(
    image: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, channel: int, thresholds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's whole state for one channel of the pixels at (rows, cols): the prediction in
    eighths (clamped to [0, 8*255]) and the context (0 .. CONTEXTS-1).

    ``image`` is (C, H, W) uint8 and must hold every earlier pixel and channels < ``channel`` of
    these. G and B add the previous channel's GAP error at the same pixel to their own GAP, and
    use the second half of the contexts, whose scales were calibrated on colour images.
    """
    chained = channel in INTER_CHANNEL
    first = channel - 1 if chained else channel
    neighbours = _neighbours(image, torch.arange(first, channel + 1, device=rows.device), rows, cols)
    gap, activity = _gradient_adjusted_prediction(neighbours)  # (channels, 2, N): pixel, left pixel
    gap = gap.clamp(0, MAX_PREDICTION)
    if chained:
        # [0]: the pixel itself, whose previous channel is known; [1]: its left neighbour
        previous = torch.stack((image[first, rows, cols].to(torch.int32), neighbours["w"][0, 0]))
        previous_error = EIGHTHS * previous - gap[0]
        prediction = (gap[1] + previous_error).clamp(0, MAX_PREDICTION)
        # the previous channel's error already carries most of the local activity
        activity = activity[1] // 4 + _rounded_pixels(previous_error) // 2
    else:
        prediction, activity = gap[0], activity[0]
    # prediction and activity are (2, N): [0] for the pixels, [1] for their left neighbours.
    left_error = torch.where(cols > 0, EIGHTHS * neighbours["w"][-1, 0] - prediction[1], 0)
    activity = activity[0] + 2 * _rounded_pixels(left_error)
    context = torch.bucketize(activity, thresholds, right=True)
    return prediction[0], context + CONTEXTS_PER_KIND if chained else context


class LocoModel(DensityModel):
    name = "loco"
    version = "1.0"
    modes = ("L", "RGB", "RGBA")
    # NNE is (i-2, j+1): one column right in earlier rows; the left error reaches WW's own
    # neighbours (j-3 in the row, i-2 above); the colour chain stays within these.
    reach = CausalReach(up=2, left=3, right=1)
    exact_across_devices = True
    can_sample = True  # ridecodec.sampling draws from the step function
    # buffers (register_buffer), typed for mypy
    thresholds: torch.Tensor
    tails: torch.Tensor
    table: torch.Tensor | None

    def __init__(self, tails: torch.Tensor | None = None):
        super().__init__()
        if tails is None:
            tails = load_shipped_tails()
        if tails.shape != (CONTEXTS, MAX_PREDICTION + EIGHTHS + 1):
            raise ValueError(f"logistic tail table of shape {tuple(tails.shape)} does not fit")
        self.register_buffer("thresholds", torch.tensor(ACTIVITY_THRESHOLDS, dtype=torch.int32))
        # tails[b, k]: the logistic CDF of context b at -k/8 pixel, i.e. the mass beyond a distance
        # of k eighths. Shipped as data (tails.npy), not computed here: exp() differs in its last
        # bit between CPU instruction sets, and the tables must be identical everywhere.
        self.register_buffer("tails", tails.to(torch.float64))
        # The (context, prediction, value) table of every probability the model can give (108 MiB),
        # so that coding a step is one gather. Built at first use (begin or log_prob), not here:
        # listing the model, or checking a file's weights digest, never pays for it. Not saved
        # (persistent=False): `tails` is the source of truth and is in the digest.
        self.register_buffer("table", None, persistent=False)

    def _probabilities(self) -> torch.Tensor:
        """The table, built on first call (on the CPU, in numpy: one thread, no torch thread pool)
        and kept on the model's device, where ``.to()`` then moves it like any buffer."""
        if self.table is None:
            with _TABLE_LOCK:
                if self.table is None:
                    table = probability_table(self.tails.cpu().numpy())
                    self.table = torch.from_numpy(table).to(self.tails.device)
        return self.table

    def _table_rows(self, prediction: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return context.to(torch.int64) * (MAX_PREDICTION + 1) + prediction

    def begin(self, canvas):
        table = self._probabilities()

        def step(rows, cols, channel):
            prediction, context = prediction_and_context(canvas, rows, cols, channel, self.thresholds)
            return table[self._table_rows(prediction, context)]

        return step

    def log_prob(self, images):
        batch, channels, height, width = images.shape
        table = self._probabilities()
        result = torch.zeros(batch, dtype=torch.float64, device=images.device)
        rows_per_chunk = max(1, 2**20 // width)  # bounds the memory of the index tensors
        for start in range(0, height, rows_per_chunk):
            grid_rows, grid_cols = torch.meshgrid(
                torch.arange(start, min(height, start + rows_per_chunk), device=images.device),
                torch.arange(width, device=images.device),
                indexing="ij",
            )
            rows, cols = grid_rows.reshape(-1), grid_cols.reshape(-1)
            for b in range(batch):
                for channel in range(channels):
                    prediction, context = prediction_and_context(images[b], rows, cols, channel, self.thresholds)
                    values = images[b, channel, rows, cols].to(torch.int64)
                    probability = table[self._table_rows(prediction, context), values]
                    result[b] += probability.double().log().sum()
        return result


def _masses(tails: np.ndarray, low: np.ndarray, first: bool, last: bool) -> np.ndarray:
    """P(value) under each context's discretized logistic (rows of ``tails``) for bins whose low
    edge lies ``low`` eighths from the prediction, float32, shape (contexts, len(low)). ``first``:
    the bin of value 0 (no lower edge), ``last``: that of 255 (no upper edge)."""
    high = low + EIGHTHS
    # Lower-tail mass beyond each edge's distance; the outer edges of 0 and 255 are infinite.
    beyond_low = np.where(first, 0.0, tails[:, np.abs(low)])
    beyond_high = np.where(last, 0.0, tails[:, np.abs(high)])
    # F(high) - F(low), written so that each case subtracts small numbers, not near-ones.
    mass = np.where(
        high <= 0,
        beyond_high - beyond_low,
        np.where(low >= 0, beyond_low - beyond_high, (1.0 - beyond_low) - beyond_high),
    )
    mass = mass * (1.0 - UNIFORM_FLOOR) + UNIFORM_FLOOR / ALPHABET_SIZE
    return mass.astype(np.float32)


def probability_table(tails: np.ndarray) -> np.ndarray:
    """Every probability the model gives: float32 (CONTEXTS * (MAX_PREDICTION + 1), 256), row
    ``context * (MAX_PREDICTION + 1) + prediction``, from the float64 ``tails`` (CONTEXTS, 2049).

    Each entry is a few single IEEE float64 operations (subtract, multiply, add; numpy never fuses
    them) on two entries of ``tails``, then rounded to float32: the same bits on every machine.
    A value's bin is [8k - 4, 8k + 4) eighths, so for k = 1 .. 254 the mass depends only on the
    distance 8k - 4 - prediction: each context's 4,065 distinct masses are computed once and
    spread over the table by a gather (0.05 s, where computing each of the 28 million entries
    took about 1 s of CPU on one thread, and many more on a busy machine with torch's threads).
    """
    tails = np.asarray(tails, dtype=np.float64)
    predictions = np.arange(MAX_PREDICTION + 1)
    half = EIGHTHS // 2
    lowest = EIGHTHS * 1 - half - MAX_PREDICTION  # the interior bins' low edges span lowest ..
    highest = EIGHTHS * (ALPHABET_SIZE - 2) - half  # .. highest, relative to the prediction
    interior = _masses(tails, np.arange(lowest, highest + 1), first=False, last=False)
    offsets = (EIGHTHS * np.arange(1, ALPHABET_SIZE - 1) - half - lowest)[None, :] - predictions[:, None]
    table = np.empty((CONTEXTS, MAX_PREDICTION + 1, ALPHABET_SIZE), dtype=np.float32)
    for context in range(CONTEXTS):
        np.take(interior[context], offsets, out=table[context, :, 1:-1])
    table[:, :, 0] = _masses(tails, -half - predictions, first=True, last=False)
    table[:, :, -1] = _masses(tails, EIGHTHS * (ALPHABET_SIZE - 1) - half - predictions, first=False, last=True)
    return table.reshape(-1, ALPHABET_SIZE)


def logistic_tails(scales) -> torch.Tensor:
    """tails[b, k] = sigmoid(-k / 8 / scales[b]): for calibrate.py, which writes tails.npy."""
    distances = torch.arange(MAX_PREDICTION + EIGHTHS + 1, dtype=torch.float64) / EIGHTHS
    scales = torch.as_tensor(scales, dtype=torch.float64)
    return torch.sigmoid(-distances[None, :] / scales[:, None])


def load_shipped_tails() -> torch.Tensor:
    """The calibrated table shipped with the package (plain .npy data: loading runs no code)."""
    with resources.files(__package__).joinpath(TAILS_FILE).open("rb") as file:
        return torch.from_numpy(np.load(file, allow_pickle=False))
