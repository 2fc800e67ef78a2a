"""SAM2-LOVE (CVPR 2025): a fused tri-modal ``[seg]`` token prompts frame 0 of SAM2, whose memory
propagates the target to the rest of the clip. First public implementation (the authors released
no code); every choice the paper leaves open is a config key (docs/baselines.md).

Pipeline per clip: frozen encoders (caches) -> Linear–ReLU–Linear projections -> fusion Transformer
over ``[seg];audio;[aud];text;[vis];vision_i(;[his])`` frame by frame with token propagation and
accumulation (:mod:`baselines.sam2love.fusion`) -> Linear–ReLU–Linear to SAM2's prompt width -> an
extra sparse token on frame 0 (dense = ``no_mask_embed``, no padding point) -> SAM2 memory
attention/encoder over frames 1..T-1 at inference. Training (paper): BCE + Dice on frame 0 only
(``train_frames=1``); ``train_frames=n`` propagates through frames 0..n-1 with gradients.

Trainable: fusion Transformer, tokens, projections, SAM2 prompt encoder and mask decoder (and, with
``sam2.train_memory``, memory attention/encoder: a CPU-only deviation for random SAM2 weights).
Frozen: the encoders (caches), the SAM2 image encoder and (paper) the memory modules.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from avsbench_kit.errors import ConfigError, DataError
from baselines.base import (Baseline, BaselineOutput, ParamGroup, check_batch, decay_groups,
                            encoder_weights_missing, feature_request, input_enabled, masks_at)
from baselines.common.losses import dice_loss, masked_bce_dice
from baselines.common.sam2_cache import sam2_cache_overrides
from avsbench_kit.models.sam2 import ImageFeatures, SAM2Wrapper, check_image_size
from baselines.sam2love.fusion import (AUDIO_TOKENS, HIS_SOURCES, INDICATORS, POSITIONALS,
                                       FusionConfig, FusionTransformer, projection)


#: which frames the [seg] token prompts: the paper's frame 0 (SAM2's memory carries it to the
#: rest), or every frame (each decoded from its own prompt, no memory read: a diagnostic for
#: random SAM2 weights, whose untrained memory cannot carry a prompt)
PROMPT_FRAMES = ("first", "all")


def category_bucket(category: str, buckets: int) -> int:
    """A category name's class index for the category head: a stable hash (CRC-32) modulo
    ``buckets``, so the head needs no vocabulary fixed before training (real Ref-AVS's categories
    come from the uids of whatever split is read; unseen ones land in buckets never trained)."""
    import zlib

    return zlib.crc32(category.encode("utf-8")) % buckets


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        from avsbench_kit.registry import did_you_mean

        raise ConfigError(f"{key}={value!r} is not one of {', '.join(choices)}",
                          hint=did_you_mean(str(value), list(choices)))
    return value


def _positive(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key}={value!r} must be a positive integer", hint=f"e.g. {key}=1")
    return value


def fusion_config(cfg: dict) -> FusionConfig:
    """Validated :class:`FusionConfig` from the ``fusion`` section."""
    f = cfg["fusion"]
    out = FusionConfig(
        layers=_positive(f["layers"], "fusion.layers"), width=_positive(f["width"], "fusion.width"),
        heads=_positive(f["heads"], "fusion.heads"), ffn=_positive(f["ffn"], "fusion.ffn"),
        dropout=float(f["dropout"]),
        positional=_choice(f["positional"], "fusion.positional", POSITIONALS),
        max_positions=_positive(f["max_positions"], "fusion.max_positions"),
        indicators=_choice(f["indicators"], "fusion.indicators", INDICATORS),
        seg_tokens=_positive(f["seg_tokens"], "fusion.seg_tokens"),
        propagation=bool(f["propagation"]), accumulation=bool(f["accumulation"]),
        his_source=_choice(f["his_source"], "fusion.his_source", HIS_SOURCES),
        his_includes_current=bool(f["his_includes_current"]),
        audio_tokens=_choice(f["audio_tokens"], "fusion.audio_tokens", AUDIO_TOKENS))
    if out.width % out.heads:
        raise ConfigError(f"fusion.width={out.width} is not divisible by fusion.heads={out.heads}",
                          hint="pick heads dividing the width, e.g. width=256 heads=8")
    return out


def encoder_width(name: str, overrides: tuple[str, ...], key: str) -> int:
    """Last-axis width of an encoder's primary output, read from its preset (no weights loaded)."""
    from avsbench_kit.features.base import build_encoder

    spec = build_encoder(name, tuple(overrides)).output_spec()
    primary = [s for s in spec.values() if s.role == "primary"] or list(spec.values())
    dim = primary[0].shape[-1] if primary else None
    if not isinstance(dim, int):
        raise ConfigError(f"cannot tell the width of {name!r} features from its preset",
                          hint=f"set dims.{key}=<width> (e.g. 768 for ViT-B/16 / DistilRoBERTa)")
    return dim


class SAM2LOVE(Baseline):
    """SAM2-LOVE on the shared SAM2 wrapper; see the module docstring."""

    name = "sam2love"

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        cfg = self.cfg
        self.use_audio, self.use_text = self.inputs["audio"], self.inputs["text"]
        for kind, used in (("audio", self.use_audio), ("text", self.use_text)):
            if not used:  # that modality's keys belong to the variant with it switched on
                self.inactive(f"dims.{kind}", f"features.{kind}", f"features.{kind}_overrides")
        self.fcfg = fusion_config(cfg)
        self.fusion_lr_mult = float(cfg["fusion"].get("lr_mult", 1.0))  # absent from older records
        if self.fusion_lr_mult <= 0:
            raise ConfigError(f"fusion.lr_mult={self.fusion_lr_mult} must be > 0",
                              hint="1 = the paper's single learning rate; e.g. fusion.lr_mult=10")
        self.train_frames = _positive(cfg["train_frames"], "train_frames")
        self.train_nulls = bool(cfg["train_nulls"])
        self.multimask = bool(cfg["multimask"])
        self.prompt_frames = _choice(cfg["prompt_frames"], "prompt_frames", PROMPT_FRAMES)
        sam_cfg, feats = cfg["sam2"], cfg["features"]
        self.object_score = bool(sam_cfg["object_score"])
        self.train_memory = bool(sam_cfg["train_memory"])
        loss = cfg["loss"]
        self.loss_weights = {"bce": float(loss["bce_weight"]), "dice": float(loss["dice_weight"]),
                             # absent from runs recorded before the key existed: they must rebuild
                             "point": float(loss.get("point_weight", 0.0)),
                             "pixel": float(loss.get("pixel_weight", 0.0)),
                             "category": float(loss.get("category_weight", 0.0))}
        self.category_buckets = _positive(loss.get("category_buckets", 1024), "loss.category_buckets")
        for key in ("point", "pixel", "category"):
            if self.loss_weights[key] < 0:
                raise ConfigError(f"loss.{key}_weight={self.loss_weights[key]} must be >= 0",
                                  hint=f"0 = off (paper preset); e.g. loss.{key}_weight=1")
        self.image_size = check_image_size(cfg["image_size"])
        self.needs_frames = not feats.get("sam2")
        self.names = {"audio": feats["audio"] if self.use_audio else None,
                      "text": feats["text"] if self.use_text else None,
                      "image": feats["image"], "sam2": feats.get("sam2")}
        self.require_weights = bool(cfg["require_weights"])  # checked by missing_weights()
        dims = {k: self._dim(k) if self.names[k] else 0 for k in ("audio", "text", "image")}
        self.dims = dims
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.get("seed", 0)))  # the new modules are a function of the config
            self.sam = SAM2Wrapper(sam_cfg["config"], sam_cfg.get("checkpoint"), self.image_size,
                                   init_seed=int(sam_cfg["init_seed"]),
                                   round_features=sam_cfg.get("round_features"),
                                   require_checkpoint=bool(sam_cfg["require_checkpoint"]))
            self.fusion = FusionTransformer(self.fcfg, dims["audio"], dims["text"], dims["image"])
            self.prompt_proj = projection(self.fcfg.width, self.sam.hidden_dim)
            # only when on: checkpoints of runs without the head keep loading
            self.category_head = (torch.nn.Linear(self.fcfg.width, self.category_buckets)
                                  if self.loss_weights["category"] > 0 else None)
        for module in (self.sam.mask_decoder, self.sam.prompt_encoder):
            for p in module.parameters():
                p.requires_grad_(True)
        if self.train_memory:
            for name in ("memory_attention", "memory_encoder"):
                for p in getattr(self.sam.model, name).parameters():
                    p.requires_grad_(True)
        if self.cached_levels_projected():  # conv_s0/conv_s1 were applied when the cache was made
            for conv in (self.sam.mask_decoder.conv_s0, self.sam.mask_decoder.conv_s1):
                for p in conv.parameters():
                    p.requires_grad_(False)

    def _dim(self, kind: str) -> int:
        value = self.cfg["dims"][kind]
        if value is None:
            feats = self.cfg["features"]
            return encoder_width(feats[kind], tuple(feats.get(f"{kind}_overrides") or ()), kind)
        return _positive(value, f"dims.{kind}")

    def cached_levels_projected(self) -> bool:
        levels = self.cfg["features"].get("sam2_levels") or ()
        return bool(self.names["sam2"]) and "fpn0" not in levels

    # ---- contract ----------------------------------------------------------------------------
    def feature_requests(self) -> list:
        feats = self.cfg["features"]
        out = [feature_request(self.names[k], feats.get(f"{k}_overrides") or ())
               for k in ("audio", "text", "image") if self.names[k]]
        if self.names["sam2"]:
            out.append(feature_request(self.names["sam2"], self.sam2_overrides()))
        return out

    def sam2_overrides(self) -> tuple[str, ...]:
        """``sam2_image`` cache overrides: the same SAM2 (config, weights or init seed) and size."""
        return sam2_cache_overrides(self.cfg)

    @classmethod
    def missing_weights(cls, cfg: dict[str, Any]) -> list[str]:
        """With ``require_weights``: SAM2 and every feature encoder the configured model reads
        (parameter-free stand-ins need none). Reads the config only: runs before anything is built."""
        if not cfg.get("require_weights"):
            return []
        sam_cfg, feats = cfg["sam2"], cfg["features"]
        missing = [] if sam_cfg.get("checkpoint") else [f"sam2.checkpoint (SAM2 {sam_cfg['config']} .pt)"]
        for kind in ("audio", "text", "image"):
            if kind != "image" and not input_enabled(cfg, kind):
                continue
            need = encoder_weights_missing(feats[kind], feats.get(f"{kind}_overrides") or (),
                                           f"features.{kind}_overrides")
            if need:
                missing.append(need)
        return missing

    def backbone_info(self) -> dict[str, Any]:
        feats = self.cfg["features"]
        encoders = {k: {"encoder": self.names[k], "overrides": list(feats.get(f"{k}_overrides") or ())}
                    for k in ("audio", "text", "image") if self.names[k]}
        return {"sam2": self.sam.describe(), "encoders": encoders,
                "fusion": {"layers": self.fcfg.layers, "width": self.fcfg.width,
                           "seg_tokens": self.fcfg.seg_tokens}}

    def checkpoints(self) -> dict[str, str]:
        return {"sam2": self.sam.checkpoint} if self.sam.checkpoint else {}

    def param_groups(self) -> list[ParamGroup]:
        """The new parts (fusion, tokens, projections) and SAM2's trained parts, each split into
        decayed weights and no-decay norms/biases/tokens. One learning rate (the paper's) unless
        ``fusion.lr_mult`` scales the new parts' (trained from scratch, unlike SAM2's)."""
        new = [(n, p) for n, p in self.named_parameters() if not n.startswith("sam.")]
        sam = [(n, p) for n, p in self.named_parameters() if n.startswith("sam.")]
        return decay_groups(new, name="fusion", lr_mult=self.fusion_lr_mult) + decay_groups(sam, name="sam2")

    def train(self, mode: bool = True) -> "SAM2LOVE":
        super().train(mode)
        self.sam.image_encoder.eval()  # frozen parts never switch to training behaviour
        return self

    def forward(self, batch: dict) -> BaselineOutput:
        """Mask logits [B,T,H,W]: frame 0 from the ``[seg]`` prompt, frames 1.. from SAM2 memory
        (``prompt_frames=all``: every frame from the prompt; training: only the first
        ``train_frames`` frames are run, the others stay 0)."""
        seg, _ = self.fuse(batch)
        prompt = self.prompt_proj(seg)
        b, t = batch["annotated"].shape
        n = min(self.train_frames, t) if self.training else t
        frames = self.image_features(batch, n)
        h, w = self.output_size
        prompts = {0: prompt} if self.prompt_frames == "first" else {t: prompt for t in range(n)}
        masks = self.sam.propagate(frames, prompts, multimask=self.multimask, output_size=(h, w),
                                   object_score=self.object_score and not self.training,
                                   pad_point=True).masks
        if n < t:
            masks = torch.cat([masks, masks.new_zeros(b, t - n, h, w)], 1)
        aux = {"prompt": prompt}
        if self.training and self.category_head is not None:
            aux["category_logits"] = self.category_head(seg.mean(1))
        if self.training and (self.loss_weights["point"] > 0 or self.loss_weights["pixel"] > 0):
            every = self.all_frame_features(batch)
            if self.loss_weights["point"] > 0:
                aux["point_logits"], aux["point_keep"] = self.point_prompted(batch, every, (h, w))
            if self.loss_weights["pixel"] > 0:
                aux["pixel_logits"] = self.pixel_similarity(prompt, every, t)
        return BaselineOutput(masks, aux)

    @staticmethod
    def pixel_similarity(prompt: torch.Tensor, feats: ImageFeatures, t: int) -> torch.Tensor:
        """``[B,T,h,w]`` logits: the ``[seg]`` prompt (mean of its K tokens) dotted with every cell
        of SAM2's stride-16 image embedding, scaled by 1/sqrt(C) — CRIS's text-to-pixel contrast
        (Wang et al., CVPR 2022), read out on the frozen features the decoder attends to. Why: the
        fusion only learns through the decoder, and a decoder that does not yet read its sparse
        token passes it no signal, so the prompt collapses to one vector (docs/baselines.md); this
        asks the prompt itself to single out the target, whatever the decoder does. No parameters:
        the prompt must live where the target's features do."""
        top = feats.levels[2]                                               # [B*T,C,h,w]
        p = prompt.mean(1).to(top.dtype)                                    # [B,C]
        sim = torch.einsum("bc,btchw->bthw", p, top.unflatten(0, (p.shape[0], t)))
        return sim / top.shape[1] ** 0.5

    def point_prompted(self, batch: dict, feats: ImageFeatures,
                       size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Every frame decoded on its own (no memory, no ``[seg]`` token) from one positive point
        drawn uniformly inside its ground truth — SAM's interactive training signal: ``[B,T,H,W]``
        logits and which frames have a non-empty mask to draw from. Why: a *random* SAM2 decoder
        learns to segment without reading sparse prompts and then never reads the ``[seg]`` token
        (docs/baselines.md); the paper's decoder is pretrained promptable."""
        b, t = batch["annotated"].shape
        s = self.image_size
        gt = masks_at(batch["masks"].to(feats.levels[2].device), (s, s)).flatten(0, 1).flatten(1)
        keep = gt.sum(1) > 0
        idx = torch.multinomial(torch.where(keep[:, None], gt, torch.ones_like(gt)), 1)[:, 0]  # empty: any pixel, not scored
        coords = torch.stack([idx % s, idx // s], -1).float()[:, None]
        labels = torch.ones(len(idx), 1, dtype=torch.int32, device=idx.device)
        out = self.sam.decode(feats, points=(coords, labels), multimask=self.multimask, output_size=size)
        return out.masks.unflatten(0, (b, t)), keep.view(b, t)

    def loss(self, out: BaselineOutput, batch: dict) -> dict[str, torch.Tensor]:
        """BCE + Dice (paper: λ = 1, 1) on the annotated frames among the first ``train_frames``
        (+ ``loss.point_weight`` × BCE + Dice of the point-prompted frames and
        ``loss.pixel_weight`` × BCE + Dice of the prompt–pixel similarity against the area-pooled
        ground truth of every annotated frame, and ``loss.category_weight`` × the category
        cross-entropy, when on)."""
        logits = out.logits
        keep = batch["annotated"].bool().clone()
        keep[:, self.train_frames:] = False
        if not self.train_nulls:
            keep &= ~batch["is_null"].bool()[:, None].to(keep.device)
        if not keep.any():  # nothing to learn from; keep backward() valid
            zero = logits.sum() * 0.0
            return {"total": zero, "bce": zero.detach(), "dice": zero.detach()}
        target = masks_at(batch["masks"].to(logits.device), tuple(logits.shape[-2:]))
        x, y = logits[keep], target[keep]
        bce, dice = F.binary_cross_entropy_with_logits(x, y), dice_loss(x, y)
        total = self.loss_weights["bce"] * bce + self.loss_weights["dice"] * dice
        parts = {"bce": bce.detach(), "dice": dice.detach()}
        if "point_logits" in out.aux:
            ok = out.aux["point_keep"] & batch["annotated"].bool().to(logits.device)
            point = masked_bce_dice(out.aux["point_logits"], target, ok)
            total = total + self.loss_weights["point"] * point
            parts["point"] = point.detach()
        if "pixel_logits" in out.aux:
            sim = out.aux["pixel_logits"]
            ok = batch["annotated"].bool().to(sim.device)
            if not self.train_nulls:
                ok &= ~batch["is_null"].bool()[:, None].to(ok.device)
            soft = F.interpolate(batch["masks"].to(sim.device).flatten(0, 1)[:, None].float(),
                                 size=tuple(sim.shape[-2:]), mode="area")[:, 0].unflatten(0, ok.shape)
            pixel = masked_bce_dice(sim, soft, ok)
            total = total + self.loss_weights["pixel"] * pixel
            parts["pixel"] = pixel.detach()
        if "category_logits" in out.aux:
            cat = self.category_loss(out.aux["category_logits"], batch)
            total = total + self.loss_weights["category"] * cat
            parts["category"] = cat.detach()
        return {"total": total, **parts}

    def category_loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """Cross-entropy of the fused ``[seg]`` (mean of its K tokens) against the target's
        category (hashed, :func:`category_bucket`), over the non-null expressions. Why: the mask
        loss reaches the fusion only through the decoder, and what an expression that names no
        look ("the object heard first") refers to is then learnt from masks alone; the category
        asks the fusion itself to name the target, which for onset expressions only the audio can.
        Real Ref-AVS carries the category in every uid, so the signal is not SynthAVS's."""
        keep = (~batch["is_null"].bool()).to(logits.device, logits.dtype)  # masked, not indexed: no host sync
        target = torch.tensor([category_bucket(c, self.category_buckets) for c in batch["category"]],
                              device=logits.device)
        per_row = F.cross_entropy(logits, target, reduction="none")
        return (per_row * keep).sum() / keep.sum().clamp_min(1.0)

    # ---- pieces ------------------------------------------------------------------------------
    def prompt(self, batch: dict) -> torch.Tensor:
        """The fused ``[seg]`` token(s) of every clip, in SAM2's prompt space: [B,K,256]."""
        seg, _ = self.fuse(batch)
        return self.prompt_proj(seg)

    def fuse(self, batch: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
        check_batch(batch, [n for n in (self.names["audio"], self.names["text"], self.names["image"]) if n])
        feats = batch["features"]
        vision = feats[self.names["image"]]
        if vision.dim() == 3:  # one global vector per frame (rgb_hist, CLIP): it is the CLS token
            vision = vision.unsqueeze(2)
        self._check(vision, 4, "image")
        audio = text = mask = None
        if self.use_audio:
            audio = feats[self.names["audio"]]
            if audio.dim() == 4:
                raise DataError(f"feature {self.names['audio']!r} is per channel {tuple(audio.shape)}; "
                                "SAM2-LOVE uses mono audio",
                                hint=f"extract {self.names['audio']} with channels=mono")
            self._check(audio, 3, "audio")
        if self.use_text:
            text = feats[self.names["text"]]
            self._check(text, 3, "text")
            mask = feats.get(f"{self.names['text']}_mask")
        return self.fusion(vision, audio, text, mask)

    def _check(self, x: torch.Tensor, ndim: int, kind: str) -> None:
        if x.dim() != ndim or x.shape[-1] != self.dims[kind]:
            raise ConfigError(f"feature {self.names[kind]!r} has shape {tuple(x.shape)}, expected "
                              f"{ndim} axes ending in {self.dims[kind]}",
                              hint=f"set dims.{kind}={x.shape[-1]} to match the {self.names[kind]} cache")

    def image_features(self, batch: dict, n: int) -> list[ImageFeatures]:
        """SAM2 features of frames 0..n-1 (one :class:`ImageFeatures` of B clips per frame)."""
        return [self._features(batch, lambda v, t=t: v[:, t]) for t in range(n)]

    def all_frame_features(self, batch: dict) -> ImageFeatures:
        """SAM2 features of all B×T frames as one batch (untracked per-frame decoding, read-outs)."""
        return self._features(batch, lambda v: v.flatten(0, 1))

    def _features(self, batch: dict, select) -> ImageFeatures:
        """SAM2 features of the frames ``select`` takes from the ``[B,T,...]`` cache levels (or
        raw frames, encoded here without gradients)."""
        name = self.names["sam2"]
        if name and name in batch.get("features", {}):
            return self.sam.from_cache({k: select(v) for k, v in batch["features"][name].items()})
        if "frames" not in batch:
            need = f"the {name!r} cache" if name else "raw frames"
            raise DataError(f"batch {batch.get('key', [])[:2]}... has neither {need} nor frames",
                            hint="build batches with the baseline's feature_requests() and "
                                 "with_frames=baseline.needs_frames")
        with torch.no_grad():
            return self.sam.features(self.sam.preprocess(select(batch["frames"])))
