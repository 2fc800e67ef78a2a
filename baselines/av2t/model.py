"""AV2T-SAM: audio-visual features mapped into a frozen text-prompt encoder that prompts SAM2 / SAM.

Per frame t (paper §3, released code ``bok-bok/AV2T-SAM``):
CLAP a_t, CLIP v_t -> L2-normalise -> Linear to 512 each -> F_av = a' ⊙ v' -> MLP -> 3 pseudo text
tokens -> frozen text encoder (EVF's BEiT-3 also reads the frame) -> output at position 0 -> Linear–ReLU–Linear -> one 256-d sparse
prompt token of SAM2's mask decoder (dense prompt = no_mask_embed, multimask + best predicted IoU)
-> mask logits, bilinear to ``output_size``. Optional adapters add Linear–GELU–Linear(F_av) to the
input of every Hiera block (the image encoder then runs on the fly from frames).

Trainable (as in the code): projector, pseudo-token MLP, EVF projector, the whole SAM2 mask decoder,
``no_mask_embed``, adapters. Frozen: SAM2 image encoder (and the rest of SAM2), the text encoder.
Loss: BCE + soft IoU, equal weights, on annotated frames only (S4 train: frame 1 only).
``prompt_feature=clip`` is the vision-only probe (registered as ``probe-clip-only``).

``sam.backbone=sam1`` is the paper's SAM1 row (EVF-SAM): the same prompt token goes to a SAM (v1)
mask decoder (``avsbench_kit.models.sam1``; sparse = the token, dense = ``no_mask_embed``, multimask +
best IoU), the ViT image encoder runs on frames (no SAM1 cache exists), and the adapters are SAMA's
shape (per block Linear–GELU, one shared Linear to the ViT width), as in the release for EVF-SAM.
SAM's weights come from ``sam1.checkpoint`` or, with ``sam1.from_evf``, from the EVF-SAM checkpoint
itself (``visual_model.*``: EVF trained SAM's decoder and ``no_mask_embed``; the release loads them).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avsbench_kit.errors import ConfigError, DataError
from avsbench_kit.models.sam1 import SAM1Wrapper
from avsbench_kit.models.sam1 import check_image_size as check_sam1_size
from avsbench_kit.models.sam2 import ImageFeatures, SAM2Wrapper, check_image_size
from baselines.av2t.heads import (FEATURE_NORMS, PROMPT_FEATURES, AdapterGenerator,
                                  PromptFeature, PseudoTokens, text_hidden_fcs)
from baselines.av2t.text_prompt import build_text_encoder
from baselines.base import Baseline, BaselineOutput, check_batch, feature_request, masks_at
from baselines.common.adapters import AudioAdapters
from baselines.common.losses import soft_iou_loss
from baselines.common.sam2_cache import sam2_cache_overrides

BACKBONES = ("sam2", "sam1")


def _choice(cfg: dict, key: str, choices: tuple[str, ...]) -> str:
    """``cfg[key]`` (dotted keys walk sections) when it is one of ``choices``, else a ConfigError."""
    value: Any = cfg
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value not in choices:
        from avsbench_kit.registry import did_you_mean

        raise ConfigError(f"{key}={value!r} is not one of {', '.join(choices)}",
                          hint=did_you_mean(str(value), list(choices)))
    return value


def backbone_of(cfg: dict[str, Any]) -> str:
    """``sam.backbone`` of a resolved config (before the model exists)."""
    return (cfg.get("sam") or {}).get("backbone", "sam2")


class AV2TSAM(Baseline):
    """AV2T-SAM on SAM2 (EVF-SAM2 path) or SAM (EVF-SAM path); see the module docstring."""

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
        self.backbone = _choice(cfg, "sam.backbone", BACKBONES)
        sam1 = self.backbone == "sam1"
        # the other backbone's settings are that variant's defaults, unused here
        if sam1:  # no SAM1 image cache exists: the ViT runs on frames
            self.inactive("sam2", "features.sam2", "features.sam2_levels", "features.sam2_overrides")
        else:
            self.inactive("sam1")
        self.multimask = bool(cfg.get("multimask", True))
        lcfg = cfg.get("loss", {})
        self.loss_weights = {"bce": float(lcfg.get("bce_weight", 1.0)), "iou": float(lcfg.get("iou_weight", 1.0))}
        self.needs_frames = sam1 or self.adapters_on or not cfg["features"].get("sam2") \
            or cfg["text_encoder"].get("kind") == "beit3"  # BEiT-3 reads the frame too
        (check_sam1_size if sam1 else check_image_size)(cfg["image_size"])
        feats = cfg["features"]
        self.feature_names = {"audio": feats.get("audio"), "image": feats.get("image"),
                              "sam2": None if self.adapters_on or sam1 else feats.get("sam2")}
        width = int(cfg.get("fused_dim", 512))
        uses_audio, uses_image = self.prompt_feature != "clip", self.prompt_feature != "clap"
        for kind, used in (("audio", uses_audio), ("image", uses_image)):
            if not used:
                self.inactive(f"dims.{kind}", f"features.{kind}", f"features.{kind}_overrides")
        if not sam1 and (self.adapters_on or not cfg["features"].get("sam2")):  # encoder on frames
            self.inactive("features.sam2", "features.sam2_levels", "features.sam2_overrides")
        self.dims = {"audio": self._feature_dim("audio") if uses_audio else 0,
                     "image": self._feature_dim("image") if uses_image else 0}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.get("seed", 0)))  # the heads are a function of the config
            text_cfg = cfg["text_encoder"]
            self.inactive(*(f"text_encoder.{k}" for k in ("transformer", "beit3") if k != text_cfg.get("kind")))
            from_evf = sam1 and self._sam1_from_evf()
            self.text_encoder = build_text_encoder(text_cfg, keep_sam=from_evf)
            self.sam = self._build_sam1(from_evf) if sam1 else self._build_sam2()
            hidden = self.text_encoder.hidden_size
            self.fusion = PromptFeature(self.prompt_feature, self.dims["audio"], self.dims["image"],
                                        width, self.feature_norm)
            self.pseudo_tokens = PseudoTokens(width, hidden, int(cfg.get("num_pseudo_tokens", 3)))
            self.text_hidden_fcs = text_hidden_fcs(hidden, self.sam.hidden_dim)
            self._load_evf_projector()
            self.adapters = self._build_adapters(width) if self.adapters_on else None
        # SAM2 / SAM: the whole mask decoder and no_mask_embed train; everything else stays frozen
        for p in self.sam.mask_decoder.parameters():
            p.requires_grad_(True)
        self.sam.prompt_encoder.no_mask_embed.weight.requires_grad_(True)
        if self.cached_levels_projected():
            # forward_image levels were projected by conv_s0/conv_s1 when the cache was made: those
            # two convs cannot learn here, so they are frozen (and not counted as trainable)
            for conv in (self.sam.mask_decoder.conv_s0, self.sam.mask_decoder.conv_s1):
                for p in conv.parameters():
                    p.requires_grad_(False)

    def _build_sam2(self) -> SAM2Wrapper:
        s = self.cfg["sam2"]
        return SAM2Wrapper(s["config"], s.get("checkpoint"), self.cfg["image_size"],
                           init_seed=int(s.get("init_seed", 0)), round_features=s.get("round_features"),
                           require_checkpoint=bool(self.cfg.get("require_weights", False)))

    def _sam1_from_evf(self) -> bool:
        """``sam1.from_evf``, checked against the other sources of SAM weights."""
        s, text = self.cfg["sam1"], self.cfg["text_encoder"]
        from_evf = s.get("from_evf")
        if not isinstance(from_evf, bool):
            raise ConfigError(f"sam1.from_evf={from_evf!r} must be true or false",
                              hint="true: SAM's weights come from the EVF-SAM checkpoint (as released)")
        if from_evf and s.get("checkpoint"):
            raise ConfigError("sam1.checkpoint and sam1.from_evf=true both give SAM's weights",
                              hint="drop sam1.checkpoint (the EVF-SAM checkpoint holds SAM-H with EVF's "
                                   "trained decoder) or set sam1.from_evf=false")
        if from_evf and text.get("kind") != "beit3":
            raise ConfigError(f"sam1.from_evf=true reads the EVF-SAM checkpoint, but text_encoder.kind="
                              f"{text.get('kind')!r} has none",
                              hint="use text_encoder.kind=beit3 with text_encoder.beit3.checkpoint, or "
                                   "sam1.from_evf=false")
        return from_evf

    def _build_sam1(self, from_evf: bool) -> SAM1Wrapper:
        """SAM (v1) from ``sam1.checkpoint``, from the EVF checkpoint's ``visual_model.*``
        (``from_evf``), or random (``init_seed``) when neither is given."""
        s = self.cfg["sam1"]
        state, source = None, "state dict"
        if from_evf and self.text_encoder.source:
            state, source = self.text_encoder.evf_sam, f"{self.text_encoder.source} (visual_model.*)"
            if not state:
                raise ConfigError(f"{self.text_encoder.source} holds no SAM weights (visual_model.*)",
                                  hint="give an EVF-SAM (SAM-H) checkpoint, or sam1.from_evf=false with "
                                       "sam1.checkpoint=<sam_vit_h_*.pth>")
        sam = SAM1Wrapper(s["variant"], s.get("checkpoint"), self.cfg["image_size"], size=s["size"],
                          init_seed=int(s.get("init_seed", 0)),
                          require_checkpoint=bool(self.cfg.get("require_weights", False)),
                          state=state, state_source=source)
        self.text_encoder.evf_sam = {}  # loaded: do not keep a second copy
        return sam

    def _build_adapters(self, width: int) -> nn.Module:
        """Per-block prompts of F_av: SAM2 Linear–GELU–Linear(C_j) per Hiera block; SAM1 SAMA's
        per-block Linear–GELU + one shared Linear(C) (the release's two shapes)."""
        if self.backbone == "sam1":
            return AudioAdapters(width, width, self.sam.block_dims)
        return AdapterGenerator(width, self.sam.block_dims)

    def _load_evf_projector(self) -> None:
        """Start ``text_hidden_fcs`` from EVF's trained projector when the BEiT-3 checkpoint has it
        (the released code builds the whole EVF model from its checkpoint)."""
        evf = getattr(self.text_encoder, "evf_projector", {})
        if not evf:
            return
        own = self.text_hidden_fcs.state_dict()
        if set(evf) != set(own) or any(evf[k].shape != own[k].shape for k in own):
            raise ConfigError(f"EVF text_hidden_fcs in {self.text_encoder.source} do not fit "
                              f"{self.text_encoder.hidden_size}->{self.sam.hidden_dim}",
                              hint="the SAM prompt width must be 256 and BEiT-3's size the checkpoint's")
        self.text_hidden_fcs.load_state_dict(evf)

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
        """With ``require_weights``: SAM2 / SAM, the EVF BEiT-3, and the CLAP/CLIP feature encoders
        the prompt reads (SAM1 with ``sam1.from_evf``: SAM comes from the EVF-SAM checkpoint)."""
        if not cfg.get("require_weights"):
            return []
        from baselines.base import encoder_weights_missing

        sam1 = backbone_of(cfg) == "sam1"
        s1 = cfg.get("sam1") or {}
        from_evf = sam1 and s1.get("from_evf") is True
        if sam1:
            missing = [] if from_evf or s1.get("checkpoint") else \
                [f"sam1.checkpoint (SAM {s1.get('variant')} sam_{s1.get('variant')}_*.pth)"]
        else:
            missing = [] if cfg["sam2"].get("checkpoint") else [f"sam2.checkpoint (SAM2 {cfg['sam2']['config']} .pt)"]
        feats, prompt = cfg["features"], cfg.get("prompt_feature")
        for kind, used in (("audio", prompt != "clip" and cfg.get("audio", True) is not False
                            and cfg.get("modality", "full") in ("full", "no-text")),
                           ("image", prompt != "clap")):
            need = encoder_weights_missing(feats[kind], feats.get(f"{kind}_overrides") or (),
                                           f"features.{kind}_overrides")
            if used and need:
                missing.append(need)
        text = cfg["text_encoder"]
        if text.get("kind") == "beit3" and not (text.get("beit3") or {}).get("checkpoint"):
            size = (text.get("beit3") or {}).get("size", "large")
            what = f"EVF-SAM checkpoint: BEiT-3-{size} + projector + SAM {s1.get('variant')}" if from_evf \
                else f"EVF-SAM/EVF-SAM2 checkpoint: BEiT-3-{size} + projector"
            missing.append(f"text_encoder.beit3.checkpoint ({what})")
        elif from_evf and text.get("kind") != "beit3":
            missing.append("text_encoder.beit3.checkpoint (sam1.from_evf reads SAM from the EVF-SAM "
                           "checkpoint: set text_encoder.kind=beit3)")
        return missing

    def backbone_info(self) -> dict[str, Any]:
        text = {"kind": self.cfg["text_encoder"]["kind"], "source": getattr(self.text_encoder, "source", None)}
        return {self.backbone: self.sam.describe(), "text_encoder": text, "prompt_feature": self.prompt_feature}

    def checkpoints(self) -> dict[str, str]:
        out = {self.backbone: self.sam.checkpoint} if self.sam.checkpoint else {}
        for i, f in enumerate(getattr(self.text_encoder, "files", [])):
            out[f"beit3_{i}" if i else "beit3"] = f
        return out

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
        frames = None
        if self.text_encoder.sees_image:
            if "frames" not in batch:
                raise DataError(f"batch {batch.get('key', [])[:2]}... has no frames, which "
                                "text_encoder.kind=beit3 reads", hint="build batches with "
                                "with_frames=baseline.needs_frames")
            frames = batch["frames"][rows, cols].to(device)
        prompt = self.text_hidden_fcs(self.text_encoder(tokens, frames) if frames is not None
                                      else self.text_encoder(tokens)).unsqueeze(1)  # [N,1,256]
        if self.backbone == "sam1":
            masks, ious = self.decode_sam1(batch, rows, cols, fused, prompt, (h, w))
        else:
            out = self.sam.decode(self.image_features(batch, rows, cols, fused), prompt,
                                  multimask=self.multimask, output_size=(h, w))
            masks, ious = out.masks, out.ious
        logits = logits.index_put((rows, cols), masks)
        return BaselineOutput(logits, {"ious": ious})

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

    def decode_sam1(self, batch: dict, rows: torch.Tensor, cols: torch.Tensor, fused: torch.Tensor,
                    prompt: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """EVF-SAM's decoder path on the selected frames: ViT embedding (with adapters when on),
        the prompt token as the only sparse prompt, ``no_mask_embed`` as the dense one; with
        ``multimask`` the mask of the best predicted IoU; bilinear to ``size``. -> [N,h,w], [N,M]."""
        if "frames" not in batch:
            raise DataError(f"batch {batch.get('key', [])[:2]}... has no frames, which sam.backbone=sam1 "
                            "reads (no SAM1 image cache)", hint="build batches with "
                                                                "with_frames=baseline.needs_frames")
        images = self.sam.preprocess(batch["frames"][rows, cols].to(prompt.device))
        if self.adapters is not None:
            embed = self.sam.features(images, self.adapters(fused))
        else:
            with torch.no_grad():
                embed = self.sam.features(images)
        low, ious = self.sam.decode(embed, prompt, multimask=self.multimask)
        best = ious.argmax(dim=1)  # M = 1 without multimask
        chosen = low[torch.arange(low.shape[0], device=low.device), best].unsqueeze(1).float()
        return F.interpolate(chosen, size=size, mode="bilinear", align_corners=False)[:, 0], ious

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
