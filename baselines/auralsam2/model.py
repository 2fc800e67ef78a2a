"""AuralSAM2: audio(+text) prompts injected into a completely frozen SAM2 (Liu et al., arXiv 2506.01015).

SAM2's raw FPN levels (``sam2_image`` cache, ``levels=[fpn0,fpn1,fpn2]``) and the clip's audio
tokens (+ DistilRoBERTa tokens for Ref-AVS) go through the AuralFuser (:mod:`.fuser`), which gives
one dense map and one sparse vector per pyramid level. They are added inside the frozen mask
decoder before two-way block 0, block 1 and the final token->image attention (deepest level first,
``avsbench_kit.models.sam2.Injection``). SAM2's tracking loop runs over all frames without any prompt; the conditioning
frame is the middle one in training. Loss: SAM2's multi-step loss + AudioCon (:mod:`.losses`).
Only the fuser (and the text projection) train; every SAM2 parameter stays bit-identical
(``sam2.trainable=[]``, the paper; CPU presets on random SAM2 weights also train the decoder).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from avsbench_kit.errors import ConfigError, DataError
from avsbench_kit.models.sam2 import ImageFeatures, Injection, SAM2Wrapper, check_image_size, sam2_config_path
from baselines.auralsam2.fuser import AUDIO_PE, AuralFuser, FuserConfig
from baselines.auralsam2.losses import AudioConConfig, audiocon_loss
from baselines.base import (Baseline, BaselineOutput, ParamGroup, check_batch, decay_groups,
                            encoder_weights_missing, feature_request, input_enabled, masks_at)
from baselines.common.losses import multistep_mask_loss

LEVELS = ("fpn0", "fpn1", "fpn2")
COND_FRAMES = ("middle", "first", "last")
DECODE_MODES = ("iou_select", "iou_occ_select")
#: injection points: before two-way block 0, block 1, and the final token->image attention
POINTS = (0, 1, "final")
#: SAM2 modules a CPU preset may train (the paper trains none: its SAM2 is pretrained and frozen)
TRAINABLE_SAM2 = ("mask_decoder", "memory_attention", "memory_encoder")
#: tasks whose samples carry a referring expression (None: a model built outside a run, e.g. tests)
TEXT_TASKS = ("refavs", None)


def _choice(value: Any, key: str, choices: tuple) -> Any:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(map(str, choices))}",
                          hint=f"e.g. {key}={choices[0]}")
    return value


def _int_list(value: Any, key: str, n: int | None = None) -> list[int]:
    ok = isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool)
                                                  and v >= 0 for v in value)
    if not ok or (n is not None and len(value) != n):
        raise ConfigError(f"{key}={value!r} must be a list of {n or 'some'} non-negative integers",
                          hint=f"e.g. {key}=[3,6,12]")
    return [int(v) for v in value]


def cond_index(rule: Any, t: int, key: str) -> int:
    """The conditioning frame of a T-frame clip: ``middle`` (int(T/2)), ``first``, ``last`` or an index."""
    if rule == "middle":
        return t // 2
    if rule == "first":
        return 0
    if rule == "last":
        return t - 1
    if isinstance(rule, int) and not isinstance(rule, bool):
        return min(max(rule, 0), t - 1)
    raise ConfigError(f"{key}={rule!r} is not middle, first, last or a frame index", hint=f"{key}=middle")


def parse_injection(cfg: dict) -> list[tuple[Any, int]]:
    """``injection.points`` / ``injection.levels`` -> [(point, pyramid level)]."""
    points, levels = cfg.get("points"), cfg.get("levels")
    if not isinstance(points, list) or not points or any(p not in POINTS for p in points) \
            or len(set(map(str, points))) != len(points):
        raise ConfigError(f"injection.points={points!r} must be a non-empty subset of [0, 1, final]",
                          hint="the paper injects at [0, 1, final]")
    levels = _int_list(levels, "injection.levels", len(points))
    if any(v > 2 for v in levels):
        raise ConfigError(f"injection.levels={levels} names a pyramid level > 2",
                          hint="levels are 0 (fpn0) .. 2 (fpn2); the paper uses [2, 1, 0]")
    return list(zip(points, levels))


def parse_trainable(value: Any) -> tuple[str, ...]:
    """``sam2.trainable``: which SAM2 modules train. ``[]`` is the paper (SAM2 bit-identical).

    A frozen *random* decoder cannot be taught to segment through additive prompts alone, so a
    CPU preset without SAM2 weights trains the decoder as a stand-in for SAM2's pretraining.
    """
    if not isinstance(value, (list, tuple)) or any(v not in TRAINABLE_SAM2 for v in value):
        raise ConfigError(f"sam2.trainable={value!r} must be a list drawn from {', '.join(TRAINABLE_SAM2)}",
                          hint="sam2.trainable=[] keeps SAM2 frozen as in the paper")
    return tuple(dict.fromkeys(value))


class AuralSAM2(Baseline):
    """See the module docstring."""

    name = "auralsam2"

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        check_image_size(cfg["image_size"])
        self.use_audio = input_enabled(cfg, "audio")
        # text tokens exist only where the task has expressions (Ref-AVS); AVSBench runs audio only
        self.use_text = input_enabled(cfg, "text") and cfg.get("task") in TEXT_TASKS
        if not self.use_audio:
            self.inactive("dims.audio", "features.audio", "features.audio_overrides", "fuser.audio_proj")
        if not self.use_text:
            self.inactive("dims.text", "features.text", "features.text_overrides", "fuser.text_proj_hidden",
                          "fuser.text_padding")
        if not cfg["audiocon"]["enabled"]:
            self.inactive(*(f"audiocon.{k}" for k in ("weight", "temperature", "hard", "easy", "max_samples")))
        feats, fz, tr = cfg["features"], cfg["fuser"], cfg["tracking"]
        self.features_cfg = feats
        fuser_cfg = FuserConfig(
            dim=int(fz["dim"]), visual_blocks=tuple(_int_list(fz["visual_blocks"], "fuser.visual_blocks", 3)),
            audio_blocks=int(fz["audio_blocks"]), heads=int(fz["heads"]), mlp_ratio=float(fz["mlp_ratio"]),
            sr_ratio=int(fz["sr_ratio"]), qkv_bias=bool(fz["qkv_bias"]), drop=float(fz["drop"]),
            attn_drop=float(fz["attn_drop"]), fusion_dim=int(fz["fusion_dim"]),
            proj_dim=int(fz["proj_dim"]), audio_pe=_choice(fz["audio_pe"], "fuser.audio_pe", AUDIO_PE),
            text_padding=_choice(fz["text_padding"], "fuser.text_padding", ("attend", "mask"))
            if self.use_text else "attend")
        self.injection = parse_injection(cfg["injection"])
        self.train_cond, self.eval_cond = tr["train_cond_frame"], tr["eval_cond_frame"]
        cond_index(self.train_cond, 5, "tracking.train_cond_frame")
        cond_index(self.eval_cond, 5, "tracking.eval_cond_frame")
        self.multimask = bool(tr["multimask"])
        self.object_score = bool(tr["object_score"])
        self.memory_grad = bool(tr["memory_grad"])
        self.decode_mode = _choice(cfg["decode_mode"], "decode_mode", DECODE_MODES)
        lw = cfg["loss"]
        self.loss_weights = {k: float(lw[f"{k}_weight"]) for k in ("focal", "dice", "iou", "class")}
        self.supervise_all_iou = bool(lw["supervise_all_iou"])
        ac = cfg["audiocon"]
        self.audiocon_on = bool(ac["enabled"])
        self.audiocon_weight = float(ac["weight"])
        self.audiocon = AudioConConfig(float(ac["temperature"]), int(ac["hard"]), int(ac["easy"]),
                                       int(ac["max_samples"]))
        sam_cfg = cfg["sam2"]
        self.sam_cfg = sam_cfg
        dims = cfg.get("dims") or {}
        audio_dim = self._width("audio", dims.get("audio")) if self.use_audio else 0
        text_dim = self._width("text", dims.get("text")) if self.use_text else 0
        d = fuser_cfg.dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.get("seed", 0)))  # the fuser is a function of the config
            self.sam = SAM2Wrapper(sam_cfg["config"], sam_cfg.get("checkpoint"), cfg["image_size"],
                                   init_seed=int(sam_cfg["init_seed"]),
                                   require_checkpoint=bool(cfg["require_weights"]))
            self.fuser = AuralFuser(fuser_cfg)
            if not self.use_audio:  # a learned constant per second: same architecture, no audio
                self.audio_proj = None
                self.audio_off_token = nn.Parameter(torch.zeros(d))
            else:
                proj = _choice(fz["audio_proj"], "fuser.audio_proj", ("auto", "linear"))
                self.audio_proj = nn.Identity() if proj == "auto" and audio_dim == d \
                    else nn.Linear(audio_dim, d)
                self.audio_off_token = None
            self.text_proj = None
            if self.use_text:
                hidden = int(fz["text_proj_hidden"])
                self.text_proj = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU(), nn.Linear(hidden, d))
        if self.sam.hidden_dim != d:
            raise ConfigError(f"fuser.dim={d} must equal SAM2's hidden width {self.sam.hidden_dim}",
                              hint=f"fuser.dim={self.sam.hidden_dim}")
        self.sam_trainable = parse_trainable(sam_cfg.get("trainable", []))
        if not self.memory_grad and any(n.startswith("memory") for n in self.sam_trainable):
            raise ConfigError(f"sam2.trainable={list(self.sam_trainable)} trains a memory module but "
                              "tracking.memory_grad=false sends it no gradient",
                              hint="add tracking.memory_grad=true, or train mask_decoder only")
        for name in self.sam_trainable:
            module = self.sam.mask_decoder if name == "mask_decoder" else getattr(self.sam.model, name)
            for p in module.parameters():
                p.requires_grad_(True)
        self.sam.eval()

    # ---- config helpers -------------------------------------------------------------------
    def _width(self, kind: str, value: Any) -> int:
        """Width of one time step (audio) or token (text): ``dims.<kind>`` or the encoder preset's."""
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"dims.{kind}={value!r} must be a positive integer or null",
                                  hint=f"null reads the width from the {kind} encoder's preset")
            return value
        from avsbench_kit.features.base import build_encoder

        feats = self.features_cfg
        enc = build_encoder(feats[kind], tuple(feats.get(f"{kind}_overrides") or ()))
        spec = next(iter(enc.output_spec().values()))
        width = 1
        for s in spec.shape[1:]:  # per step: [T, 2, 128] -> 256, [T, 128] -> 128, [L, D] -> D
            if not isinstance(s, int):
                raise ConfigError(f"cannot tell the width of {feats[kind]!r} features",
                                  hint=f"set dims.{kind}=<width>")
            width *= s
        return width

    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m, on in (("audio", self.use_audio), ("image", True), ("text", self.use_text)) if on)

    def sam2_overrides(self) -> tuple[str, ...]:
        """The cache must hold raw FPN levels of the same SAM2 at the same image size."""
        sam_cfg = self.sam_cfg
        out = [f"model_config={sam2_config_path(sam_cfg['config'])}", f"image_size={self.cfg['image_size']}",
               f"seed={int(sam_cfg['init_seed'])}", "levels=[" + ",".join(LEVELS) + "]"]
        if sam_cfg.get("checkpoint"):
            out.append(f"weights={sam_cfg['checkpoint']}")
        return tuple(out) + tuple(self.features_cfg.get("sam2_overrides") or ())

    def feature_requests(self) -> list:
        f = self.features_cfg
        out = [feature_request(f["sam2"], self.sam2_overrides())]
        if self.use_audio:
            out.append(feature_request(f["audio"], f.get("audio_overrides") or ()))
        if self.use_text:
            out.append(feature_request(f["text"], f.get("text_overrides") or ()))
        return out

    def backbone_info(self) -> dict:
        return {"sam2": self.sam.describe()}

    def checkpoints(self) -> dict[str, str]:
        return {"sam2": self.sam.checkpoint} if self.sam.checkpoint else {}

    @classmethod
    def missing_weights(cls, cfg: dict[str, Any]) -> list[str]:
        """With ``require_weights``: SAM2, and the VGGish / DistilRoBERTa encoders the run reads."""
        if not cfg.get("require_weights"):
            return []
        missing = [] if cfg["sam2"].get("checkpoint") else [f"sam2.checkpoint (SAM2 {cfg['sam2']['config']} .pt)"]
        feats = cfg["features"]
        used = {"audio": input_enabled(cfg, "audio"),
                "text": input_enabled(cfg, "text") and cfg.get("task") in TEXT_TASKS}
        for kind in ("audio", "text"):
            need = encoder_weights_missing(feats[kind], feats.get(f"{kind}_overrides") or (),
                                           f"features.{kind}_overrides")
            if used[kind] and need:
                missing.append(need)
        return missing

    def param_groups(self) -> list[ParamGroup]:
        trainable = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        groups = decay_groups([(n, p) for n, p in trainable if not n.startswith("sam.")], name="fuser")
        sam = [(n, p) for n, p in trainable if n.startswith("sam.")]
        return groups + (decay_groups(sam, name="sam2") if sam else [])

    def train(self, mode: bool = True) -> "AuralSAM2":
        super().train(mode)
        self.sam.eval()  # no dropout/batch statistics in SAM2, even where sam2.trainable trains parts of it
        return self

    # ---- forward ----------------------------------------------------------------------------
    def _levels(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        name = self.features_cfg["sam2"]
        check_batch(batch, [name])
        cached = batch["features"][name]
        b, t = next(iter(cached.values())).shape[:2]
        flat = self.sam.from_cache({k: v.flatten(0, 1) for k, v in cached.items()})
        if flat.projected:
            raise DataError(f"the {name!r} cache holds conv_s0/conv_s1 outputs, AuralSAM2 reads raw FPN levels",
                            hint="extract it with levels=[fpn0,fpn1,fpn2] (the baseline's own request does)")
        return tuple(lv.view(b, t, *lv.shape[1:]) for lv in flat.levels)  # type: ignore[return-value]

    def _tokens(self, batch: dict, b: int, t: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T (+L), C] audio (+text) tokens and the keep mask (False = text padding)."""
        f = self.features_cfg
        if self.use_audio:
            check_batch(batch, [f["audio"]])
            a = batch["features"][f["audio"]].float().to(device)
            if a.shape[:2] != (b, t):
                raise DataError(f"audio features {tuple(a.shape)} do not cover the clip's {t} frames",
                                hint="extract the audio cache with one step per frame (num_examples=0)")
            audio = self.audio_proj(a.flatten(2))
        else:
            audio = self.audio_off_token.expand(b, t, -1)
        keep = torch.ones(b, t, dtype=torch.bool, device=device)
        if not self.use_text:
            return audio, keep
        check_batch(batch, [f["text"]])
        mask = batch["features"].get(f"{f['text']}_mask")
        text = batch["features"][f["text"]].float().to(device)
        mask = torch.ones(text.shape[:2], dtype=torch.bool, device=device) if mask is None else mask.bool().to(device)
        return torch.cat([audio, self.text_proj(text)], 1), torch.cat([keep, mask], 1)

    def forward(self, batch: dict) -> BaselineOutput:
        levels = self._levels(batch)
        b, t = levels[0].shape[:2]
        device = levels[0].device
        tokens, keep = self._tokens(batch, b, t, device)
        fz = self.fuser(levels, tokens, t, keep)
        frames = [ImageFeatures(tuple(lv[:, i] for lv in levels)) for i in range(t)]  # type: ignore[arg-type]
        injections = {i: Injection(keys={p: fz.dense[lv][:, i] for p, lv in self.injection},
                                   tokens={p: fz.sparse[lv][:, i, None] for p, lv in self.injection})
                      for i in range(t)}
        rule = self.train_cond if self.training else self.eval_cond
        key = "tracking.train_cond_frame" if self.training else "tracking.eval_cond_frame"
        tr = self.sam.propagate(frames, injections=injections, cond_frames=[cond_index(rule, t, key)],
                                multimask=self.multimask, output_size=self.output_size,
                                object_score=self.object_score, pad_point=False, memory_grad=self.memory_grad)
        logits = tr.masks
        if self.decode_mode == "iou_occ_select":
            logits = torch.where(tr.object_score_logits[..., None, None] > 0, logits,
                                 torch.full_like(logits, -1024.0))
        return BaselineOutput(logits, aux={
            "ious": tr.ious, "object_scores": tr.object_score_logits,
            "low_res_multimasks": tr.low_res_multimasks, "low_res_masks": tr.low_res_masks[:, :, 0],
            "visual_embed": fz.visual_embed, "audio_embed": fz.audio_embed})

    # ---- loss --------------------------------------------------------------------------------
    def loss(self, out: BaselineOutput, batch: dict) -> dict[str, torch.Tensor]:
        """SAM2's multi-step loss on the annotated frames (summed over frames, divided by the number
        of clips, as SAM2 normalises by objects) + ``audiocon.weight`` x AudioCon. Components are
        unweighted; ``total`` is the weighted sum."""
        aux = out.aux
        multi = aux["low_res_multimasks"]
        b = multi.shape[0]
        size = (self.sam.image_size, self.sam.image_size)  # SAM2 computes it at its input size
        annotated = batch["annotated"].to(multi.device).bool()
        # binary target: soft MS3 grey levels at 0.5, AVSS class maps class-agnostically (> 0)
        target = (masks_at(batch["masks"].to(multi.device), size) > 0.5).float()
        if not annotated.any():  # nothing to learn from; keep backward() valid
            zero = multi.sum() * 0.0
            return {"total": zero, "focal": zero, "dice": zero, "iou": zero, "class": zero}
        up = nn.functional.interpolate(multi[annotated], size=size, mode="bilinear", align_corners=False)
        parts = multistep_mask_loss(up, aux["ious"][annotated], aux["object_scores"][annotated][:, None],
                                    target[annotated], self.loss_weights,
                                    supervise_all_iou=self.supervise_all_iou, num_objects=b)
        total = parts.pop("total")
        if self.audiocon_on:
            parts["audiocon"] = audiocon_loss(aux["visual_embed"], aux["audio_embed"], target,
                                              aux["low_res_masks"], annotated, self.audiocon)
            total = total + self.audiocon_weight * parts["audiocon"]
        return {"total": total, **parts}
