"""AV2T-SAM: audio-visual features mapped into a frozen text-prompt encoder that prompts SAM2.

Per frame t (paper §3, released code ``bok-bok/AV2T-SAM``):
CLAP a_t, CLIP v_t -> L2-normalise -> Linear to 512 each -> F_av = a' ⊙ v' -> MLP -> 3 pseudo text
tokens -> frozen text encoder -> output at position 0 -> Linear–ReLU–Linear -> one 256-d sparse
prompt token of SAM2's mask decoder (dense prompt = no_mask_embed, multimask + best predicted IoU)
-> mask logits, bilinear to ``output_size``. Optional adapters add Linear–GELU–Linear(F_av) to the
input of every Hiera block (the image encoder then runs on the fly from frames).

Trainable (as in the code): projector, pseudo-token MLP, EVF projector, the whole SAM2 mask decoder,
``no_mask_embed``, adapters. Frozen: SAM2 image encoder (and the rest of SAM2), the text encoder.
Loss: BCE + soft IoU, equal weights, on annotated frames only (S4 train: frame 1 only).
``prompt_feature=clip`` is the vision-only probe (registered as ``probe-clip-only``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avsbench_kit.errors import ConfigError, DataError
from avsbench_kit.models.sam2 import ImageFeatures, SAM2Wrapper, check_image_size
from baselines.av2t.heads import (FEATURE_NORMS, PROMPT_FEATURES, AdapterGenerator,
                                  PromptFeature, PseudoTokens, text_hidden_fcs)
from baselines.av2t.text_prompt import build_text_encoder
from baselines.base import Baseline, BaselineOutput, check_batch, feature_request, masks_at
from baselines.common.losses import soft_iou_loss
from baselines.common.sam2_cache import sam2_cache_overrides


def _choice(cfg: dict, key: str, choices: tuple[str, ...]) -> str:
    value = cfg.get(key)
    if value not in choices:
        from avsbench_kit.registry import did_you_mean

        raise ConfigError(f"{key}={value!r} is not one of {', '.join(choices)}",
                          hint=did_you_mean(str(value), list(choices)))
    return value


class AV2TSAM(Baseline):
    """AV2T-SAM on SAM2 (EVF-SAM2 path); see the module docstring."""

    name = "av2t"

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        cfg = self.cfg  # read through the (tracked) copy
        self.name = str(cfg.get("name", "av2t"))  # "probe-clip-only" for the probe entry
        self.prompt_feature = _choice(cfg, "prompt_feature", PROMPT_FEATURES)
        if not self.inputs["audio"]:  # audio=off / modality=vision-only: the CLIP-only prompt
            if self.prompt_feature == "clap":
                raise ConfigError("prompt_feature=clap reads audio only, so audio=off leaves no prompt",
                                  hint="use prompt_feature=clip_x_clap (or clip) with audio=off")
            self.prompt_feature = "clip"
        self.train_frames = _choice(cfg, "train_frames", ("annotated", "all"))
        self.feature_norm = _choice(cfg, "feature_norm", FEATURE_NORMS)
        if not isinstance(cfg.get("adapters"), bool):
            raise ConfigError(f"adapters={cfg.get('adapters')!r} must be true or false",
                              hint="adapters=true runs the image encoder on frames (slow on CPU)")
        self.adapters_on = bool(cfg["adapters"])
        self.multimask = bool(cfg.get("multimask", True))
        lcfg = cfg.get("loss", {})
        self.loss_weights = {"bce": float(lcfg.get("bce_weight", 1.0)), "iou": float(lcfg.get("iou_weight", 1.0))}
        self.needs_frames = self.adapters_on or not cfg["features"].get("sam2")
        check_image_size(cfg["image_size"])
        sam_cfg, feats = cfg["sam2"], cfg["features"]
        self.feature_names = {"audio": feats.get("audio"), "image": feats.get("image"),
                              "sam2": None if self.adapters_on else feats.get("sam2")}
        width = int(cfg.get("fused_dim", 512))
        uses_audio, uses_image = self.prompt_feature != "clip", self.prompt_feature != "clap"
        for kind, used in (("audio", uses_audio), ("image", uses_image)):
            if not used:
                self.inactive(f"dims.{kind}", f"features.{kind}", f"features.{kind}_overrides")
        if self.adapters_on or not cfg["features"].get("sam2"):  # the image encoder runs on frames
            self.inactive("features.sam2", "features.sam2_levels", "features.sam2_overrides")
        self.dims = {"audio": self._feature_dim("audio") if uses_audio else 0,
                     "image": self._feature_dim("image") if uses_image else 0}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.get("seed", 0)))  # the heads are a function of the config
            self.sam = SAM2Wrapper(sam_cfg["config"], sam_cfg.get("checkpoint"), cfg["image_size"],
                                   init_seed=int(sam_cfg.get("init_seed", 0)),
                                   round_features=sam_cfg.get("round_features"),
                                   require_checkpoint=bool(cfg.get("require_weights", False)))
            text_cfg = cfg["text_encoder"]
            self.inactive(*(f"text_encoder.{k}" for k in ("transformer", "beit3") if k != text_cfg.get("kind")))
            self.text_encoder = build_text_encoder(text_cfg)
            hidden = self.text_encoder.hidden_size
            self.fusion = PromptFeature(self.prompt_feature, self.dims["audio"], self.dims["image"],
                                        width, self.feature_norm)
            self.pseudo_tokens = PseudoTokens(width, hidden, int(cfg.get("num_pseudo_tokens", 3)))
            self.text_hidden_fcs = text_hidden_fcs(hidden, self.sam.hidden_dim)
            self.adapters = AdapterGenerator(width, self.sam.block_dims) if self.adapters_on else None
        # SAM2: the whole mask decoder and no_mask_embed train; everything else stays frozen
        for p in self.sam.mask_decoder.parameters():
            p.requires_grad_(True)
        self.sam.prompt_encoder.no_mask_embed.weight.requires_grad_(True)
        if self.cached_levels_projected():
            # forward_image levels were projected by conv_s0/conv_s1 when the cache was made: those
            # two convs cannot learn here, so they are frozen (and not counted as trainable)
            for conv in (self.sam.mask_decoder.conv_s0, self.sam.mask_decoder.conv_s1):
                for p in conv.parameters():
                    p.requires_grad_(False)

    def _feature_dim(self, kind: str) -> int:
        """``dims.<kind>``, or (null) the width the configured encoder writes."""
        value = self.cfg.get("dims", {}).get(kind)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"dims.{kind}={value!r} must be a positive integer or null",
                                  hint=f"null takes the width of the {kind} encoder's features")
            return value
        feats = self.cfg["features"]
        from avsbench_kit.features.base import build_encoder

        encoder = build_encoder(feats[kind], tuple(feats.get(f"{kind}_overrides") or ()))
        spec = list(encoder.output_spec().values())
        dim = spec[0].shape[-1] if spec else None
        if not isinstance(dim, int):
            raise ConfigError(f"cannot tell the width of {feats[kind]!r} features from its preset",
                              hint=f"set dims.{kind}=<width> (e.g. 512 for CLAP/CLIP ViT-B/32)")
        return dim

    def cached_levels_projected(self) -> bool:
        """Whether the model reads forward_image levels (conv_s0/conv_s1 applied) from a cache."""
        levels = self.cfg["features"].get("sam2_levels") or ()
        return bool(self.feature_names["sam2"]) and "fpn0" not in levels

    # ---- contract ----------------------------------------------------------------------------
    def feature_requests(self) -> list:
        feats = self.cfg["features"]
        out = []
        if self.fusion.uses_audio:
            out.append(feature_request(feats["audio"], feats.get("audio_overrides") or ()))
        if self.fusion.uses_image:
            out.append(feature_request(feats["image"], feats.get("image_overrides") or ()))
        if self.feature_names["sam2"]:
            out.append(feature_request(self.feature_names["sam2"], self.sam2_overrides()))
        return out

    def sam2_overrides(self) -> tuple[str, ...]:
        """The ``sam2_image`` cache must come from the same SAM2 as this model."""
        return sam2_cache_overrides(self.cfg)

    @classmethod
    def missing_weights(cls, cfg: dict[str, Any]) -> list[str]:
        """With ``require_weights``: SAM2, and the CLAP/CLIP feature encoders the prompt reads."""
        if not cfg.get("require_weights"):
            return []
        from baselines.base import encoder_weights_missing

        missing = [] if cfg["sam2"].get("checkpoint") else [f"sam2.checkpoint (SAM2 {cfg['sam2']['config']} .pt)"]
        feats, prompt = cfg["features"], cfg.get("prompt_feature")
        for kind, used in (("audio", prompt != "clip" and cfg.get("audio", True) is not False
                            and cfg.get("modality", "full") in ("full", "no-text")),
                           ("image", prompt != "clap")):
            need = encoder_weights_missing(feats[kind], feats.get(f"{kind}_overrides") or (),
                                           f"features.{kind}_overrides")
            if used and need:
                missing.append(need)
        if cfg["text_encoder"].get("kind") == "beit3" and not cfg["text_encoder"].get("beit3", {}).get("checkpoint"):
            missing.append("text_encoder.beit3.checkpoint (EVF-SAM2 checkpoint dir)")
        return missing

    def backbone_info(self) -> dict[str, Any]:
        text = {"kind": self.cfg["text_encoder"]["kind"], "source": getattr(self.text_encoder, "source", None)}
        return {"sam2": self.sam.describe(), "text_encoder": text, "prompt_feature": self.prompt_feature}

    def checkpoints(self) -> dict[str, str]:
        return {"sam2": self.sam.checkpoint} if self.sam.checkpoint else {}

    def train(self, mode: bool = True) -> "AV2TSAM":
        super().train(mode)
        self.sam.image_encoder.eval()  # frozen parts never switch to training behaviour
        self.text_encoder.eval()
        return self

    def forward(self, batch: dict) -> BaselineOutput:
        annotated = batch["annotated"].bool()
        b, t = annotated.shape
        if self.training and self.train_frames == "annotated":
            rows, cols = annotated.nonzero(as_tuple=True)
        else:
            rows, cols = torch.meshgrid(torch.arange(b), torch.arange(t), indexing="ij")
            rows, cols = rows.reshape(-1), cols.reshape(-1)
        h, w = self.output_size
        device = self.sam.prompt_encoder.no_mask_embed.weight.device
        logits = torch.zeros(b, t, h, w, device=device)
        if rows.numel() == 0:  # a training batch without annotated frames
            return BaselineOutput(logits)
        fused = self.fused_feature(batch, rows, cols)
        tokens = self.pseudo_tokens(fused)
        prompt = self.text_hidden_fcs(self.text_encoder(tokens)).unsqueeze(1)  # [N,1,256]
        feats = self.image_features(batch, rows, cols, fused)
        out = self.sam.decode(feats, prompt, multimask=self.multimask, output_size=(h, w))
        logits = logits.index_put((rows, cols), out.masks)
        return BaselineOutput(logits, {"ious": out.ious})

    def loss(self, out: BaselineOutput, batch: dict) -> dict[str, torch.Tensor]:
        """BCE (mean over pixels) + soft IoU on the annotated frames, the AV2T-SAM objective."""
        logits = out.logits
        annotated = batch["annotated"].bool().to(logits.device)
        if not annotated.any():  # nothing to learn from; keep backward() valid
            zero = logits.sum() * 0.0 if logits.requires_grad else \
                torch.zeros((), device=logits.device, requires_grad=True)
            return {"total": zero, "bce": zero.detach(), "iou": zero.detach()}
        target = masks_at(batch["masks"].to(logits.device), tuple(logits.shape[-2:]))
        pred, gt = logits[annotated], target[annotated]
        bce = F.binary_cross_entropy_with_logits(pred, gt)
        iou = soft_iou_loss(pred, gt)
        return {"total": self.loss_weights["bce"] * bce + self.loss_weights["iou"] * iou, "bce": bce, "iou": iou}

    # ---- pieces ------------------------------------------------------------------------------
    def fused_feature(self, batch: dict, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """F_av (or the single-modality feature) of the selected (clip, frame) pairs: [N, 512]."""
        needed = [n for n, used in ((self.feature_names["audio"], self.fusion.uses_audio),
                                    (self.feature_names["image"], self.fusion.uses_image)) if used]
        check_batch(batch, needed)
        feats = batch["features"]
        audio = self._per_frame(feats, self.feature_names["audio"], "audio", rows, cols) \
            if self.fusion.uses_audio else None
        image = self._per_frame(feats, self.feature_names["image"], "image", rows, cols) \
            if self.fusion.uses_image else None
        return self.fusion(audio, image)

    def _per_frame(self, feats: dict, name: str, kind: str, rows: torch.Tensor,
                   cols: torch.Tensor) -> torch.Tensor:
        x = feats[name]
        dim = self.dims[kind]
        if x.dim() == 4:  # per-channel audio [B,T,2,D]: the paper flattens channels into one clip
            raise DataError(f"feature {name!r} is per channel {tuple(x.shape)}; AV2T-SAM expects one "
                            "vector per second", hint=f"extract {name} without the per-channel option")
        if x.dim() != 3 or x.shape[-1] != dim:
            raise ConfigError(f"feature {name!r} has shape {tuple(x.shape)}, expected [B, T, {dim}]",
                              hint=f"set dims.{kind}={x.shape[-1]} to match the {name} cache")
        return x[rows, cols]

    def image_features(self, batch: dict, rows: torch.Tensor, cols: torch.Tensor,
                       fused: torch.Tensor) -> ImageFeatures:
        """SAM2 features of the selected frames: on the fly with adapters, else from the cache
        (or from frames when no cache is configured)."""
        name = self.feature_names["sam2"]
        if name and name in batch.get("features", {}):
            levels = {k: v[rows, cols] for k, v in batch["features"][name].items()}
            return self.sam.from_cache(levels)
        if "frames" not in batch:
            need = f"the {name!r} cache" if name else "raw frames"
            raise DataError(f"batch {batch.get('key', [])[:2]}... has neither {need} nor frames",
                            hint="build batches with the baseline's feature_requests() and "
                                 "with_frames=baseline.needs_frames")
        images = self.sam.preprocess(batch["frames"][rows, cols])
        if self.adapters is not None:
            return self.sam.features(images, self.adapters(fused))
        with torch.no_grad():
            return self.sam.features(images)
