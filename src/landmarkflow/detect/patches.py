"""Patches gathered from volumes kept on the device: what the agents and PIN see.

A :class:`PatchVolume` holds K versions x C channels of a volume, padded so that every patch of every
scale is inside it; a patch is one index computation and one gather per voxel, whatever the number of
channels, and comes out in the channels-last layout that the CPU's 3D convolutions are fastest with.
"""

from __future__ import annotations

import torch


class PatchVolume:
    """Volumes (K versions x C channels, X, Y, Z) on the device, with vectorised patch gathering at several scales.

    ``volume`` is (X, Y, Z), (C, X, Y, Z) or (K, C, X, Y, Z); the K versions of
    a training volume (augmented copies) share one grid. A voxel's C channels
    are stored side by side (one row per voxel), so that a patch is one index
    computation per voxel, whatever the number of channels, and comes out in
    the channels-last layout that the CPU's 3D convolutions are fastest with.
    """

    def __init__(self, volume: torch.Tensor, patch: int = 15, max_scale: int = 3, spacing=(1.0, 1.0, 1.0)):
        if volume.ndim == 3:
            volume = volume[None]
        if volume.ndim == 4:
            volume = volume[None]
        self.versions, self.channels = volume.shape[0], volume.shape[1]
        if patch % 2 != 1:
            raise ValueError(f"patch size must be odd, got {patch}")
        self.patch = patch
        self.radius = patch // 2
        self.pad = self.radius * max_scale + max_scale
        self.shape = torch.tensor(volume.shape[2:], dtype=torch.long, device=volume.device)
        self.device = volume.device
        self.spacing = torch.as_tensor(spacing, dtype=torch.float32, device=volume.device)
        padded = torch.nn.functional.pad(volume.float(), (self.pad,) * 6)  # (K, C, X', Y', Z')
        self.padded_shape = torch.tensor(padded.shape[2:], dtype=torch.long, device=volume.device)
        self.rows = padded.permute(0, 2, 3, 4, 1).reshape(-1, self.channels).contiguous()  # (K * voxels, C)
        # one or two channels: a voxel's row read as one 4- or 8-byte integer (the bits unchanged), which a 1D
        # gather copies faster than rows of floats
        word = {1: torch.int32, 2: torch.int64}.get(self.channels)
        self._words = None if word is None else self.rows.view(word).reshape(-1)
        self._voxels = int(padded[0, 0].numel())
        # int32 indices where they fit: half the memory traffic of building them
        self._itype = torch.int32 if self.rows.shape[0] < 2**31 else torch.long
        r = torch.arange(-self.radius, self.radius + 1, device=volume.device)
        grid = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
        strides = torch.tensor([padded.shape[3] * padded.shape[4], padded.shape[4], 1], device=volume.device)
        self._strides = strides
        self._offsets = grid  # (P^3, 3)
        # flat offsets of a patch at every stride 0..max_scale: a patch is one add and one gather
        self._flat_offsets = torch.stack([(grid * s * strides).sum(-1) for s in range(max_scale + 1)]).to(self._itype)

    def flat_offsets(self, offsets: torch.Tensor) -> torch.Tensor:
        """Flat-array offsets of integer voxel offsets (..., 3), for :meth:`gather`."""
        return (offsets.to(self.device) * self._strides).sum(-1)

    def _base(self, pos: torch.Tensor, version: torch.Tensor | None) -> torch.Tensor:
        """Row of every position (N, 3) in volume ``version`` (N,)."""
        base = ((pos + self.pad) * self._strides).sum(-1)
        if version is not None and self.versions > 1:
            base = base + version * self._voxels
        return base

    def gather(self, pos: torch.Tensor, flat_offsets: torch.Tensor, version: torch.Tensor | None = None) -> torch.Tensor:
        """Values (N, C, M) at integer positions (N, 3) plus the M offsets of ``flat_offsets`` (M,) or (N, M)
        (from :meth:`flat_offsets`; they must stay within the padding), from volume ``version`` (N,)."""
        if flat_offsets.ndim == 1:
            flat_offsets = flat_offsets[None]
        idx = self._base(pos, version)[:, None] + flat_offsets  # (N, M)
        return self._rows_at(idx.reshape(-1)).reshape(*idx.shape, self.channels).transpose(1, 2)

    def clamp(self, pos: torch.Tensor) -> torch.Tensor:
        """Keep voxel positions inside the (unpadded) volume."""
        return torch.minimum(torch.clamp(pos, min=0), self.shape - 1)

    def patches_last(self, pos: torch.Tensor, scale: torch.Tensor, version: torch.Tensor | None = None) -> torch.Tensor:
        """Patches (N, P, P, P, C), channels last, centred at integer voxel positions (N, 3), stride ``scale``
        (N,), from volume ``version`` (N,) (version 0 if None)."""
        p = self.patch
        idx = self._flat_offsets.index_select(0, scale)  # (N, P^3), then in place: one allocation
        idx.add_(self._base(pos, version).to(self._itype)[:, None])
        return self._rows_at(idx.reshape(-1)).reshape(pos.shape[0], p, p, p, self.channels)

    def histories(self, pos: torch.Tensor, scale: torch.Tensor, version: torch.Tensor) -> torch.Tensor:
        """The patches of ``f`` positions (M, f, 3) at strides (M, f) in volumes ``version`` (M,), as (M, P, P, P,
        f, C): a voxel's frames and channels side by side, which is the channels-last layout of a network input
        of f * C channels (frame-major), with no copy."""
        m, f = scale.shape
        p = self.patch
        idx = self._flat_offsets.index_select(0, scale.reshape(-1)).reshape(m, f, -1).transpose(1, 2)
        idx = idx + self._base(pos.reshape(-1, 3), version[:, None].expand(m, f).reshape(-1)).to(self._itype).reshape(m, 1, f)
        return self._rows_at(idx.reshape(-1)).reshape(m, p, p, p, f, self.channels)

    def _rows_at(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows ``idx`` (K,) of the volume: (K, C)."""
        if self._words is None:
            return self.rows.index_select(0, idx)
        return self._words.index_select(0, idx).view(torch.float32).reshape(-1, self.channels)

    def patches(self, pos: torch.Tensor, scale: torch.Tensor, version: torch.Tensor | None = None) -> torch.Tensor:
        """Patches (N, C, P, P, P) (a channels-last view of :meth:`patches_last`)."""
        return self.patches_last(pos, scale, version).permute(0, 4, 1, 2, 3)
