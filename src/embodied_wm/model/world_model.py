"""The multimodal world model: encode one observation into a state, roll it forward K steps under N
candidate action sequences, decode frames and affordance maps.

  encoder(image, prev_image, audio_mel, tactile, proprio, action, mask)
      -> (latent [B,D], skip1 [B,c0,H/2,W/2], skip2 [B,c1,H/4,W/4], skip3 [B,c2,H/8,W/8],
          last_frame [B,3,H,W])
  rollout_net(latent, skip1, skip2, skip3, last_frame, actions [N,K,A])
      -> (frames [N,K,3,H,W] in [0,1], affordance [N,C,H,W] in [0,1])

Frames are predicted *relative to the last frame*: for every step k the decoder outputs a flow field that
warps the current frame to t+k, a blend mask and generated colours for what the warp cannot explain
(disocclusions, lighting). Predicting pixels from the latent alone gives blurry frames that lose to
copy-last-frame; warping keeps the static scene pixel-exact and moves objects sharply.

The two halves are separate modules because the runtime exports them as two ONNX graphs: one encode per
observation, then any number of rollouts (MPC queries) from the same state. Both are static-shape except
the candidate axis N, use no data-dependent control flow, and stick to ops TensorRT parses
(Conv, ConvTranspose-free nearest Resize, GridSample, Gemm, elementwise).

``actions`` fed to the rollout are RAW end-effector twists (m/s, rad/s); the graph normalises them with
the config's statistics, so callers never need to know them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from embodied_wm.model.config import ModelConfig
from embodied_wm.model.preprocess import ENCODER_INPUTS
from embodied_wm.observation import MODALITIES

ENCODER_OUTPUTS: tuple[str, ...] = ("latent", "skip1", "skip2", "skip3", "last_frame")
ROLLOUT_INPUTS: tuple[str, ...] = (*ENCODER_OUTPUTS, "actions")
ROLLOUT_OUTPUTS: tuple[str, ...] = ("frames", "affordance")
#: The scores-only graph (``PixelScorer``): what pixel-goal and latent-goal objectives need, no frames.
SCORE_INPUTS: tuple[str, ...] = (*ENCODER_OUTPUTS, "actions", "designated_pixels", "goal_pixels")
SCORE_OUTPUTS: tuple[str, ...] = ("pixel_positions", "pixel_distances", "latents")

__all__ = [
    "ENCODER_INPUTS",
    "ENCODER_OUTPUTS",
    "ROLLOUT_INPUTS",
    "ROLLOUT_OUTPUTS",
    "SCORE_INPUTS",
    "SCORE_OUTPUTS",
    "Encoder",
    "PixelScorer",
    "RolloutNet",
    "WorldModel",
]

#: Largest displacement the flow head can express, in grid_sample units (2 = the image side): 1.0 is
#: half the image, enough for a fast finger over the 8-step horizon.
MAX_FLOW = 1.0
#: Standard deviation (pixels at the model resolution) of the probability map put on a designated pixel.
DESIGNATED_SIGMA_PX = 1.5
#: Share of the unwarped map kept in every step's map, so a map warped entirely out of view stays finite
#: (it then stays where it was) instead of dividing by zero; small enough not to bias a visible one.
DESIGNATED_FLOOR = 1e-6


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv + GroupNorm + SiLU. GroupNorm (not BatchNorm) so a batch of one behaves like training."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.GroupNorm(min(8, cout // 4), cout), nn.SiLU()
    )


def mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden), nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, cout))


def zero_last(net: nn.Sequential) -> nn.Sequential:
    """Zero the last layer: a residual branch added to a trained model starts as a no-op."""
    last = net[-1]
    assert isinstance(last, nn.Linear)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return net


#: Mel bands are pooled into this many groups for the contact-timing features.
AUDIO_BAND_GROUPS = 4


def audio_contact_features(mel: Tensor, pos: Tensor, groups: int = AUDIO_BAND_GROUPS) -> Tensor:
    """[B,1,M,T] normalised log-mel -> [B, 3*groups] features that carry contact timing: per band group
    the energy of the newest frames, the largest onset (positive frame-to-frame rise) and where in the
    window it happened (0 = oldest, 1 = newest). A tap is a sharp broadband onset; sliding is sustained
    energy. Elementwise ops and reductions only (TensorRT-parsable)."""
    b, _, m, t = mel.shape
    g = mel.reshape(b, groups, m // groups, t).mean(2)  # [B,G,T]
    energy = g[:, :, -max(1, t // 4) :].mean(2)
    onset = F.relu(g[:, :, 1:] - g[:, :, :-1])  # [B,G,T-1]
    peak = onset.amax(2)
    w = torch.softmax(onset * 4.0, 2)
    when = (w * pos).sum(2)
    return torch.cat([energy, peak, when], 1)


def feature_positions(n: int, lo: float, hi: float) -> Tensor:
    """n evenly spaced float32 positions in [lo, hi] (one position, n = 1: the middle). Held as module
    buffers rather than computed in the graph: traced linspace exports as double-typed constants."""
    if n == 1:
        return torch.tensor([(lo + hi) / 2.0])
    return torch.tensor([lo + (hi - lo) * i / (n - 1) for i in range(n)], dtype=torch.float32)


def tactile_contact_features(tactile: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """[B,1,r,c] normalised taxels -> [B,4]: mean, max, and the max-weighted centroid (row, col in
    [-1, 1]; ``rows`` [r] / ``cols`` [c] are the taxel positions): whether the fingertip touches, how
    hard and where on the pad."""
    b, _, r, c = tactile.shape
    x = tactile.reshape(b, r * c)
    w = torch.softmax(x * 2.0, 1).reshape(b, r, c)
    cy = (w.sum(2) * rows).sum(1, keepdim=True)
    cx = (w.sum(1) * cols).sum(1, keepdim=True)
    return torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True), cy, cx], 1)


class Encoder(nn.Module):
    """Per-modality encoders fused into one latent; spatial image features are kept as skips."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c0, c1, c2 = cfg.enc_channels
        e, d, s8 = cfg.embed_dim, cfg.latent_dim, cfg.image_size // 8
        # Vision sees current frame, previous frame and their difference: motion is explicit.
        self.down1 = nn.Sequential(conv(9, c0, 2), conv(c0, c0))
        self.down2 = nn.Sequential(conv(c0, c1, 2), conv(c1, c1))
        self.down3 = nn.Sequential(conv(c1, c2, 2), conv(c2, c2))
        self.vis_squeeze = nn.Conv2d(c2, 16, 1)
        self.vis_fc = nn.Linear(16 * s8 * s8, d)
        n_audio = cfg.n_mels * cfg.mel_frames
        self.audio = mlp(n_audio, 2 * e, e)
        self.tactile = mlp(cfg.tactile_shape[0] * cfg.tactile_shape[1], e, e)
        # Contact-timing features as residual branches (zero-initialised, so older weights load as-is):
        # a small MLP on raw mel/taxels has to discover onsets itself, which it never did.
        self.audio_feat = zero_last(mlp(3 * AUDIO_BAND_GROUPS, e, e))
        self.tactile_feat = zero_last(mlp(4, e, e))
        self.mel_pos: Tensor
        self.taxel_rows: Tensor
        self.taxel_cols: Tensor
        self.register_buffer("mel_pos", feature_positions(cfg.mel_frames - 1, 0.0, 1.0), persistent=False)
        self.register_buffer("taxel_rows", feature_positions(cfg.tactile_shape[0], -1, 1), persistent=False)
        self.register_buffer("taxel_cols", feature_positions(cfg.tactile_shape[1], -1, 1), persistent=False)
        self.proprio = mlp(cfg.proprio_dim, e, e)
        self.action = mlp(cfg.action_dim, e, e)
        # Learned stand-ins for absent sensors (vision + 4 vector modalities, MODALITIES order).
        self.missing_vis = nn.Parameter(torch.zeros(d))
        self.missing = nn.Parameter(torch.zeros(len(MODALITIES) - 1, e))
        self.fuse = nn.Sequential(
            nn.Linear(d + 4 * e, d), nn.LayerNorm(d), nn.SiLU(), nn.Linear(d, d), nn.LayerNorm(d), nn.Tanh()
        )  # tanh: the latent lives in the GRU state's range, so rolled and encoded latents are comparable

    def forward(
        self,
        image: Tensor,
        prev_image: Tensor,
        audio_mel: Tensor,
        tactile: Tensor,
        proprio: Tensor,
        action: Tensor,
        mask: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        m_img = mask[:, 0:1]
        m_img4 = m_img[:, :, None, None]
        # Gating the image itself (not only the embedding) keeps every image-derived output on the mask path.
        img, prev = image * m_img4, prev_image * m_img4
        s1 = self.down1(torch.cat([img, prev, img - prev], 1)) * m_img4
        s2 = self.down2(s1) * m_img4
        s3 = self.down3(s2) * m_img4
        vis = self.vis_fc(self.vis_squeeze(s3).flatten(1))
        vis = vis * m_img + self.missing_vis * (1 - m_img)
        embeds = [vis]
        extra = (
            self.audio_feat(audio_contact_features(audio_mel, self.mel_pos)),
            self.tactile_feat(tactile_contact_features(tactile, self.taxel_rows, self.taxel_cols)),
        )
        for i, (net, x) in enumerate(
            ((self.audio, audio_mel), (self.tactile, tactile), (self.proprio, proprio), (self.action, action))
        ):
            m = mask[:, i + 1 : i + 2]
            emb = net(x.flatten(1))
            if i < len(extra):
                emb = emb + extra[i]
            embeds.append(emb * m + self.missing[i] * (1 - m))
        latent = self.fuse(torch.cat(embeds, 1))
        return latent, s1, s2, s3, img


class GRUCell(nn.Module):
    """GRU with LayerNorm on the gates (as in DreamerV3's RSSM): stable over long unrolls."""

    def __init__(self, inp: int, hidden: int) -> None:
        super().__init__()
        self.lin = nn.Linear(inp + hidden, 3 * hidden, bias=False)
        self.norm = nn.LayerNorm(3 * hidden)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        reset, cand, update = self.norm(self.lin(torch.cat([x, h], -1))).chunk(3, -1)
        reset = torch.sigmoid(reset)
        cand = torch.tanh(reset * cand)
        update = torch.sigmoid(update - 1)  # bias towards keeping the state
        return update * cand + (1 - update) * h


class RolloutNet(nn.Module):
    """Action-conditioned dynamics (K GRU steps), per-step frame decoder, affordance head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c0, c1, c2 = cfg.enc_channels
        d0, d1, d2 = cfg.dec_channels
        d, e, s = cfg.latent_dim, cfg.embed_dim, cfg.image_size
        self.s8 = s // 8
        self.action_mean: Tensor
        self.action_std: Tensor
        self.base_grid: Tensor
        self.register_buffer("action_mean", torch.tensor(cfg.action_mean).float(), persistent=False)
        self.register_buffer("action_std", torch.tensor(cfg.action_std).float(), persistent=False)
        self.act_embed = mlp(cfg.action_dim, e, e)
        self.cell = GRUCell(e, d)
        # Decoder: latent -> coarse map, merged with the encoder's skips on the way up.
        self.lat_map = nn.Linear(d, 16 * self.s8 * self.s8)
        self.lat_vec = nn.Linear(d, d0)
        self.dec3 = nn.Sequential(conv(16 + c2, d0), conv(d0, d0))
        self.dec2 = nn.Sequential(conv(d0 + c1, d1), conv(d1, d1))
        self.dec1 = nn.Sequential(conv(d1 + c0, d2), conv(d2, d2))
        # Full resolution is the costliest level (it runs N*K times): keep it to two thin convs.
        self.dec0 = nn.Sequential(nn.Conv2d(d2 + 3, 8, 3, 1, 1), nn.SiLU(), nn.Conv2d(8, 6, 3, 1, 1))
        # Affordance: its own light U-Net, run once per candidate (not per step). Each rolled latent is
        # mapped to a coarse "where" map; max over the horizon = "ever there", mean = "how long".
        n_aff = len(cfg.affordance_channels)
        self.aff_map = nn.Linear(d, 16 * self.s8 * self.s8)
        self.aff3 = conv(32 + c2, d0)
        self.aff2 = conv(d0 + c1, d1)
        self.aff1 = nn.Sequential(conv(d1 + c0, d2), nn.Conv2d(d2, n_aff, 3, 1, 1))
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
        # Pixel-centre grid in grid_sample's align_corners=False convention.
        base = torch.stack([xs, ys], -1) * (s - 1) / s
        self.register_buffer("base_grid", base[None], persistent=False)
        self.pix_v: Tensor
        self.pix_u: Tensor
        pv, pu = pixel_index_grids(s, s, torch.float32, "cpu")
        self.register_buffer("pix_v", pv, persistent=False)
        self.register_buffer("pix_u", pu, persistent=False)
        # Start from "copy the last frame": zero flow, blend mask ~ 1.
        head = self.dec0[-1]
        assert isinstance(head, nn.Conv2d) and head.bias is not None
        nn.init.zeros_(head.weight)
        nn.init.constant_(head.bias, 0.0)
        with torch.no_grad():
            head.bias[2] = 4.0

    def dynamics(self, latent: Tensor, actions: Tensor) -> Tensor:
        """latent [N,D] (or [1,D]), raw actions [N,K,A] -> rolled latents [N,K,D]."""
        n, k = actions.shape[0], actions.shape[1]
        h = latent.expand(n, -1)
        a = self.act_embed((actions - self.action_mean) / self.action_std)
        states = []
        for i in range(k):  # K is static: unrolled in the exported graph
            h = self.cell(a[:, i], h)
            states.append(h)
        return torch.stack(states, 1)

    def forward(
        self, latent: Tensor, skip1: Tensor, skip2: Tensor, skip3: Tensor, last_frame: Tensor, actions: Tensor
    ) -> tuple[Tensor, Tensor]:
        frames, aff_logits, _, _ = self.decode(latent, skip1, skip2, skip3, last_frame, actions)
        return frames, torch.sigmoid(aff_logits)

    def decode(
        self,
        latent: Tensor,
        skip1: Tensor,
        skip2: Tensor,
        skip3: Tensor,
        last_frame: Tensor,
        actions: Tensor,
        frame_steps: list[int] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(frames [N,K',3,H,W], affordance LOGITS [N,C,H,W], rolled latents [N,K,D], flow [N,K',2,H,W]).

        ``flow`` is the backward warp of each decoded step in grid_sample units (frame_k(x) = last(x + flow)):
        training supervises it with a teacher optical flow, because the photometric loss alone only sees
        image gradients within a pixel or two and learns to erase moving objects instead of moving them.

        ``frame_steps`` decodes frames for those steps only (K' = len(frame_steps)): training uses a random
        subset per batch to halve the cost of the per-step decoder; export/inference decode all K."""
        n = actions.shape[0]
        s = self.cfg.image_size
        z = self.dynamics(latent, actions)  # [N,K,D]
        zd = z if frame_steps is None else z[:, frame_steps]
        k = zd.shape[1]
        zf = zd.reshape(n * k, -1)

        def tile(x: Tensor) -> Tensor:
            # [B,C,h,w] with B in {1, N} -> [N*K,C,h,w]; expand (not repeat) so batch-1 state is free.
            x = x[:, None].expand(n, k, -1, -1, -1)
            return x.reshape(n * k, x.shape[2], x.shape[3], x.shape[4])

        x = self.lat_map(zf).reshape(n * k, 16, self.s8, self.s8)
        x = self.dec3(torch.cat([x, tile(skip3)], 1)) + self.lat_vec(zf)[:, :, None, None]
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = self.dec2(torch.cat([x, tile(skip2)], 1))
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = self.dec1(torch.cat([x, tile(skip1)], 1))
        last = tile(last_frame)
        out = self.dec0(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), last], 1))
        flow = torch.tanh(out[:, 0:2]) * MAX_FLOW
        blend = torch.sigmoid(out[:, 2:3])
        colour = torch.sigmoid(out[:, 3:6])
        grid = self.base_grid + flow.permute(0, 2, 3, 1)
        warped = F.grid_sample(last, grid, mode="bilinear", padding_mode="border", align_corners=False)
        frames = (blend * warped + (1 - blend) * colour).reshape(n, k, 3, s, s)

        kk = z.shape[1]
        where = self.aff_map(z.reshape(n * kk, -1)).reshape(n, kk, 16, self.s8, self.s8)
        a = self.aff3(torch.cat([where.amax(1), where.mean(1), skip3.expand(n, -1, -1, -1)], 1))
        a = F.interpolate(a, scale_factor=2.0, mode="nearest")
        a = self.aff2(torch.cat([a, skip2.expand(n, -1, -1, -1)], 1))
        a = F.interpolate(a, scale_factor=2.0, mode="nearest")
        a = self.aff1(torch.cat([a, skip1.expand(n, -1, -1, -1)], 1))
        aff = F.interpolate(a, scale_factor=2.0, mode="bilinear", align_corners=False)
        return frames, aff, z, flow.reshape(n, k, 2, s, s)

    def flows(
        self, latent: Tensor, skip1: Tensor, skip2: Tensor, skip3: Tensor, last_frame: Tensor, actions: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(flow [N,K,2,H,W], rolled latents [N,K,D]): ``decode``'s flow and latents without the frames,
        blend, colours and affordance, and with the batch-1 state's share of each merge convolution
        computed once (``_conv_split``). What pixel-goal and latent-goal scoring need, at a fraction of
        ``decode``'s cost; equal to its ``flow`` up to float rounding."""
        n = actions.shape[0]
        s = self.cfg.image_size
        z = self.dynamics(latent, actions)
        k = z.shape[1]
        zf = z.reshape(n * k, -1)
        x = self.lat_map(zf).reshape(n * k, 16, self.s8, self.s8)
        x = _conv_split(self.dec3[0], x, _conv_rest(self.dec3[0], skip3, 16))
        x = self.dec3[1](x) + self.lat_vec(zf)[:, :, None, None]
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = _conv_split(self.dec2[0], x, _conv_rest(self.dec2[0], skip2, x.shape[1]))
        x = self.dec2[1](x)
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = _conv_split(self.dec1[0], x, _conv_rest(self.dec1[0], skip1, x.shape[1]))
        x = self.dec1[1](x)
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        first, act, head = self.dec0[0], self.dec0[1], self.dec0[2]
        assert isinstance(head, nn.Conv2d) and head.bias is not None
        x = act(_conv_split(first, x, _conv_rest(first, last_frame, x.shape[1])))
        out = F.conv2d(x, head.weight[0:2], head.bias[0:2], 1, 1)  # the flow channels only
        flow = torch.tanh(out) * MAX_FLOW
        return flow.reshape(n, k, 2, s, s), z

    def score(
        self,
        latent: Tensor,
        skip1: Tensor,
        skip2: Tensor,
        skip3: Tensor,
        last_frame: Tensor,
        actions: Tensor,
        designated_pixels: Tensor,
        goal_pixels: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The scores-only rollout: (pixel_positions [N,K,P,2], pixel_distances [N,K,P], latents [N,K,D]).

        ``designated_pixels`` / ``goal_pixels`` [P,2] are (u, v) at the model resolution. Every step's
        backward warp (each relative to the last observed frame, as the frames are) moves a Gaussian map
        on each designated pixel (``designated_pixel_stats``): positions are the maps' expected pixel,
        distances their expected distance to the goal pixel (the Visual Foresight cost, per step)."""
        n = actions.shape[0]
        flow, z = self.flows(latent, skip1, skip2, skip3, last_frame, actions)
        k, s = flow.shape[1], flow.shape[3]
        grid = self.base_grid + flow.reshape(n * k, 2, s, s).permute(0, 2, 3, 1)
        pos, dist = designated_pixel_stats(
            grid, designated_pixels, goal_pixels, DESIGNATED_SIGMA_PX, (self.pix_v, self.pix_u)
        )
        p = designated_pixels.shape[0]
        return pos.reshape(n, k, p, 2), dist.reshape(n, k, p), z


def _conv_split(block: nn.Module, x: Tensor, other: Tensor) -> Tensor:
    """``block`` (conv() or a bare Conv2d) applied to cat([x, ...], 1) given the rest's contribution
    ``other`` (see ``_conv_rest``): a convolution is linear in its input channels, so the part that sees
    the batch-1 state (skips, last frame) is computed once, not once per candidate and step."""
    c = block[0] if isinstance(block, nn.Sequential) else block
    assert isinstance(c, nn.Conv2d)
    y = F.conv2d(x, c.weight[:, : x.shape[1]], c.bias, c.stride, c.padding) + other
    if isinstance(block, nn.Sequential):
        for layer in list(block)[1:]:
            y = layer(y)
    return y


def _conv_rest(block: nn.Module, rest: Tensor, cx: int) -> Tensor:
    """The contribution of input channels ``cx:`` (``rest``, batch 1) to ``block``'s first convolution."""
    c = block[0] if isinstance(block, nn.Sequential) else block
    assert isinstance(c, nn.Conv2d)
    return F.conv2d(rest, c.weight[:, cx:], None, c.stride, c.padding)


def pixel_index_grids(
    h: int, w: int, dtype: torch.dtype, device: torch.device | str
) -> tuple[Tensor, Tensor]:
    """(v [1,H,1,1], u [1,1,W,1]) pixel indices, for ``designated_pixel_stats``."""
    ys = torch.arange(h, dtype=dtype, device=device).reshape(1, h, 1, 1)
    return ys, torch.arange(w, dtype=dtype, device=device).reshape(1, 1, w, 1)


def designated_pixel_stats(
    grid: Tensor,
    designated: Tensor,
    goals: Tensor,
    sigma_px: float,
    index_grids: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Expected position and expected goal distance of designated-pixel probability maps moved by warps.

    ``grid`` [B,H,W,2]: the backward warps as grid_sample grids (align_corners=False), frame(x) =
    last(grid(x)); ``designated``, ``goals`` [P,2]: (u, v) pixels at the model resolution (pixel centres
    at integers). Each designated pixel gets a Gaussian map of ``sigma_px`` on the last frame; the warp
    moves it as it moves the frame's pixels: map_b(x) = map(grid_b(x)), evaluated in closed form (the
    continuous Gaussian, not a resampled raster) with the grid clamped to the image as the frame warp's
    border padding does; then renormalised. Returns (positions [B,P,2] = E[(u, v)], distances [B,P] =
    E[|(u, v) - goal|]): elementwise ops and reductions only, so the graph stays TensorRT-parsable.
    ``index_grids``: ``pixel_index_grids`` precomputed (a constant in the exported graph, not a Range)."""
    h, w = grid.shape[1], grid.shape[2]
    gx = (grid[..., 0:1].clamp(-1 + 1 / w, 1 - 1 / w) + 1) * (w / 2) - 0.5  # [B,H,W,1] source pixel u
    gy = (grid[..., 1:2].clamp(-1 + 1 / h, 1 - 1 / h) + 1) * (h / 2) - 0.5
    du, dv = gx - designated[:, 0], gy - designated[:, 1]  # [B,H,W,P]
    inv = -0.5 / (sigma_px * sigma_px)
    m = torch.exp((du * du + dv * dv) * inv)
    ys, xs = pixel_index_grids(h, w, grid.dtype, grid.device) if index_grids is None else index_grids
    u0, v0 = xs - designated[:, 0], ys - designated[:, 1]
    m = m + DESIGNATED_FLOOR * torch.exp((u0 * u0 + v0 * v0) * inv)
    total = m.sum((1, 2))  # [B,P]
    pu = (m * xs).sum((1, 2)) / total
    pv = (m * ys).sum((1, 2)) / total
    eu, ev = xs - goals[:, 0], ys - goals[:, 1]
    dist = (m * torch.sqrt(eu * eu + ev * ev)).sum((1, 2)) / total
    return torch.stack([pu, pv], -1), dist


class PixelScorer(nn.Module):
    """The scores-only rollout exported as its own graph: ``RolloutNet.score`` (see there)."""

    def __init__(self, rollout_net: RolloutNet) -> None:
        super().__init__()
        self.rollout_net = rollout_net

    def forward(
        self,
        latent: Tensor,
        skip1: Tensor,
        skip2: Tensor,
        skip3: Tensor,
        last_frame: Tensor,
        actions: Tensor,
        designated_pixels: Tensor,
        goal_pixels: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        return self.rollout_net.score(
            latent, skip1, skip2, skip3, last_frame, actions, designated_pixels, goal_pixels
        )


class WorldModel(nn.Module):
    ENCODER_INPUTS = ENCODER_INPUTS
    ENCODER_OUTPUTS = ENCODER_OUTPUTS
    ROLLOUT_INPUTS = ROLLOUT_INPUTS
    ROLLOUT_OUTPUTS = ROLLOUT_OUTPUTS

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.rollout_net = RolloutNet(cfg)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor]:
        """All ENCODER_INPUTS then ``actions`` [N,K,A] -> (frames, affordance)."""
        *enc, actions = inputs
        return self.rollout_net(*self.encoder(*enc), actions)

    def encode(self, inputs: dict[str, Tensor]) -> tuple[Tensor, ...]:
        return self.encoder(*(inputs[k] for k in ENCODER_INPUTS))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def example_inputs(self, n_candidates: int = 1, batch: int = 1) -> dict[str, Tensor]:
        """Dummy tensors keyed by ENCODER_INPUTS + ('actions',), for export and tests. All modalities
        present; ``actions`` is [n_candidates, K, A]."""
        cfg, s, g = self.cfg, self.cfg.image_size, torch.Generator().manual_seed(0)
        return {
            "image": torch.rand(batch, 3, s, s, generator=g),
            "prev_image": torch.rand(batch, 3, s, s, generator=g),
            "audio_mel": torch.randn(batch, 1, cfg.n_mels, cfg.mel_frames, generator=g),
            "tactile": torch.rand(batch, 1, *cfg.tactile_shape, generator=g),
            "proprio": torch.randn(batch, cfg.proprio_dim, generator=g),
            "action": torch.randn(batch, cfg.action_dim, generator=g),
            "mask": torch.ones(batch, len(MODALITIES)),
            "actions": torch.randn(n_candidates, cfg.horizon, cfg.action_dim, generator=g) * 0.05,
        }
