"""CrossFormer's group geometry: effective group sizes, DPB coordinate tables, padding masks.

Pure numpy, so that three places share one rule: the PyTorch model, the Paddle model, and the spec's
``official_v1`` layout (converters/crossformer.py), which rebuilds the constant buffers the 2021 release
files carry, bit for bit, from the kwargs alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..errors import ModelConfigError

if TYPE_CHECKING:  # numpy is imported where the geometry is computed: `porthub list` must not pay for it
    import numpy as np

__all__ = ["NEG_INF", "GROUP_TYPES", "compute_group_size", "dpb_tables", "pad_amounts", "group_mask"]

#: the additive attention mask value of the official code (a finite number, not -inf)
NEG_INF = -1000000.0
GROUP_TYPES = ("constant", "linear", "linear_div", "alter", "7_14")


def compute_group_size(group_size, depths, resolution, group_type: str = "constant") -> list[list[int]]:
    """Group size of every block before the small-resolution fallback (main ``compute_group_size``).

    ``resolution`` is the patch grid; like the official code only its first entry counts. The
    non-constant strategies keep numpy's float ``arange`` so that their rounding is the official one.
    """
    import numpy as np

    if group_type not in GROUP_TYPES:
        raise ModelConfigError(f"group_type {group_type!r} is not one of {GROUP_TYPES}")
    min_size = 4
    total_depth = sum(depths)
    step_size = (1 - min_size / resolution[0]) / total_depth
    group_fraction = np.arange(min_size / resolution[0], 1.0, step_size)
    result: list[list[int]] = []
    cnt = 0
    for i_stage, depth in enumerate(depths):
        stage: list[int] = []
        cur_resolution = resolution[0] // 2**i_stage
        for i_block in range(depth):
            if group_type == "constant":
                stage.append(group_size[i_stage])
            elif group_type == "7_14":
                stage.append(group_size[i_stage] if i_stage != 2 or i_block >= 4 else group_size[i_stage] // 2)
            else:
                gz = cur_resolution * group_fraction[cnt]
                if gz > cur_resolution // 2:
                    if group_type == "linear_div":
                        gz = cur_resolution if gz > cur_resolution * 3 / 4 or i_stage != 2 else cur_resolution // 2
                    elif group_type == "alter":
                        gz = cur_resolution if cnt % 2 != 0 or i_stage != 2 else cur_resolution // 2
                stage.append(max(4, int(np.ceil(gz))))
            cnt += 1
        result.append(stage)
    return result


def dpb_tables(gh: int, gw: int) -> tuple[np.ndarray, np.ndarray]:
    """The DPB input coordinates ``biases`` (float32 ``[(2gh-1)(2gw-1), 2]``, rows (dh, dw) in 'ij'
    order) and ``relative_position_index`` (int64 ``[gh*gw, gh*gw]``) of a ``gh x gw`` group."""
    import numpy as np

    offsets_h = np.arange(1 - gh, gh, dtype=np.int64)
    offsets_w = np.arange(1 - gw, gw, dtype=np.int64)
    biases = np.stack(np.meshgrid(offsets_h, offsets_w, indexing="ij")).reshape(2, -1).T.astype(np.float32)
    coords = np.stack(np.meshgrid(np.arange(gh, dtype=np.int64), np.arange(gw, dtype=np.int64), indexing="ij")).reshape(
        2, -1
    )
    relative = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)
    index = (relative[:, :, 0] + gh - 1) * (2 * gw - 1) + (relative[:, :, 1] + gw - 1)
    return np.ascontiguousarray(biases), np.ascontiguousarray(index.astype(np.int64))


def pad_amounts(height: int, width: int, size_div: int, pad_type: int = 0) -> tuple[int, int, int, int]:
    """``(pad_l, pad_r, pad_t, pad_b)`` up to a multiple of ``size_div``; ``pad_type`` 0 pads
    bottom/right only, any other value centres the padding (left/top get the smaller half)."""
    pad_w = (size_div - width % size_div) % size_div
    pad_h = (size_div - height % size_div) % size_div
    pad_l, pad_t = (0, 0) if pad_type == 0 else (pad_w // 2, pad_h // 2)
    return pad_l, pad_w - pad_l, pad_t, pad_h - pad_t


def group_mask(height: int, width: int, pads: Sequence[int], group: int, interval: int, lsda_flag: int):
    """The additive attention mask ``(nG, G*G, G*G)`` (float32, ``NEG_INF`` on key columns that fall
    on padding) for a padded ``height x width`` map, or None when nothing is padded."""
    import numpy as np

    pad_l, pad_r, pad_t, pad_b = pads
    if not any(pads):
        return None
    hp, wp = height + pad_t + pad_b, width + pad_l + pad_r
    padded = np.zeros((hp, wp), dtype=bool)
    padded[:pad_t, :] = True
    padded[hp - pad_b :, :] = True
    padded[:, :pad_l] = True
    padded[:, wp - pad_r :] = True
    g = group
    if lsda_flag == 0:
        grouped = padded.reshape(hp // g, g, wp // g, g).transpose(0, 2, 1, 3)
    else:
        i = interval
        grouped = padded.reshape(hp // (g * i), g, i, wp // (g * i), g, i).transpose(0, 3, 2, 5, 1, 4)
    keys = grouped.reshape(-1, 1, g * g)
    return np.repeat(np.where(keys, np.float32(NEG_INF), np.float32(0.0)), g * g, axis=1)
