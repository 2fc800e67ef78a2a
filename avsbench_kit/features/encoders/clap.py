"""CLAP (transformers ``ClapModel``): the audio tower gives one projected embedding per frame
(the clip's audio cut into ``segment_s`` segments, frame k <-> segment k, last one zero-padded,
as AV2T-SAM does), the text tower token features + mask + the projected sentence embedding.

Audio is resampled (soxr) to the feature extractor's rate (48 kHz). ``channels: concat`` puts both
stereo channels of a segment one after the other (AV2T-SAM's "flattened" stereo); ``mono`` averages.
Real weights: ``laion/clap-htsat-unfused`` (hub id or local dir; feature extractor and tokenizer
from the same place). Random ``small`` config: a tiny HTSAT and a 2-layer text tower.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avsbench_kit.errors import ConfigError
from avsbench_kit.features.base import Encoder, FieldSpec, choice, positive
from avsbench_kit.features.encoders.hf import DualEncoderText, from_pretrained, local_config, seeded
from avsbench_kit.features.tokenizer import offline_tokenizer, special_ids, tokenizer_digest

VOCAB = 600
SMALL_AUDIO = {"depths": [1, 1, 1, 1], "num_attention_heads": [1, 2, 2, 4], "hidden_size": 64,
               "patch_embeds_hidden_size": 8, "window_size": 8, "spec_size": 256, "enable_fusion": False}
SMALL_TEXT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
SMALL_PROJECTION = 32
#: ClapFeatureExtractor defaults without fusion (a short segment is repeat-padded to the 10 s window)
SMALL_EXTRACTOR = {"feature_size": 64, "sampling_rate": 48000, "hop_length": 480, "max_length_s": 10,
                   "fft_window_size": 1024, "truncation": "rand_trunc", "padding": "repeatpad",
                   "frequency_min": 0, "frequency_max": 14000}


def small_clap_config(max_length: int) -> dict[str, Any]:
    text = {**SMALL_TEXT, "vocab_size": VOCAB, "max_position_embeddings": int(max_length) + 4,
            "type_vocab_size": 1, **special_ids("roberta")}
    return {"audio": SMALL_AUDIO, "text": text, "projection_dim": SMALL_PROJECTION,
            "extractor": SMALL_EXTRACTOR, "tokenizer": tokenizer_digest("roberta", VOCAB)}


def load_clap(enc: Encoder, want: str) -> tuple[Any, Any]:
    from transformers import AutoTokenizer, ClapConfig, ClapFeatureExtractor, ClapModel

    if enc.weights:
        rev = str(enc.cfg.get("revision") or "")
        model = from_pretrained(ClapModel.from_pretrained, enc.weights, rev)
        if want == "audio":
            helper = from_pretrained(ClapFeatureExtractor.from_pretrained, enc.weights, rev, what="feature extractor")
        else:
            helper = from_pretrained(AutoTokenizer.from_pretrained, enc.weights, rev, what="tokenizer")
        return model.eval(), helper
    small = small_clap_config(int(enc.cfg.get("max_length", 25)))
    config = ClapConfig(text_config=small["text"], audio_config=small["audio"], projection_dim=small["projection_dim"])
    model = seeded(int(enc.cfg["seed"]), lambda: ClapModel(config))
    helper = ClapFeatureExtractor(**SMALL_EXTRACTOR) if want == "audio" else offline_tokenizer("roberta", VOCAB)
    return model.eval(), helper


def segments(wave: np.ndarray, sr: int, count: int, segment_s: float, channels: str) -> list[np.ndarray]:
    """``[C, S]`` -> ``count`` mono segments of ``segment_s`` (``concat``: both channels, 2x long)."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1:
        wave = wave[None]
    if channels == "mono":
        wave = wave.mean(axis=0, keepdims=True)
    elif wave.shape[0] == 1:
        wave = np.concatenate([wave, wave])
    else:
        wave = wave[:2]
    length = int(round(segment_s * sr))
    total = length * count
    if wave.shape[1] < total:
        wave = np.pad(wave, ((0, 0), (0, total - wave.shape[1])))
    return [np.ascontiguousarray(wave[:, k * length:(k + 1) * length].reshape(-1)) for k in range(count)]


class ClapAudioEncoder(Encoder):
    name = "clap"
    modality = "audio"
    key_by = "clip"
    needs = ("audio",)
    code_version = "1"

    def validate(self) -> None:
        choice(self.cfg, "config", ("small",))
        choice(self.cfg, "channels", ("mono", "concat"))
        choice(self.cfg, "resampler", ("soxr",))
        positive(self.cfg, "segment_s")
        positive(self.cfg, "batch_size")
        positive(self.cfg, "shard_size")
        factor = 2 if self.cfg["channels"] == "concat" else 1
        if self.cfg["segment_s"] * factor > SMALL_EXTRACTOR["max_length_s"]:
            raise ConfigError(f"segment_s={self.cfg['segment_s']} exceeds CLAP's 10 s window "
                              f"(x{factor} channels); longer inputs would be cropped at random",
                              hint="use segment_s <= 5 with channels=concat, <= 10 with mono")

    def random_config(self) -> dict[str, Any]:
        small = small_clap_config(25)
        return {k: small[k] for k in ("audio", "projection_dim", "extractor")}

    def output_spec(self) -> dict[str, FieldSpec]:
        dim = local_config(self.weights).get("projection_dim", "D") if self.weights else SMALL_PROJECTION
        return {"emb": FieldSpec(("T", dim), "float32")}

    def _load(self) -> Any:
        return load_clap(self, "audio")

    def _encode(self, model: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from avsbench_kit.data.audio import resample
        from avsbench_kit.features.encoders.clip import split_rows

        net, extractor = model
        rate = int(extractor.sampling_rate)
        segs, counts = [], []
        for unit in batch:
            wave = resample(np.asarray(unit["audio"], dtype=np.float32), int(unit["sample_rate"]), rate)
            parts = segments(wave, rate, int(unit["num_frames"]), float(self.cfg["segment_s"]), self.cfg["channels"])
            segs.extend(parts)
            counts.append(len(parts))
        feats = extractor(segs, sampling_rate=rate, return_tensors="pt")
        out = net.get_audio_features(input_features=self.on_device(feats["input_features"]),
                                     is_longer=self.on_device(feats.get("is_longer")))
        emb = out.pooler_output.float().cpu().numpy()
        return [{"emb": part} for part in split_rows(emb, counts)]


class ClapTextEncoder(DualEncoderText):
    name = "clap_text"
    code_version = "1"

    def small_config(self, max_length: int) -> dict[str, Any]:
        return small_clap_config(max_length)

    def _load(self) -> Any:
        return load_clap(self, "text")
