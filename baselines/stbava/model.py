"""ST-BAVA: SAM extended with spatio-temporal, bidirectional audio-visual attention (ICIP 2024).

Per clip of T frames (paper §3, released code ``Sunjuhyeong/SAM_STBAVA``; notes in docs/baselines.md):
1. frozen image encoder (SAM ViT, or SAM2 Hiera for the port) -> V [B,T,256,h,w]; with
   ``adapters`` a SAMA-AVS audio prompt is added before every encoder block;
2. frozen VGGish per second -> Linear(128->256) -> L2 norm -> A [B,T,256]; A is also the audio PE;
3. L ST-BAVA blocks fuse (V, A) (``fusion.py``); the visual PE is a random-Fourier map;
4. mask decoder per frame: image embedding = V_t (the encoder output, not the fused map), dense
   prompt = fused V_t, sparse prompt = fused A_t repeated twice, the three multimask logits summed,
   upsampled to the input size and then to ``output_size``. Loss: BCE on annotated frames.

Two stages (paper §4.3): stage 1 trains ST-BAVA, the audio projection and the decoder with the
encoder frozen and no adapters; stage 2 adds the adapters and trains adapters + decoder from the
stage-1 weights. ``trains`` names the trained parts; ``audio=off`` replaces the audio embedding by
one learned constant (and drops the adapters, which read audio).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avsbench_kit.errors import ConfigError, DataError
from baselines.base import (Baseline, BaselineOutput, ParamGroup, check_batch, decay_groups,
                            encoder_weights_missing, feature_request, masks_at)
from baselines.common.adapters import AudioAdapters
from baselines.common.losses import soft_iou_loss
from baselines.stbava.fusion import STBAVA

BACKBONES = ("sam", "sam2")
PARTS = ("fusion", "audio_proj", "decoder", "adapters", "visual_pe")
HIDDEN = 256  # SAM's / SAM2's prompt width: the fusion works at the decoder's width


def choice(cfg: dict, key: str, choices: Sequence[Any]) -> Any:
    value = _lookup(cfg, key)
    if value not in choices:
        from avsbench_kit.registry import did_you_mean

        raise ConfigError(f"{key}={value!r} is not one of {', '.join(map(str, choices))}",
                          hint=did_you_mean(str(value), [str(c) for c in choices]))
    return value


def switch(cfg: dict, key: str) -> bool:
    """An on/off key: true/false, on/off (``temporal=off`` on the command line)."""
    value = _lookup(cfg, key)
    if isinstance(value, str) and value.lower() in ("on", "off", "true", "false"):
        return value.lower() in ("on", "true")
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} must be on or off", hint=f"e.g. {key}=off")
    return value


def positive_int(cfg: dict, key: str) -> int:
    value = _lookup(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key}={value!r} must be a positive integer", hint=f"e.g. {key}=5")
    return value


def layers_for_task(cfg: dict) -> int:
    """``layers``: an int, or per task (``{s4: 5, ms3: 7}``, the paper) read with the run's task."""
    value = cfg.get("layers")
    if isinstance(value, dict):
        task = cfg.get("task")
        if task not in value:
            raise ConfigError(f"layers={dict(value)} has no entry for task {task!r}",
                              hint="give an int (layers=5) or an entry per task ({s4: 5, ms3: 7})")
        value = value[task]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"layers={value!r} must be a positive integer", hint="e.g. layers=5")
    return value


def _lookup(cfg: dict, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


class RandomFourierPE(nn.Module):
    """SAM's random-Fourier positional encoding of a grid (sin/cos of a Gaussian projection of the
    normalised pixel centres), owned by the model as in ST-BAVA/SAMA-AVS (``pe_layer``)."""

    def __init__(self, matrix: torch.Tensor, trainable: bool) -> None:
        super().__init__()
        if trainable:
            self.gaussian = nn.Parameter(matrix.detach().clone())
        else:
            self.register_buffer("gaussian", matrix.detach().clone())

    def forward(self, h: int, w: int) -> torch.Tensor:
        """[C,h,w] with C = 2 x the matrix width."""
        device = self.gaussian.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [h,w,2] as (x, y)
        proj = 2 * math.pi * ((2 * grid - 1) @ self.gaussian)
        return torch.cat([proj.sin(), proj.cos()], dim=-1).permute(2, 0, 1)


class STBAVAModel(Baseline):
    """ST-BAVA on SAM / SAM2; see the module docstring."""

    name = "stbava"

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        self.backbone_kind = choice(cfg, "backbone", BACKBONES)
        self.inactive("sam2" if self.backbone_kind == "sam" else "sam")
        if self.backbone_kind == "sam":
            self.inactive("features.image_levels", "features.image_overrides")
        self.audio_on = self.inputs["audio"]
        self.adapters_on = switch(cfg, "adapters") and self.audio_on
        if not self.adapters_on:
            self.inactive("adapter_hidden")
        self.layers = layers_for_task(cfg)
        self.temporal = switch(cfg, "temporal")
        self.bidirectional = switch(cfg, "bidirectional")
        self.train_frames = choice(cfg, "train_frames", ("annotated", "all"))
        self.reduce = choice(cfg, "multimask", ("sum", "best_iou"))
        self.upsample = choice(cfg, "upsample", ("two_step", "direct"))
        self.sparse_tokens = positive_int(cfg, "sparse_tokens")
        trains = cfg.get("trains")
        if not isinstance(trains, list) or not trains or any(p not in PARTS for p in trains):
            raise ConfigError(f"trains={trains!r}: a non-empty list of {', '.join(PARTS)}",
                              hint="stage 1: trains=[fusion,audio_proj,decoder]; stage 2: "
                                   "trains=[adapters,decoder]")
        if "adapters" in trains and not self.adapters_on:
            raise ConfigError("trains lists adapters but adapters=off (or audio=off)",
                              hint="drop adapters from trains, or set adapters=on")
        self.trains = list(trains)
        switch(cfg, "require_weights")  # read by missing_weights() before the model is built
        lcfg = cfg.get("loss") or {}
        self.loss_weights = {"bce": float(lcfg.get("bce_weight", 1.0)), "iou": float(lcfg.get("iou_weight", 0.0))}
        feats = cfg["features"]
        self.audio_name = feats.get("audio")
        self.audio_overrides = list(feats.get("audio_overrides") or ())
        if not self.audio_on:
            self.inactive("features.audio", "features.audio_overrides", "features.audio_dim")
        image_size = int(cfg["image_size"])
        fcfg = cfg["fusion"]
        pe_cfg = cfg["visual_pe"]
        pe_source = choice(cfg, "visual_pe.source", ("backbone", "random"))
        pe_scale = float(pe_cfg.get("scale", 1.0))
        if pe_source == "backbone":
            self.inactive("visual_pe.scale")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.get("seed", 0)))  # the new modules are a function of the config
            self.backbone = self._build_backbone(cfg, image_size, feats)
            audio_dim = self._audio_dim() if self.audio_on else 0
            if self.audio_on:
                self.audio_proj: nn.Module = nn.Linear(audio_dim, HIDDEN)
            else:  # audio off: one learned token in place of every frame's audio embedding
                self.audio_proj = _ConstantAudio(HIDDEN)
            self.fusion = STBAVA(self.layers, HIDDEN, positive_int(cfg, "fusion.heads"),
                                 float(fcfg.get("dropout", 0.1)), positive_int(cfg, "fusion.mlp_hidden"),
                                 temporal=self.temporal, bidirectional=self.bidirectional)
            matrix = self.backbone.pe_matrix() if pe_source == "backbone" \
                else torch.randn(2, HIDDEN // 2) * pe_scale
            self.visual_pe = RandomFourierPE(matrix, "visual_pe" in self.trains)
            self.adapters = AudioAdapters(audio_dim, positive_int(cfg, "adapter_hidden"),
                                          self.backbone.block_dims) if self.adapters_on else None
        self.needs_frames = self.backbone.needs_frames(self.adapters is not None)
        self._set_trainable()

    # ---- construction ------------------------------------------------------------------------
    def _build_backbone(self, cfg: dict, image_size: int, feats: dict) -> nn.Module:
        from baselines.stbava.backbones import SAM2Backbone, SAMBackbone

        image = feats.get("image")  # read in both stages: one command line serves both (then=)
        cache = None if self.adapters_on else image  # adapters: the encoder must run on frames
        if self.backbone_kind == "sam":
            if cache:
                raise ConfigError(f"features.image={cache!r}: there is no SAM (v1) image cache encoder",
                                  hint="leave features.image empty with backbone=sam (the encoder runs on "
                                       "frames); sam2_image serves backbone=sam2")
            return SAMBackbone(cfg["sam"], image_size)
        return SAM2Backbone(cfg["sam2"], image_size, cache, feats.get("image_levels"),
                            feats.get("image_overrides") or ())

    def _audio_dim(self) -> int:
        """``features.audio_dim``, or (null) the width the configured audio encoder writes."""
        value = self.cfg["features"].get("audio_dim")
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"features.audio_dim={value!r} must be a positive integer or null",
                                  hint="null takes the width of the audio encoder's features")
            return value
        from avsbench_kit.features.base import build_encoder

        spec = list(build_encoder(self.audio_name, tuple(self.audio_overrides)).output_spec().values())
        dim = spec[0].shape[-1] if spec else None
        if not isinstance(dim, int):
            raise ConfigError(f"cannot tell the width of {self.audio_name!r} features",
                              hint="set features.audio_dim=<width> (VGGish: 128)")
        return dim

    def _set_trainable(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        parts = {"fusion": [self.fusion], "audio_proj": [self.audio_proj], "visual_pe": [self.visual_pe],
                 "adapters": [self.adapters] if self.adapters is not None else [],
                 "decoder": self.backbone.decoder_modules()}
        for part in self.trains:
            for module in parts[part]:
                for p in module.parameters():
                    p.requires_grad_(True)
        for module in self.backbone.unreachable_decoder_modules():
            for p in module.parameters():
                p.requires_grad_(False)

    # ---- contract ----------------------------------------------------------------------------
    def feature_requests(self) -> list:
        out = []
        if self.audio_on:
            out.append(feature_request(self.audio_name, self.audio_overrides))
        out.extend(self.backbone.feature_requests() if not self.needs_frames else [])
        return out

    @classmethod
    def missing_weights(cls, cfg: dict[str, Any]) -> list[str]:
        """With ``require_weights`` (the paper presets): the SAM/SAM2 checkpoint and VGGish."""
        if not cfg.get("require_weights"):
            return []
        missing = []
        if cfg.get("backbone") == "sam2":
            if not cfg["sam2"].get("checkpoint"):
                missing.append(f"sam2.checkpoint (SAM2 {cfg['sam2']['config']} .pt)")
        elif not cfg["sam"].get("checkpoint"):
            missing.append(f"sam.checkpoint (SAM {cfg['sam']['variant']} .pth, e.g. sam_vit_h_4b8939.pth)")
        from baselines.base import input_enabled

        feats = cfg["features"]
        if input_enabled(cfg, "audio"):
            gap = encoder_weights_missing(feats["audio"], feats.get("audio_overrides") or (),
                                          "features.audio_overrides")
            if gap:
                missing.append(gap.replace("<local dir or hub id>", "<vggish-10086976.pth>"))
        return missing

    def checkpoints(self) -> dict[str, str]:
        path = self.backbone.checkpoint
        return {self.backbone_kind: path} if path else {}

    def param_groups(self) -> list[ParamGroup]:
        """One group per trained part (fusion, audio_proj, decoder, adapters, visual_pe), each split
        into decayed weights and no-decay norms/biases/tokens."""
        parts = {"fusion": self.fusion, "audio_proj": self.audio_proj, "visual_pe": self.visual_pe,
                 "adapters": self.adapters, "decoder": self.backbone}
        groups: list[ParamGroup] = []
        for name in PARTS:
            module = parts[name]
            if module is not None:
                groups += decay_groups(module, name=name)
        return groups

    def train(self, mode: bool = True) -> "STBAVAModel":
        super().train(mode)
        self.backbone.sam.image_encoder.eval()  # the frozen encoder never switches to training
        return self

    def forward(self, batch: dict) -> torch.Tensor:
        annotated = batch["annotated"].bool()
        b, t = annotated.shape
        if self.training and self.train_frames == "annotated":
            rows, cols = annotated.nonzero(as_tuple=True)
        else:
            rows, cols = (g.reshape(-1) for g in torch.meshgrid(torch.arange(b), torch.arange(t), indexing="ij"))
        h, w = self.output_size
        raw = self.audio_features(batch, b, t)
        audio = F.normalize(self.audio_proj(raw), dim=-1)                       # [B,T,256]
        prompts = None
        if self.adapters is not None:
            prompts = [p for p in self.adapters(raw.flatten(0, 1))]
        embed, extras = self.backbone.encode(batch, prompts)                    # [B,T,256,g,g]
        if embed.shape[-3] != HIDDEN:
            raise DataError(f"image embeddings have {embed.shape[-3]} channels, expected {HIDDEN}",
                            hint="the image cache does not come from this backbone")
        logits = embed.new_zeros(b, t, h, w)
        if rows.numel() == 0:
            return BaselineOutput(logits)
        pe = self.visual_pe(*embed.shape[-2:])
        fused_v, fused_a = self.fusion(embed, audio, pe)
        sparse = fused_a[rows, cols].unsqueeze(1).expand(-1, self.sparse_tokens, -1)
        low, ious = self.backbone.decode(embed, extras, rows, cols, sparse, fused_v[rows, cols],
                                         pe.unsqueeze(0))
        masks = self.reduce_masks(low, ious)
        if self.upsample == "two_step":  # the released code: to the input size, then to 224
            size = self.backbone.sam.image_size
            masks = F.interpolate(masks, size=(size, size), mode="bilinear", align_corners=False)
        masks = F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        return BaselineOutput(logits.index_put((rows, cols), masks), {"ious": ious})

    def reduce_masks(self, low: torch.Tensor, ious: torch.Tensor) -> torch.Tensor:
        """[N,M,h,w] multimask logits -> [N,1,h,w]: summed (the released code) or, as SAM does,
        the candidate with the highest predicted IoU."""
        if self.reduce == "sum":
            return low.sum(dim=1, keepdim=True)
        best = ious.argmax(dim=1)
        return low[torch.arange(low.shape[0], device=low.device), best].unsqueeze(1)

    def loss(self, out: BaselineOutput, batch: dict) -> dict[str, torch.Tensor]:
        """BCE on the annotated frames (the released code's ``IoULoss`` is plain BCE); an optional
        soft-IoU term (``loss.iou_weight``, 0 by default)."""
        logits = out.logits
        annotated = batch["annotated"].bool().to(logits.device)
        if not annotated.any():  # nothing to learn from; keep backward() valid
            zero = logits.sum() * 0.0 if logits.requires_grad else \
                torch.zeros((), device=logits.device, requires_grad=True)
            return {"total": zero, "bce": zero.detach()}
        target = masks_at(batch["masks"].to(logits.device), tuple(logits.shape[-2:]))[annotated]
        pred = logits[annotated]
        terms = {"bce": F.binary_cross_entropy_with_logits(pred, target)}
        if self.loss_weights["iou"]:
            terms["iou"] = soft_iou_loss(pred, target)
        total = sum(self.loss_weights[k] * v for k, v in terms.items())
        return {"total": total, **{k: v.detach() for k, v in terms.items()}}

    # ---- pieces ------------------------------------------------------------------------------
    def audio_features(self, batch: dict, b: int, t: int) -> torch.Tensor:
        """The frozen audio encoder's per-second features [B,T,D] (or [B,T,0] with audio off)."""
        if not self.audio_on:
            return batch["annotated"].new_zeros(b, t, 0, dtype=torch.float32)
        check_batch(batch, [self.audio_name])
        x = batch["features"][self.audio_name].float()
        if x.dim() != 3 or x.shape[:2] != (b, t):
            raise DataError(f"feature {self.audio_name!r} has shape {tuple(x.shape)}, expected [{b}, {t}, D]",
                            hint=f"extract {self.audio_name} with one mono vector per frame")
        return x

    def backbone_info(self) -> dict:
        return self.backbone.describe()


class _ConstantAudio(nn.Module):
    """``audio=off``: every frame gets the same learned 256-d token (no audio information)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.randn(dim) * 0.02)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.token.expand(*raw.shape[:-1], -1)
